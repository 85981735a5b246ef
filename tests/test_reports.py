"""cost_report: images, attempts, paid and cached generations, cost per acceptable image; the estimate."""

import io

import dagster as dg
import polars as pl
import pytest

from bookbug_assets.cost_report import REPORT_PARQUET, cost_tables
from bookbug_assets.defs.ledger.assets import cost_report, estimate_book_cost
from tests.test_checks import PlantedProvider, planted, render_pages, render_references, write_story  # noqa: F401


def test_cost_report_counts_attempts_and_prices_an_acceptable_image(planted, defs_for, instance):  # noqa: F811
    defs = defs_for()
    store = defs.resources["storage"].store()
    PlantedProvider.PRICE = 0.05
    story = write_story(planted, "cost-book", pages=3)
    PlantedProvider.PLAN = {2: ["blank", "good"], 3: ["blank"]}  # page 2 needs two tries, page 3 never passes
    render_references(defs, instance, story)
    render_pages(defs, instance, story, run_config={"ops": {"book_pages": {"config": {"max_attempts": 2}}}})
    render_pages(defs, instance, story, pages=[1])  # a rerun: a cache hit, free

    by_book, by_provider = cost_tables(store)
    row = by_book.row(0, named=True)
    assert (row["book_id"], row["provider"], row["model"]) == ("cost-book", "planted", "v1")
    assert row["images"] == 5  # sprite sheet, hero page, three pages
    assert row["attempts"] == 2 + 1 + 2 + 2  # references once each, page 1 once, pages 2 and 3 twice
    assert row["paid_generations"] == 7 and row["cached_generations"] == 1 and row["failed_generations"] == 0
    assert row["cost_usd"] == pytest.approx(0.35)
    assert row["acceptable_images"] == 4  # sprite sheet, hero page, pages 1 and 2; page 3 failed
    assert row["cost_per_acceptable_usd"] == pytest.approx(0.35 / 4, abs=1e-4)
    assert row["mean_latency_s"] is not None
    # A ledger without judge rows (no judge configured): no judge work, no scores, nothing reviewed.
    assert (row["judge_calls"], row["judge_cost_usd"], row["judge"]) == (0, 0.0, "")
    assert row["image_cost_usd"] == pytest.approx(0.35) and row["repairs"] == 0 and row["repairs_per_acceptable"] == 0
    assert row["judged_images"] == 0 and row["mean_identity"] is None and row["feature_hit_rate"] is None
    assert (row["reviewed"], row["satisfaction"]) == (0, None)
    assert by_provider.height == 1 and by_provider["cost_usd"][0] == pytest.approx(0.35)

    result = dg.materialize([cost_report], instance=instance, resources=defs.resources)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "| cost-book | planted | v1 | 5 | 7 |" in metadata["by_book"].value
    frame = pl.read_parquet(io.BytesIO(store.read_bytes(REPORT_PARQUET)))
    assert frame.columns[:3] == ["book_id", "provider", "model"] and frame.height == 1


def test_the_estimate_comes_before_any_paid_call(planted, defs_for):  # noqa: F811
    defs = defs_for()
    PlantedProvider.PRICE = 0.04
    story = write_story(planted, "estimate-book", pages=5, budget=1.0)
    estimate = estimate_book_cost(story, defs.resources["image_providers"], defs.resources["storage"].store())
    assert estimate.images == 7 and estimate.first_pass_usd == pytest.approx(0.28)
    assert estimate.worst_case_usd == pytest.approx(0.28 * estimate.max_attempts)
    line = estimate.line()
    assert "7 images x $0.040 (planted:v1) = $0.28" in line and "budget $1.00" in line
    preview = write_story(planted, "preview-estimate", pages=5, provider=None, style="soft-meadow")
    assert estimate_book_cost(preview, defs.resources["image_providers"]).worst_case_usd == 0.0
