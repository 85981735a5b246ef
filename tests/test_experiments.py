"""provider_experiment: one row per page x provider, same seeds, scores and cost; a contact sheet."""

import io

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from bookbug_assets.defs.experiments.assets import provider_experiment
from bookbug_assets.experiment import CAPTION_H, CELL, HEADER_H, LABEL_W
from bookbug_assets.ledger import Ledger
from bookbug_assets.providers import registry
from bookbug_assets.providers.base import ImageProvider, JobOutput, ModelCapabilities
from bookbug_assets.providers.preview import render_preview
from tests.test_checks import render_pages, render_references, write_story


class AltProvider(ImageProvider):
    """A second provider for the test: the preview drawing, priced, with a version of its own."""

    name = "alt"

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=2, min_size=256, max_size=768, price_usd=0.02)

    def submit(self, request, reference_bytes) -> str:
        return f"alt-{request.cache_key()[:12]}"

    def wait(self, job_id, request, deadline_s) -> JobOutput:
        return JobOutput(image=render_preview(request), version="alt-1", seed=request.seed)


def test_one_row_per_page_and_provider_with_scores_and_cost(workspace, defs_for, instance, monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "alt", "tests.test_experiments:AltProvider")
    defs = defs_for()
    story = write_story(workspace, "lab-book", pages=3, provider=None, style="soft-meadow")
    render_references(defs, instance, story, checks=False)
    assert render_pages(defs, instance, story).success
    config = {"book_id": "lab-book", "name": "ab", "pages": [1, 3], "providers": ["preview", "alt:alt-v1"]}
    result = dg.materialize([provider_experiment], instance=instance, resources=defs.resources,
                            run_config={"ops": {"provider_experiment": {"config": config}}})
    store = defs.resources["storage"].store()
    frame = pl.read_parquet(io.BytesIO(store.read_bytes("experiments/ab/comparison.parquet")))

    assert frame.height == 4
    assert sorted(zip(frame["page"], frame["provider_spec"])) == [
        (1, "alt:alt-v1"), (1, "preview"), (3, "alt:alt-v1"), (3, "preview")]
    assert frame["error"].is_null().all()
    assert frame["style_distance"].is_not_null().all() and frame["character_similarity"].is_not_null().all()
    assert frame["passed"].all()
    assert (frame["judge_reason"] == "no judge").all() and (frame["attempts"] == 1).all()  # no judge configured
    costs = dict(zip(frame["provider_spec"], frame["cost_usd"]))
    assert costs == {"preview": 0.0, "alt:alt-v1": pytest.approx(0.02)}
    # Same seeds for every provider; the book's own provider is the book's page, from cache.
    for page in (1, 3):
        assert frame.filter(pl.col("page") == page)["seed"].n_unique() == 1
    assert frame.filter(pl.col("provider_spec") == "preview")["cache_hit"].all()
    rows = Ledger(store).rows("experiment-ab")  # its own account, not the book's budget
    assert not [r for r in Ledger(store).rows("lab-book") if r.asset == "provider_experiment"]
    assert sorted((r.provider, r.status) for r in rows) == [("alt", "ok"), ("alt", "ok"), ("preview", "cached"),
                                                            ("preview", "cached")]

    sheet = Image.open(io.BytesIO(store.read_bytes("experiments/ab/contact_sheet.png")))
    assert sheet.size == (LABEL_W + 2 * CELL, HEADER_H + 2 * (CELL + CAPTION_H))
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "alt:alt-v1" in metadata["summary"].value and "| 1 | alt:alt-v1 |" in metadata["comparison"].value
    # Ranked by cost per acceptable image: the preview is free; two cells each are not enough to decide.
    ranking = pl.read_parquet(io.BytesIO(store.read_bytes("experiments/ab/ranking.parquet")))
    assert ranking["provider_spec"].to_list() == ["preview", "alt:alt-v1"]
    assert ranking["cost_per_acceptable_usd"].to_list() == pytest.approx([0.0, 0.02])
    assert "NOT DECISIVE" in metadata["ranking"].value and "rests on 4 image(s), 4 acceptable" in \
        metadata["ranking"].value


def test_a_failing_provider_is_a_row_with_its_error(workspace, defs_for, instance):
    defs = defs_for()
    story = write_story(workspace, "lab-book-2", pages=1, provider=None, style="soft-meadow")
    render_references(defs, instance, story, checks=False)
    config = {"book_id": "lab-book-2", "pages": [1], "providers": ["preview", "replicate:google/nano-banana-pro"]}
    dg.materialize([provider_experiment], instance=instance, resources=defs.resources,
                   run_config={"ops": {"provider_experiment": {"config": config}}})
    frame = pl.read_parquet(io.BytesIO(defs.resources["storage"].store().read_bytes(
        "experiments/default/comparison.parquet")))
    failed = frame.filter(pl.col("provider") == "replicate").row(0, named=True)
    assert "REPLICATE_API_TOKEN" in failed["error"] and not failed["passed"]
