"""Human review: a rejection regenerates exactly that image; malformed files change nothing; DRAFT PDFs."""

import dagster as dg
import pytest
from pypdf import PdfReader

from bookbug_assets.defs.book_runs import _assets
from bookbug_assets.ledger import Ledger
from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf
from bookbug_assets.layout import review_state_key as state_key
from bookbug_assets.review import approval_status, load_state
from bookbug_assets.defs.review.sensors import build_review_sensor
from tests.test_checks import (  # noqa: F401 (planted is a fixture)
    PlantedProvider, planted, render_pages, render_references, write_story,
)


@pytest.fixture
def book(workspace, defs_for, instance):
    defs = defs_for()
    story = write_story(workspace, "review-book", pages=3, provider=None, style="soft-meadow")
    render_references(defs, instance, story, checks=False)
    assert render_pages(defs, instance, story).success
    reviews = workspace["root"] / "reviews"
    reviews.mkdir()
    return defs, story, reviews


def tick(defs, instance, cursor=None):
    sensor = build_review_sensor()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"storage": defs.resources["storage"]})
    # evaluate_tick applies the checks the daemon applies (a backfill request needs the sensor's asset_selection).
    data = sensor.evaluate_tick(context)
    return dg.SensorResult(run_requests=data.run_requests, skip_reason=data.skip_message, cursor=data.cursor)


def subset_keys(run_request):
    subset = run_request.asset_graph_subset
    return {(k.asset_key.to_user_string(), k.partition_key) for k in subset.iterate_asset_partitions()}


def run_request(defs, instance, request):
    """Execute a sensor's backfill request in process: pages first, then the book-level assets."""
    keys = subset_keys(request)
    pages = sorted(p for a, p in keys if a == "book_pages")
    results = []
    for page in pages:
        results.append(dg.materialize(_assets(defs, "book_pages"), instance=instance, resources=defs.resources,
                                      partition_key=page))
    book = next(p for a, p in keys if a == "book_pdf")
    results.append(dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=defs.resources,
                                  partition_key=book))
    return results


def test_a_rejection_regenerates_exactly_that_page_with_a_new_seed_and_the_note(book, instance):
    defs, story, reviews = book
    store = defs.resources["storage"].store()
    before = store.read_json("books/review-book/pages/002.json")
    page1 = store.read_json("books/review-book/pages/001.json")
    rows_before = len(Ledger(store).rows(story.book_id))
    (reviews / "review-book.yaml").write_text(
        "book_id: review-book\n"
        "pages:\n"
        "  1: {decision: approve}\n"
        "  2: {decision: reject, note: Pip's scarf must be red}\n")
    result = tick(defs, instance)
    assert len(result.run_requests) == 1
    assert subset_keys(result.run_requests[0]) == {
        ("book_pages", "review-book|002"), ("book_pdf", "review-book"), ("generation_ledger", None)}
    assert all(r.success for r in run_request(defs, instance, result.run_requests[0]))

    new_rows = Ledger(store).rows(story.book_id)[rows_before:]
    generated = [r for r in new_rows if r.status == "ok"]
    assert [(r.asset, r.partition) for r in generated] == [("book_pages", "review-book|002")]
    after = store.read_json("books/review-book/pages/002.json")
    assert after["seed"] != before["seed"] and after["image_sha256"] != before["image_sha256"]
    assert "Pip's scarf must be red" in after["prompt"]
    assert store.read_json("books/review-book/pages/001.json") == page1  # untouched
    assert load_state(store, story.book_id).targets["page-001"].decision == "approve"

    # The same file again: nothing to do. Rewording the note asks for another try.
    again = tick(defs, instance, cursor=result.cursor)
    assert not again.run_requests
    # A tick that folded the file but failed before its cursor was saved comes back with the old cursor: the
    # rejection it should have requested is requested again, and costs nothing (the image exists).
    replayed = tick(defs, instance, cursor=None)
    assert [subset_keys(r) for r in replayed.run_requests] == [subset_keys(result.run_requests[0])]
    assert load_state(store, story.book_id).targets["page-002"].revision == 1  # not a new try
    (reviews / "review-book.yaml").write_text(
        "book_id: review-book\npages:\n  2: {decision: reject, note: Pip's scarf must be red and striped}\n")
    retry = tick(defs, instance, cursor=result.cursor)
    assert len(retry.run_requests) == 1
    assert load_state(store, story.book_id).targets["page-002"].revision == 2


