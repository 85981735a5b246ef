"""Lifecycle jobs: deliver, archive and restore one book (its id in the run config), and archive the books delivered
more than N days ago, with a daily schedule for that which is off until someone turns it on.

    ops: {archive_book_partition: {config: {book_id: pip-and-the-lantern}}}

The work is in actions.py, which the CLI calls too; each op fails with the one-line reason when a book
cannot make the move (not a book, runs in flight, nothing to restore).
"""

import os
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from bookbug_assets.defs.books.book_style import observe_book_style
from bookbug_assets.defs.lifecycle.actions import LifecycleResult, archive, deliver, restore, shrink_page_slots
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.layout import load_story
from bookbug_assets.lifecycle import LifecycleError, due_for_archive, load_state

ARCHIVE_AFTER_ENV = "BOOKBUG_ARCHIVE_AFTER_DAYS"
DEFAULT_ARCHIVE_AFTER_DAYS = 30


class BookIdConfig(dg.Config):
    book_id: str = Field(description="The book (its story's book_id).")
    note: str = Field("", description="Why, kept in the book's lifecycle history.")


class ArchiveDeliveredConfig(dg.Config):
    older_than_days: float = Field(DEFAULT_ARCHIVE_AFTER_DAYS, ge=0,
                                   description="Archive books delivered at least this many days ago.")


def _metadata(result: LifecycleResult) -> dict:
    return {"book": result.book_id, "state": result.state.state, "changed": result.changed,
            "partition": result.partition, "slots_removed": len(result.slots.removed),
            "slots_added": len(result.slots.added), "slots_kept_because": result.slots.kept_because or "",
            **{f"kept_{k}": v for k, v in result.kept.items()}}


def _lifecycle(context: dg.OpExecutionContext, action, *args, **kwargs) -> LifecycleResult:
    try:
        result = action(*args, **kwargs)
    except LifecycleError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    context.log.info(result.line())
    context.add_output_metadata(_metadata(result))
    return result


@dg.op(description="Archive a book: record it, delete its `books` partition (its page cells go), shrink the page "
                   "slots to the longest active book. Nothing in the store is deleted.")
def archive_book_partition(context: dg.OpExecutionContext, config: BookIdConfig, storage: BookbugStorage) -> str:
    return _lifecycle(context, archive, context.instance, storage.store(), config.book_id, note=config.note).line()


@dg.op(description="Restore an archived book: its page slots and `books` partition come back; rematerializing it "
                   "is all cache hits.")
def restore_book_partition(context: dg.OpExecutionContext, config: BookIdConfig, storage: BookbugStorage) -> str:
    store = storage.store()
    result = _lifecycle(context, restore, context.instance, store, config.book_id, note=config.note)
    # While archived its partition got no book_style observation when its style changed: one now, so the UI says
    # whether its pages are stale (and a rebuild then costs what the changed style costs, not $0).
    observe_book_style(context, store, config.book_id, load_story(store, config.book_id).style)
    return result.line()


@dg.op(description="Record a book as delivered (it needs its PDF), which starts its archive clock.")
def record_delivery(context: dg.OpExecutionContext, config: BookIdConfig, storage: BookbugStorage) -> str:
    try:
        state = deliver(storage.store(), config.book_id, note=config.note)
    except LifecycleError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    context.add_output_metadata({"book": config.book_id, "state": state.state,
                                 "delivered_at": state.delivered_at.isoformat() if state.delivered_at else ""})
    return f"{config.book_id}: {state.state}"


@dg.op(description="Archive every active book delivered at least `older_than_days` ago, then shrink the page slots "
                   "once.")
def archive_delivered(context: dg.OpExecutionContext, config: ArchiveDeliveredConfig,
                      storage: BookbugStorage) -> list[str]:
    store = storage.store()
    books = context.instance.get_dynamic_partitions(books_partitions.name)
    due = due_for_archive((load_state(store, b) for b in books), datetime.now(timezone.utc), config.older_than_days)
    archived, skipped = [], []
    for book_id in due:
        try:
            result = archive(context.instance, store, book_id, shrink=False,
                             note=f"delivered over {config.older_than_days:g} days ago")
        except LifecycleError as exc:  # e.g. a rerun in flight: the next run takes it
            skipped.append(f"{book_id}: {exc}")
            continue
        archived.append(result.book_id)
    slots = shrink_page_slots(context.instance, store) if archived else None
    context.log.info(f"archived {len(archived)} of {len(books)} active book(s)" +
                     (f"; skipped {'; '.join(skipped)}" if skipped else ""))
    context.add_output_metadata({"archived": ", ".join(archived) or "none", "skipped": len(skipped),
                                 "slots_removed": len(slots.removed) if slots else 0,
                                 "slots_kept_because": slots.kept_because if slots else ""})
    return archived


@dg.job(description="Archive one book (run config: book_id): its partition goes, its files stay.",
        executor_def=dg.in_process_executor)
def archive_book():
    archive_book_partition()


@dg.job(description="Restore one archived book (run config: book_id): its partition and page slots come back.",
        executor_def=dg.in_process_executor)
def restore_book():
    restore_book_partition()


@dg.job(description="Record one book as delivered (run config: book_id).", executor_def=dg.in_process_executor)
def deliver_book():
    record_delivery()


@dg.job(description="Archive the books delivered more than N days ago (older_than_days).",
        executor_def=dg.in_process_executor)
def archive_delivered_books():
    archive_delivered()


def archive_after_days(environ=os.environ) -> float:
    raw = environ.get(ARCHIVE_AFTER_ENV, "").strip()
    if not raw:
        return DEFAULT_ARCHIVE_AFTER_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days < 0:
        raise ValueError(f"{ARCHIVE_AFTER_ENV}={raw!r}: write a number of days, 0 or more")
    return days


def archive_delivered_schedule(days: float) -> dg.ScheduleDefinition:
    # Off by default: archiving is a decision a team turns on (UI: Automation, or `dagster schedule start`).
    return dg.ScheduleDefinition(
        name="archive_delivered_books_schedule", job=archive_delivered_books, cron_schedule="0 3 * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        run_config={"ops": {"archive_delivered": {"config": {"older_than_days": days}}}},
        description=f"Daily at 03:00: archive books delivered at least {days:g} days ago ({ARCHIVE_AFTER_ENV}).")


@dg.definitions
def lifecycle_defs() -> dg.Definitions:
    return dg.Definitions(jobs=[archive_book, restore_book, deliver_book, archive_delivered_books],
                          schedules=[archive_delivered_schedule(archive_after_days())])
