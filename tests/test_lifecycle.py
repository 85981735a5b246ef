"""A book's lifecycle: archiving removes its partition and keeps its files, the page slots shrink to the longest
active book, restoring brings both back and rematerializing is all cache hits at $0; delivery and its schedule."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import yaml

from bookbug_assets.cost_report import book_cost
from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.defs.lifecycle.actions import archive, deliver, restore
from bookbug_assets.defs.lifecycle.jobs import archive_after_days, archive_delivered_schedule
from bookbug_assets.layout import book_state_key, pdf_key, provenance_key, record_key
from bookbug_assets.ledger import Ledger
from bookbug_assets.lifecycle import BookState, LifecycleError, due_for_archive, load_state, move, slots_above
from bookbug_assets.storage import LocalArtifactStore
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _story(workspace, book_id: str, pages: int):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(book_id=book_id, pages=data["pages"][:pages])
    path = workspace["stories"] / f"{book_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_story_file(path, {"soft-meadow"})


def _partitions(instance):
    return instance.get_dynamic_partitions("books"), instance.get_dynamic_partitions("page_slots")


@pytest.fixture
def two_books(workspace, defs_for, instance):
    defs = defs_for()
    short, long = _story(workspace, "short-book", 2), _story(workspace, "long-book", 4)
    for story in (short, long):
        assert all(r.success for r in materialize_book(defs, instance, story, echo=lambda *_: None).values())
    return defs, defs.resources["storage"].store(), short, long


def test_archive_keeps_the_files_drops_the_partitions_and_restore_rebuilds_at_no_cost(two_books, instance):
    defs, store, short, long = two_books
    assert _partitions(instance) == (["short-book", "long-book"], ["001", "002", "003", "004"])
    before = set(store.list("books/long-book")) | set(store.list("ledger/rows/long-book")) | set(store.list("blobs"))
    rows_before = len(Ledger(store).rows("long-book"))

    result = defs.resolve_job_def("archive_book").execute_in_process(
        instance=instance, run_config={"ops": {"archive_book_partition": {"config": {"book_id": "long-book"}}}})
    assert result.success
    assert _partitions(instance) == (["short-book"], ["001", "002"])  # its cells and the slots above 2 are gone
    after = set(store.list("books/long-book")) | set(store.list("ledger/rows/long-book")) | set(store.list("blobs"))
    assert after == before | {book_state_key("long-book")}  # nothing deleted
    for key in (pdf_key("long-book"), provenance_key("long-book"), record_key("long-book", "page-004")):
        assert store.exists(key)
    assert load_state(store, "long-book").state == "archived"
    again = archive(instance, store, "long-book")  # a rerun changes nothing and does not fail
    assert not again.changed and again.partition == "unchanged"

    restored = defs.resolve_job_def("restore_book").execute_in_process(
        instance=instance, run_config={"ops": {"restore_book_partition": {"config": {"book_id": "long-book"}}}})
    assert "long-book: active; partition added; page slots 003..004 added" in \
        restored.output_for_node("restore_book_partition")
    assert _partitions(instance) == (["short-book", "long-book"], ["001", "002", "003", "004"])
    assert load_state(store, "long-book").state == "active"
    assert not restore(instance, store, "long-book").changed  # again: nothing to do

    runs = materialize_book(defs, instance, long, echo=lambda *_: None)
    assert all(r.success for r in runs.values())
    run_ids = {r.run_id for r in runs.values()}
    new_rows = [r for r in Ledger(store).rows("long-book") if r.run_id in run_ids]
    assert len(new_rows) == 2 + 4 and len(Ledger(store).rows("long-book")) == rows_before + 6
    assert all(r.status == "cached" and r.cache_hit and r.cost_usd == 0 for r in new_rows)
    assert book_cost(store, "long-book").cost_usd == 0.0


def test_archiving_refuses_a_book_with_a_run_in_flight_and_an_unknown_book(two_books, instance):
    _, store, _, _ = two_books
    instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id="f" * 36, status=dg.DagsterRunStatus.STARTED,
                                   tags={"bookbug/book": "long-book"}))
    with pytest.raises(LifecycleError, match="in flight"):
        archive(instance, store, "long-book")
    assert "long-book" in instance.get_dynamic_partitions("books")
    assert load_state(store, "long-book").state == "active"
    with pytest.raises(LifecycleError, match="no book 'nobody'"):
        archive(instance, store, "nobody")


def test_the_slots_stay_while_an_active_book_has_no_stored_story(two_books, instance):
    _, store, _, _ = two_books
    instance.add_dynamic_partitions("books", ["queued-book"])  # added by the sensor, its run not started yet
    result = archive(instance, store, "long-book")
    assert result.partition == "removed" and not result.slots.removed
    assert "queued-book" in result.slots.kept_because
    assert instance.get_dynamic_partitions("page_slots") == ["001", "002", "003", "004"]


def test_books_delivered_long_ago_are_archived_by_the_job(two_books, instance):
    defs, store, _, _ = two_books
    deliver(store, "short-book", at=datetime.now(timezone.utc) - timedelta(days=40))
    deliver(store, "long-book")
    result = defs.resolve_job_def("archive_delivered_books").execute_in_process(
        instance=instance, run_config={"ops": {"archive_delivered": {"config": {"older_than_days": 30}}}})
    assert result.success and result.output_for_node("archive_delivered") == ["short-book"]
    assert _partitions(instance) == (["long-book"], ["001", "002", "003", "004"])
    assert load_state(store, "long-book").state == "delivered"


def test_the_schedule_is_off_by_default_and_takes_n_from_the_environment(defs_for):
    repo = defs_for().get_repository_def()
    (schedule,) = repo.schedule_defs
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "archive_delivered_books"
    assert archive_after_days({}) == 30 and archive_after_days({"BOOKBUG_ARCHIVE_AFTER_DAYS": "7"}) == 7
    config = archive_delivered_schedule(7).evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    assert config["ops"]["archive_delivered"]["config"]["older_than_days"] == 7
    with pytest.raises(ValueError, match="BOOKBUG_ARCHIVE_AFTER_DAYS='soon'"):
        archive_after_days({"BOOKBUG_ARCHIVE_AFTER_DAYS": "soon"})


# --- the plain state machine ----------------------------------------------------------------------------------

def test_states_move_only_forward_and_restore_makes_a_book_active(tmp_path):
    store = LocalArtifactStore(tmp_path)
    assert load_state(store, "b").state == "active"
    state, changed = move(store, "b", "delivered", at=NOW)
    assert changed and state.delivered_at == NOW
    assert move(store, "b", "delivered", at=NOW + timedelta(days=1)) == (state, False)
    move(store, "b", "archived", at=NOW)
    with pytest.raises(LifecycleError, match="'b' is archived: it cannot be delivered \\(restore it first\\)"):
        move(store, "b", "delivered")
    restored, _ = move(store, "b", "active", at=NOW)
    assert restored.delivered_at is None and [h.state for h in restored.history] == ["delivered", "archived",
                                                                                      "active"]
    with pytest.raises(LifecycleError, match="no PDF"):
        deliver(store, "b")
    store.write_bytes(book_state_key("broken"), b'{"book_id": "broken", "state": "lost"}')
    with pytest.raises(LifecycleError, match="lifecycle.json: state:"):
        load_state(store, "broken")


def test_due_for_archive_and_the_slots_above_the_longest_book():
    def delivered(book, days):
        return BookState(book_id=book, state="delivered", delivered_at=NOW - timedelta(days=days))

    states = [delivered("old", 40), delivered("older", 90), delivered("new", 2), BookState(book_id="active")]
    assert due_for_archive(states, NOW, 30) == ["older", "old"]
    assert due_for_archive(states, NOW, 0) == ["older", "old", "new"]
    assert slots_above(["001", "002", "003", "013"], 2) == ["003", "013"] and slots_above(["001"], 1) == []
