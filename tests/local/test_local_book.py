"""The whole asset graph on the local backend, no cloud: style LoRA trained through Pipes, book rendered with it."""

import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from pypdf import PdfReader  # noqa: E402

from bookbug_assets.defs.book_runs import materialize_book  # noqa: E402
from bookbug_assets.ledger import Ledger  # noqa: E402
from bookbug_assets.providers import _local_pipelines  # noqa: E402
from bookbug_assets.stories import load_story_file  # noqa: E402
from tests.conftest import EXAMPLE  # noqa: E402

pytestmark = pytest.mark.local_gpu

LOCAL_ENV = {
    "BOOKBUG_PROVIDER": "local:flux-dev",
    "BOOKBUG_LOCAL_MODEL_DIR": "tiny-random",
    "BOOKBUG_LOCAL_DEVICE": "cpu",
    "BOOKBUG_LOCAL_NUM_INFERENCE_STEPS": "2",
    "BOOKBUG_LOCAL_MAX_SEQUENCE_LENGTH": "32",
    "OMP_NUM_THREADS": "1",  # the Pipes trainer inherits it: tiny models on a 2-core runner
}
# Noise from random tiny models is no picture book: the gates would (rightly) refuse it.
OPEN_GATES = {"min_blur": 0.0, "max_grid": 1e9, "max_uniformity": 1.0, "max_clipping": 1.0, "aspect_tol": 1.0,
              "max_style_distance": 1.0, "min_character_similarity": 0.0}


@pytest.fixture
def local_book(workspace, defs_for, instance, monkeypatch):
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    loads = []
    real_load = _local_pipelines.load_pipeline
    monkeypatch.setattr(_local_pipelines, "load_pipeline", lambda spec: loads.append(spec) or real_load(spec))
    style_yaml = workspace["styles"] / "soft-meadow" / "style.yaml"
    style_yaml.write_text(style_yaml.read_text().replace("trainer: none", "trainer: local")
                          .replace("training_steps: 1000", "training_steps: 10")
                          .replace("lora_rank: 16", "lora_rank: 4"))
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    defs = defs_for()
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    results = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=OPEN_GATES)
    return defs, story, results, instance, loads


def test_book_trains_its_style_and_renders_every_page_locally(local_book, workspace):
    defs, story, results, instance, loads = local_book
    assert all(r.success for r in results.values())
    # The references run and the pages run share one loaded pipeline (none, if an earlier test loaded it).
    assert len(loads) <= 1, loads

    style = results["style"].get_asset_materialization_events()
    lora_meta = next(e.materialization.metadata for e in style if e.asset_key.to_user_string() == "style_lora")
    assert lora_meta["trainer"].value == "local" and lora_meta["lora_trained"].value is True
    assert lora_meta["base_model"].value == "tiny-random" and lora_meta["device"].value == "cpu"
    assert lora_meta["base_weights"].value == "float32"  # full precision on the CPU (no train_quantize_base)
    assert lora_meta["lora_effect"].value > 0  # the trained LoRA changes the model (measured by the trainer)
    logs = [e.message for e in instance.all_logs(results["style"].run_id) if e.message]
    assert any("step 10/10" in m for m in logs), "the Pipes trainer's progress reaches the run's event log"

    pages = results["pages"].get_asset_materialization_events()
    assert len(pages) == len(story.page_keys) == 12
    rows = [r for r in Ledger(defs.resources["storage"].store()).rows(story.book_id) if r.status == "ok"]
    assert len(rows) == 14 and {r.provider for r in rows} == {"local"} and {r.model for r in rows} == {"flux-dev"}
    assert all(r.cost_usd == 0 and r.lora for r in rows)  # every image drawn with the trained style LoRA

    pdf = PdfReader(workspace["outputs"] / "books" / story.book_id / f"{story.book_id}.pdf")
    assert len(pdf.pages) == 13
    assert "PREVIEW" not in (pdf.metadata.title or "")  # real (if tiny) model output, not the preview renderer



def test_switching_to_fp8_weights_draws_again_and_says_so(workspace, defs_for, instance, monkeypatch):
    """A lossy setting is part of the cache key: turning it on must not serve the full-precision images."""
    import dagster as dg

    from bookbug_assets.defs.book_runs import _assets
    from bookbug_assets.defs.partitions import books_partitions

    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    instance.add_dynamic_partitions(books_partitions.name, [story.book_id])
    instance.add_dynamic_partitions("styles", [story.style])

    def sheet(quantize: str) -> dict:
        monkeypatch.setenv("BOOKBUG_LOCAL_QUANTIZE", quantize)
        defs = defs_for()
        dg.materialize(_assets(defs, "style_dataset", "style_lora"), instance=instance, resources=defs.resources,
                       partition_key=story.style)
        result = dg.materialize(_assets(defs, "story", "sprite_sheet"), instance=instance, resources=defs.resources,
                                partition_key=story.book_id,
                                run_config={"ops": {n: {"config": {"thresholds": OPEN_GATES}} for n in
                                                    ("sprite_sheet", "sprite_sheet_sprite_sheet_quality")}})
        return next(e.materialization.metadata for e in result.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == "sprite_sheet")

    full = sheet("none")
    fp8 = sheet("fp8-weight")
    again = sheet("fp8-weight")
    assert full["variant"].value == "full precision" and fp8["variant"].value == "quantize=fp8-weight"
    assert fp8["cache_hit"].value is False and fp8["image_sha256"].value != full["image_sha256"].value
    assert again["cache_hit"].value is True and again["image_sha256"].value == fp8["image_sha256"].value
    from bookbug_assets.ledger import Ledger

    ledger = Ledger(defs_for().resources["storage"].store()).frame(story.book_id)
    drawn = ledger.filter(ledger["status"] == "ok")
    assert sorted(drawn["variant"].to_list()) == ["", "quantize=fp8-weight"]  # one sheet each, told apart