def test_a_rejected_hero_page_regenerates_it_and_every_page(book, instance):
    defs, story, reviews = book
    (reviews / "review-book.yaml").write_text(
        "book_id: review-book\nhero_page: {decision: reject, note: make the sky lighter}\n")
    result = tick(defs, instance)
    assert subset_keys(result.run_requests[0]) == {
        ("hero_page", "review-book"), ("book_pdf", "review-book"), ("generation_ledger", None),
        *{("book_pages", f"review-book|00{i}") for i in (1, 2, 3)}}


MALFORMED = [
    ("book_id: review-book\npages:\n  2: {decision: reject}\n", ["review-book.yaml", "pages[2]", "note"]),
    ("book_id: review-book\npages:\n  9: {decision: approve}\n", ["review-book.yaml", "pages.9", "does not exist"]),
    ("book_id: review-book\nhero_page: {decision: maybe}\n", ["review-book.yaml", "hero_page.decision"]),
    ("book_id: other-book\n", ["review-book.yaml", "book_id", "does not match"]),
    ("book_id: review-book\ncolour: red\n", ["review-book.yaml", "colour", "Extra inputs"]),
    ("pages: [oops\n", ["review-book.yaml", "invalid YAML"]),
    ("\x00\xff\xfe junk", ["review-book.yaml"]),
]


def test_a_malformed_review_is_rejected_with_a_reason_and_changes_nothing(book, instance):
    defs, story, reviews = book
    store = defs.resources["storage"].store()
    (reviews / "review-book.yaml").write_text("book_id: review-book\npages:\n  1: {decision: approve}\n")
    cursor = tick(defs, instance).cursor
    state_before = store.read_bytes(state_key(story.book_id))
    for content, words in MALFORMED:
        (reviews / "review-book.yaml").write_bytes(content.encode("latin-1"))
        result = tick(defs, instance, cursor=cursor)
        assert not result.run_requests
        reason = (reviews / "rejected" / "review-book.yaml.reason.txt").read_text()
        assert all(w in reason for w in words), (content, reason)
        assert store.read_bytes(state_key(story.book_id)) == state_before
    # A file for a book that was never rendered is refused the same way.
    (reviews / "ghost-book.yaml").write_text("book_id: ghost-book\n")
    tick(defs, instance, cursor=cursor)
    assert "no materialized story" in (reviews / "rejected" / "ghost-book.yaml.reason.txt").read_text()


def test_unapproved_images_make_a_draft_pdf(book, instance, tmp_path):
    defs, story, reviews = book
    store = defs.resources["storage"].store()
    approve_all = ("book_id: review-book\nrequire_approval: true\nsprite_sheet: {decision: approve}\n"
                   "hero_page: {decision: approve}\npages:\n" +
                   "".join(f"  {i}: {{decision: approve}}\n" for i in (1, 2, 3)))
    (reviews / "review-book.yaml").write_text(approve_all.replace("  3: {decision: approve}\n", ""))
    cursor = tick(defs, instance).cursor
    status = approval_status(store, story)
    assert status.required and status.draft and status.unapproved == ["page-003"]
    (reviews / "review-book.yaml").write_text(approve_all)
    tick(defs, instance, cursor=cursor)
    assert not approval_status(store, story).draft
    # Without require_approval anywhere, nothing is a draft.
    assert not approval_status(store, story.model_copy(update={"book_id": "other"})).draft

    # What book_pdf does with it: draft=True stamps DRAFT on every page and in the title.
    image = store.local_path(store.read_json("books/review-book/pages/001.json")["image_key"])
    page = PdfPage(image=image, text="", is_preview=False)
    out = build_book_pdf(title="T", author="A", cover=page, pages=[page], spec=PdfSpec(), out_path=tmp_path / "d.pdf",
                         draft=status.draft)
    assert "[DRAFT]" in PdfReader(out.path).metadata.title


