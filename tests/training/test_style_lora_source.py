"""Issue 14 item 9 through Dagster: style_lora reads a local LoRA only from BOOKBUG_MODELS_DIR."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from bookbug_assets.defs.book_runs import BookGraph, _assets
from tests.training.lora_files import FLUX_LORA

STYLE = "soft-meadow"


def _with_lora(workspace, source: str) -> None:
    path = workspace["styles"] / STYLE / "style.yaml"
    config = yaml.safe_load(path.read_text())
    config["lora"] = {"source": source, "family": "flux1", "trigger_word": "MDW"}
    path.write_text(yaml.safe_dump(config))


def _materialize(defs_for, instance):
    instance.add_dynamic_partitions("styles", [STYLE])
    graph = BookGraph.of(defs_for())
    return dg.materialize(_assets(graph, "style_dataset", "style_lora"), partition_key=STYLE, instance=instance,
                          resources=graph.resources, raise_on_error=False)


def test_style_lora_pins_a_lora_from_the_models_folder(workspace, defs_for, instance, monkeypatch):
    models = workspace["root"] / "models"
    models.mkdir()
    (models / "meadow.safetensors").write_bytes(FLUX_LORA)
    monkeypatch.setenv("BOOKBUG_MODELS_DIR", str(models))
    _with_lora(workspace, "meadow.safetensors")
    result = _materialize(defs_for, instance)
    assert result.success
    meta = result.asset_materializations_for_node("style_lora")[0].metadata
    assert meta["lora_sha256"].value and meta["lora_source"].value == "meadow.safetensors"


@pytest.mark.parametrize("source", ["/etc/passwd", "../stories/x.safetensors"])
def test_style_lora_refuses_a_file_outside_the_models_folder(workspace, defs_for, instance, monkeypatch, source):
    (workspace["root"] / "models").mkdir()
    monkeypatch.setenv("BOOKBUG_MODELS_DIR", str(workspace["root"] / "models"))
    _with_lora(workspace, source)
    result = _materialize(defs_for, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message  # Dagster wraps what the asset raised
    assert f"styles/{STYLE}/style.yaml: lora.source: {source!r} is outside the models folder" in message
