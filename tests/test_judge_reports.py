"""cost_report with the quality judge: judge calls apart from image generations, counted for the image model whose
image they judged; judge scores, feature hit rate, repairs, cost per acceptable image with judge and repair costs,
and reviewers' satisfaction from a review file. The book is the one tests/test_judge_books.py builds: its
"scarfpaint" provider draws page 1's scarf blue first, the fake judge names it, and a repair by edit fixes it."""

import io

import dagster as dg
import polars as pl
import pytest
import yaml

from bookbug_assets.cost_report import REPORT_PARQUET, book_cost, cost_tables
from bookbug_assets.defs.ledger.assets import cost_report
from bookbug_assets.review import apply_review_file
from tests.test_judge_books import PRICE, _run, _write_story, judged_books  # noqa: F401 - judged_books: a fixture

JUDGE_PRICE = 0.0125  # what the fake chat judge reports per call (usage.cost)


@pytest.fixture
def scarf_book(judged_books, workspace, instance):  # noqa: F811
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "report-book")
    assert all(r.success for r in _run(defs, instance, story).values())
    return defs, story


def test_judge_calls_are_not_image_attempts_and_count_for_the_image_model(scarf_book, instance):
    defs, story = scarf_book
    store = defs.resources["storage"].store()
    by_book, by_provider = cost_tables(store)
    # One row: the judge's calls belong to the model whose images they judged, not to a row of their own.
    assert by_book.select("provider", "model").rows() == [("scarfpaint", "scarf-v1")]
    row = by_book.row(0, named=True)
    # Images: sheet, hero, page 1 twice (a blue scarf, then its repair by edit). Judge: each of the four judged.
    assert (row["images"], row["attempts"], row["paid_generations"]) == (3, 4, 4)
    assert row["judge_calls"] == 4 and row["judge"] == "openrouter:openai/gpt-4o-2024-08-06"
    assert row["image_cost_usd"] == pytest.approx(4 * PRICE)  # 0.16
    assert row["judge_cost_usd"] == pytest.approx(4 * JUDGE_PRICE)  # 0.05
    assert row["cost_usd"] == pytest.approx(0.21)
    # By hand: $0.21 (four images at $0.04, four judge calls at $0.0125) for three acceptable images = $0.07.
    assert row["acceptable_images"] == 3 and row["cost_per_acceptable_usd"] == pytest.approx(0.07)
    assert row["repairs"] == 1 and row["repair_cost_usd"] == pytest.approx(PRICE)
    assert row["repairs_per_acceptable"] == pytest.approx(0.333)
    # The kept images as the fake judged them: Pip present, identity 4, red scarf present on all three.
    assert (row["judged_images"], row["mean_identity"], row["mean_style_match"], row["mean_scene_match"]) == \
        (3, 4.0, 4.0, 4.0)
    assert row["feature_hit_rate"] == 1.0
    assert (row["reviewed"], row["approved"], row["satisfaction"]) == (0, 0, None)
    assert by_provider.row(0, named=True)["cost_per_acceptable_usd"] == pytest.approx(0.07)

    cost = book_cost(store, story.book_id)
    assert (cost.attempts, cost.paid_generations, cost.judge_calls) == (4, 4, 4)
    assert cost.judge_cost_usd == pytest.approx(0.05) and cost.cost_usd == pytest.approx(0.21)
    assert "4 paid generation(s)" in cost.line() and "4 judge call(s) $0.05" in cost.line()

    result = dg.materialize([cost_report], instance=instance, resources=defs.resources)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "| report-book | scarfpaint | scarf-v1 | 3 | 4 | 4 |" in metadata["by_book"].value
    assert "| report-book | openrouter |" not in metadata["by_book"].value
    frame = pl.read_parquet(io.BytesIO(store.read_bytes(REPORT_PARQUET)))
    assert {"judge_cost_usd", "image_cost_usd", "feature_hit_rate", "satisfaction"} <= set(frame.columns)


def test_judge_report_satisfaction_comes_from_the_review_file(scarf_book, workspace):
    defs, story = scarf_book
    store = defs.resources["storage"].store()
    reviews = workspace["root"] / "reviews"
    reviews.mkdir(exist_ok=True)
    path = reviews / f"{story.book_id}.yaml"
    path.write_text(yaml.safe_dump({"book_id": story.book_id, "sprite_sheet": {"decision": "approve"},
                                    "pages": {1: {"decision": "reject", "note": "Pip looks too small"}}}))
    apply_review_file(path, store)
    row = cost_tables(store)[0].row(0, named=True)
    assert (row["reviewed"], row["approved"], row["satisfaction"]) == (2, 1, 0.5)  # the hero page: not reviewed
    # The page approved after all (as after a redraw): 3 images reviewed (the rejected page among them), 2 approved.
    path.write_text(yaml.safe_dump({"book_id": story.book_id, "sprite_sheet": {"decision": "approve"},
                                    "pages": {1: {"decision": "approve"}}}))
    apply_review_file(path, store)
    row = cost_tables(store)[0].row(0, named=True)
    assert (row["reviewed"], row["approved"], row["satisfaction"]) == (3, 2, 0.667)