def test_approving_a_page_that_failed_its_gate_lets_it_into_the_book(planted, defs_for, instance):
    defs = defs_for()
    store = defs.resources["storage"].store()
    story = write_story(planted, "override-book", pages=2)
    PlantedProvider.PLAN = {2: ["offpalette"]}  # a deliberate palette change a person may want
    render_references(defs, instance, story, checks=False)
    one_attempt = {"ops": {"book_pages": {"config": {"max_attempts": 1}}}}
    assert not render_pages(defs, instance, story, run_config=one_attempt).success
    assert not store.exists("books/override-book/pages/002.json")
    reviews = planted["root"] / "reviews"
    reviews.mkdir()
    (reviews / "override-book.yaml").write_text("book_id: override-book\npages:\n  2: {decision: approve, note: ok}\n")
    result = tick(defs, instance)
    assert subset_keys(result.run_requests[0]) >= {("book_pages", "override-book|002")}
    page = dg.materialize(_assets(defs, "book_pages"), instance=instance, resources=defs.resources,
                          partition_key="override-book|002", run_config=one_attempt)
    assert page.success
    evaluation = page.get_asset_check_evaluations()[0]
    assert evaluation.passed and "approved by a reviewer" in evaluation.description
    assert store.exists("books/override-book/pages/002.json")


# --- review input: one line of plain text, page keys that are page numbers ------------------------------------

@pytest.mark.parametrize("char", ["\u2028", "\u0085", "\u202e", "\x7f", "\x1b", "\u200b"])
def test_a_review_note_with_a_line_separator_or_control_character_is_refused(char):
    from bookbug_assets.review import ReviewError, parse_review

    # Written as a YAML escape: YAML itself refuses most of these characters typed raw, never its escapes.
    text = f"book_id: review-book\nhero_page: {{decision: reject, note: \"make the sky\\u{ord(char):04x}lighter\"}}\n"
    with pytest.raises(ReviewError) as err:
        parse_review(text.encode(), "review-book.yaml", None)
    assert str(err.value).startswith("review-book.yaml: hero_page.note: "), str(err.value)
    assert f"U+{ord(char):04X}" in str(err.value)


def test_a_reviewer_name_is_one_line_of_plain_text():
    from bookbug_assets.review import ReviewError, parse_review

    with pytest.raises(ReviewError, match=r"reviewer: .*U\+202E"):
        parse_review(b"book_id: review-book\nreviewer: \"sam\\u202eevil\"\n", "review-book.yaml", None)


@pytest.mark.parametrize(("pages", "key", "why"), [
    ("  yes: {decision: approve}\n", "pages.yes", "boolean"),
    ("  on: {decision: approve}\n", "pages.on", "boolean"),
    ("  3.0: {decision: approve}\n", "pages.3.0", "whole"),
    # a key YAML would fold onto an earlier page is named as written, not as the page it would overwrite
    ("  3: {decision: approve}\n  3.0: {decision: reject, note: redo}\n", "pages.3.0", "whole"),
    ("  1: {decision: approve}\n  yes: {decision: reject, note: redo}\n", "pages.yes", "boolean"),
    ("  010: {decision: approve}\n", "pages.010", "decimal"),
    ("  0x3: {decision: approve}\n", "pages.0x3", "decimal"),
    ("  -1: {decision: approve}\n", "pages.-1", "decimal"),
    ("  3: {decision: approve}\n  \"3\": {decision: reject, note: redo}\n", "pages.3", "twice"),
    ("  three: {decision: approve}\n", "pages.three", "page number"),
    ("  null: {decision: approve}\n", "pages.null", "page number"),
])
def test_review_page_keys_must_be_page_numbers_each_written_once(pages, key, why):
    from bookbug_assets.review import ReviewError, parse_review

    with pytest.raises(ReviewError) as err:
        parse_review(f"book_id: review-book\npages:\n{pages}".encode(), "review-book.yaml", None)
    message = str(err.value)
    assert message.startswith("review-book.yaml: ") and key in message and why in message, message


def test_plain_page_numbers_still_read_as_pages():
    from bookbug_assets.review import parse_review

    review = parse_review(b"book_id: review-book\npages:\n  3: {decision: approve}\n  12: {decision: reject, "
                          b"note: \"Pip's scarf is red\"}\n  \"4\": {decision: approve}\n", "review-book.yaml", None)
    assert sorted(review.pages) == [3, 4, 12]


def test_the_review_model_refuses_boolean_and_fractional_page_keys_whatever_the_reader():
    from pydantic import ValidationError

    from bookbug_assets.review import ReviewFile

    for pages in ({True: {"decision": "approve"}}, {3.5: {"decision": "approve"}}, {3.0: {"decision": "approve"}},
                  {3: {"decision": "approve"}, "3": {"decision": "approve"}}):
        with pytest.raises(ValidationError):
            ReviewFile.model_validate({"book_id": "review-book", "pages": pages})
