"""What a book's runs say about it: a page that failed its gate is named as failed (with its true attempt count),
not as "not rendered"; the book's own runs show what it cost, and only billed work counts as paid."""

import dagster as dg
import pytest

from bookbug_assets.cost_report import book_cost, cost_tables
from bookbug_assets.defs.book_runs import _assets, materialize_book
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE
from tests.test_checks import (  # noqa: F401 - planted is a fixture
    PlantedProvider, evaluations, planted, render_pages, render_references, write_story,
)


def _with_style(instance, story):
    """Styles are dynamic partitions: the style a test writes is added as the styles sensor would add it."""
    if story.style not in instance.get_dynamic_partitions("styles"):
        instance.add_dynamic_partitions("styles", [story.style])
    return story


def _pdf(defs, instance, story):
    return dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=defs.resources,
                          partition_key=story.book_id, raise_on_error=False)


def _failure(result) -> str:
    return " ".join(e.step_failure_data.error.message for e in result.all_events if e.is_step_failure)


def _logs(instance, result) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(result.run_id))


def test_a_page_that_failed_its_gate_is_named_so_with_every_attempt(planted, defs_for, instance):  # noqa: F811
    defs = defs_for()
    story = _with_style(instance, write_story(planted, "gate-book", pages=3))
    PlantedProvider.PLAN = {2: ["blank", "blank", "blank"]}  # page 2 fails all three attempts
    assert render_references(defs, instance, story).success
    pages = render_pages(defs, instance, story)
    assert not pages.success  # the blocking page check failed

    events = {e.partition: e.materialization.metadata for e in pages.get_asset_materialization_events()}
    failed = events["gate-book|002"]
    assert failed["attempts"].value == 3 and failed["failed_attempts"].value == 3
    assert failed["in_book"].value is False and failed["accepted"].value is False
    assert "failed its quality gate" in failed["quality"].value
    assert "attempt 3 of 3, all failed the gate" in failed["quality"].value
    assert events["gate-book|001"]["quality"].value == "page 1 passed on its first attempt"
    check = evaluations(pages)["gate-book|002"]
    assert not check.passed and "attempt 3 of 3, all failed the gate" in check.description
    log = _logs(instance, pages)
    assert "page 2 failed its quality gate (see its page_quality check): attempt 3 of 3, all failed" in log
    assert "(attempt 1 of 3)" not in log

    message = _failure(_pdf(defs, instance, story))
    assert "page 2 failed its quality gate (see its page_quality check): attempt 3 of 3, all failed the gate" in message
    assert "not rendered" not in message and "page 1" not in message and "page 3" not in message


def test_a_page_never_drawn_is_named_as_not_rendered(planted, defs_for, instance):  # noqa: F811
    defs = defs_for()
    story = _with_style(instance, write_story(planted, "hole-book", pages=3))
    assert render_references(defs, instance, story).success
    assert render_pages(defs, instance, story, pages=[1, 2]).success
    message = _failure(_pdf(defs, instance, story))
    assert "page 3 is not rendered yet; materialize book_pages for it first" in message
    assert "quality gate" not in message


@pytest.fixture
def preview_book(workspace, defs_for, instance):
    (workspace["stories"] / EXAMPLE.name).write_text(EXAMPLE.read_text())
    defs = defs_for()
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    return defs, story, materialize_book(defs, instance, story, echo=lambda *_: None)


def test_the_books_own_runs_show_its_cost_and_previews_are_not_paid(preview_book):
    defs, story, results = preview_book
    assert all(r.success for r in results.values())
    images = 2 + len(story.pages)
    # book_pdf is in every run that makes a book (CLI, sensor backfill, regenerate): its cost is on it.
    (pdf,) = results["finish"].asset_materializations_for_node("book_pdf")
    meta = pdf.metadata
    assert meta["cost_usd"].value == 0.0 and meta["paid_generations"].value == 0
    assert meta["free_generations"].value == images and "0 paid generation(s)" in meta["cost"].value
    # the CLI's runs (demo, book, regenerate) also build cost_report with the book, in the PDF's run
    built = {e.asset_key.to_user_string() for e in results["finish"].get_asset_materialization_events()}
    assert built == {"book_pdf", "generation_ledger", "cost_report"}
    report = next(e for e in results["finish"].get_asset_materialization_events()
                  if e.asset_key.to_user_string() == "cost_report").materialization.metadata
    assert f"| {story.book_id} | preview | storyboard-v1 | {images} | {images} | 0 | {images} | 0 |" in \
        report["by_book"].value
    ledger = next(e for e in results["finish"].get_asset_materialization_events()
                  if e.asset_key.to_user_string() == "generation_ledger").materialization.metadata
    assert ledger["paid_generations"].value == 0 and ledger["free_generations"].value == images


def test_cache_hits_are_not_paid_either(preview_book, instance):
    defs, story, _ = preview_book
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    (pdf,) = again["finish"].asset_materializations_for_node("book_pdf")
    meta = pdf.metadata
    images = 2 + len(story.pages)
    assert meta["paid_generations"].value == 0 and meta["cached_generations"].value == images
    by_book, _ = cost_tables(defs.resources["storage"].store())
    row = by_book.row(0, named=True)
    assert (row["paid_generations"], row["free_generations"], row["cached_generations"]) == (0, images, images)


def test_billed_generations_are_paid(planted, defs_for, instance):  # noqa: F811
    defs = defs_for()
    PlantedProvider.PRICE = 0.05
    story = _with_style(instance, write_story(planted, "paid-book", pages=2))
    assert render_references(defs, instance, story).success
    assert render_pages(defs, instance, story).success
    assert render_pages(defs, instance, story, pages=[1]).success  # a cache hit: free
    cost = book_cost(defs.resources["storage"].store(), story.book_id)
    assert (cost.paid_generations, cost.free_generations, cost.cached_generations) == (4, 0, 1)
    assert cost.cost_usd == pytest.approx(0.20) and cost.cost_per_acceptable_usd == pytest.approx(0.05)
    assert "paid-book has cost $0.20: 4 paid generation(s)" in cost.line()
