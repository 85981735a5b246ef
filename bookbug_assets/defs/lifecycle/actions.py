"""Archive, restore and deliver a book against a Dagster instance: what the lifecycle jobs and the CLI call.

archive: the state first (archived), then the `books` partition is deleted (its page cells leave the
book x page-slot product) and the slot dimension shrinks to the longest active book. Nothing in the
store is deleted. restore: the book's page slots and partition come back, then the state (active).
Each step is safe to repeat, so a run that died half way is finished by running it again.

Partitions are only touched when no run or backfill of the book is in flight (deleting a partition
under a running backfill fails it). Shrinking the slot dimension needs every active book's length,
read from its stored story; while any book's run is in flight, or an active book has no stored story
yet (a backfill the sensor just requested), the slots are left as they are and the result says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
# Private: DagsterInstance.get_backfills takes these, and dagster exports no public filter for backfills yet.
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from bookbug_assets.defs.common import BOOK_TAG
from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.layout import stored_story
from bookbug_assets.lifecycle import BookState, LifecycleError, kept_in_store, load_state, mark_delivered, move, \
    slots_above
from bookbug_assets.storage import ArtifactStore

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
BACKFILLS_IN_FLIGHT = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]


@dataclass
class SlotChange:
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    kept_because: str = ""  # why the slots above the longest active book were not removed


@dataclass
class LifecycleResult:
    book_id: str
    state: BookState
    changed: bool
    partition: str  # "removed", "added" or "unchanged"
    slots: SlotChange
    kept: dict[str, int]

    def line(self) -> str:
        slots = (f"page slots {self.slots.removed[0]}..{self.slots.removed[-1]} removed" if self.slots.removed else
                 f"page slots {self.slots.added[0]}..{self.slots.added[-1]} added" if self.slots.added else
                 f"page slots kept ({self.slots.kept_because})" if self.slots.kept_because else "page slots unchanged")
        kept = ", ".join(f"{k} {v}" for k, v in self.kept.items())
        return (f"{self.book_id}: {self.state.state}{'' if self.changed else ' (already)'}; partition "
                f"{self.partition}; {slots}; kept in the store: {kept}")


def in_flight(instance: dg.DagsterInstance, book_id: str | None = None) -> list[str]:
    """Runs and backfills of the book (of any book, with None) that have not ended: 'run <id>', 'backfill <id>'."""
    tags = {BOOK_TAG: book_id} if book_id else None
    runs = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT, tags=tags), limit=50)
    found = [f"run {r.dagster_run.run_id}" for r in runs if BOOK_TAG in r.dagster_run.tags]
    backfills = instance.get_backfills(filters=BulkActionsFilter(statuses=BACKFILLS_IN_FLIGHT, tags=tags), limit=50)
    return found + [f"backfill {b.backfill_id}" for b in backfills if BOOK_TAG in (b.tags or {})]


def shrink_page_slots(instance: dg.DagsterInstance, store: ArtifactStore) -> SlotChange:
    """Delete the page slots above the longest active book (the product's page dimension), or say why not."""
    books = instance.get_dynamic_partitions(books_partitions.name)
    busy = in_flight(instance)
    if busy:
        return SlotChange(kept_because=f"{busy[0]} in flight")
    longest = 0
    for book_id in books:
        story = stored_story(store, book_id)
        if story is None:
            return SlotChange(kept_because=f"book {book_id!r} has no stored story yet, so its length is unknown")
        longest = max(longest, *(int(k) for k in story.page_keys))
    above = slots_above(instance.get_dynamic_partitions(page_slots_partitions.name), longest)
    for slot in above:
        instance.delete_dynamic_partition(page_slots_partitions.name, slot)
    if set(instance.get_dynamic_partitions(books_partitions.name)) - set(books):
        # A book arrived while the slots went (the sensor adds only slots it finds missing): give them back.
        instance.add_dynamic_partitions(page_slots_partitions.name, above)
        return SlotChange(kept_because="a book was added meanwhile")
    return SlotChange(removed=above)


def _refuse_if_busy(instance: dg.DagsterInstance, book_id: str, doing: str) -> None:
    busy = in_flight(instance, book_id)
    if busy:
        raise LifecycleError(f"book {book_id!r} has {', '.join(busy[:3])} in flight: {doing} it when they have ended")


def archive(instance: dg.DagsterInstance, store: ArtifactStore, book_id: str, *, at: datetime | None = None,
            shrink: bool = True, note: str = "") -> LifecycleResult:
    """Archive a book: state, then its partition, then (unless `shrink` is False) the slot dimension."""
    books = set(instance.get_dynamic_partitions(books_partitions.name))
    if book_id not in books and stored_story(store, book_id) is None:
        raise LifecycleError(f"no book {book_id!r}: it is not a books partition and has no stored story")
    _refuse_if_busy(instance, book_id, "archive")
    state, changed = move(store, book_id, "archived", at=at, note=note)
    if book_id in books:
        instance.delete_dynamic_partition(books_partitions.name, book_id)
    slots = shrink_page_slots(instance, store) if shrink else SlotChange(kept_because="not asked to shrink")
    return LifecycleResult(book_id, state, changed, "removed" if book_id in books else "unchanged", slots,
                           kept_in_store(store, book_id))


def restore(instance: dg.DagsterInstance, store: ArtifactStore, book_id: str, *, at: datetime | None = None,
            note: str = "") -> LifecycleResult:
    """Bring an archived book back: its page slots and partition, then its state (active)."""
    story = stored_story(store, book_id)
    if story is None:
        raise LifecycleError(f"book {book_id!r} has no stored story: there is nothing to restore (build it from "
                             "its story file instead)")
    current = load_state(store, book_id)
    if current.state != "archived" and book_id in instance.get_dynamic_partitions(books_partitions.name):
        return LifecycleResult(book_id, current, False, "unchanged", SlotChange(), kept_in_store(store, book_id))
    _refuse_if_busy(instance, book_id, "restore")
    missing = sorted(set(story.page_keys) - set(instance.get_dynamic_partitions(page_slots_partitions.name)))
    if missing:  # only ever the top of the dimension (shrinking removes from the top), so the order stays 001..
        instance.add_dynamic_partitions(page_slots_partitions.name, missing)
    added = book_id not in instance.get_dynamic_partitions(books_partitions.name)
    if added:
        instance.add_dynamic_partitions(books_partitions.name, [book_id])
    state, changed = move(store, book_id, "active", at=at, note=note) if current.state == "archived" else \
        (current, False)
    return LifecycleResult(book_id, state, changed, "added" if added else "unchanged", SlotChange(added=missing),
                           kept_in_store(store, book_id))


def deliver(store: ArtifactStore, book_id: str, *, at: datetime | None = None, note: str = "") -> BookState:
    """Record the book as delivered (it needs its PDF); partitions are untouched until it is archived."""
    return mark_delivered(store, book_id, at=at, note=note)[0]
