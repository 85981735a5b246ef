"""A book's lifecycle, active -> delivered -> archived (and restored to active): what keeps partitions bounded.

An active book is one of the `books` partitions, and so `page slots` cells of the book x page product.
Delivering it records when it was handed over; archiving it (defs/lifecycle/) removes its partition,
so its cells leave the product, and deletes nothing in the store: records, images, ledger rows,
provenance and PDFs all stay. That is what makes a restore cheap: the partition comes back and a
rematerialization finds every image in the cache, at $0.

The state lives in the store (layout.book_state_key) beside the book's records, so it travels with them
(a local folder or a bucket) and needs nothing from the Dagster instance. A book with no state file
is active. Restoring makes a book active again (not "delivered"): a restored book is back for work, and
a schedule archiving books delivered long ago must not take it away the next night.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable, Literal

from pydantic import BaseModel, ValidationError

from bookbug_assets.layout import book_key, book_state_key, pdf_key, story_key
from bookbug_assets.ledger import LEDGER_PREFIX, book_folder
from bookbug_assets.storage import ArtifactStore

State = Literal["active", "delivered", "archived"]
# (from, to): every move a book may make; the same state again is a no-op, so a rerun job never fails on it.
MOVES = {("active", "delivered"), ("active", "archived"), ("delivered", "archived"), ("archived", "active")}
HOW = {"delivered": "deliver", "archived": "archive", "active": "restore"}


class LifecycleError(ValueError):
    """A move a book cannot make, said in one line (the CLI prints it, the jobs fail with it)."""


class StateChange(BaseModel):
    state: State
    at: datetime
    note: str = ""


class BookState(BaseModel):
    book_id: str
    state: State = "active"
    delivered_at: datetime | None = None
    archived_at: datetime | None = None
    history: list[StateChange] = []


def _now(at: datetime | None) -> datetime:
    return at or datetime.now(timezone.utc)


def load_state(store: ArtifactStore, book_id: str) -> BookState:
    key = book_state_key(book_id)
    try:
        return BookState.model_validate_json(store.read_bytes(key))
    except FileNotFoundError:
        return BookState(book_id=book_id)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise LifecycleError(f"{store.uri(key)}: {'.'.join(map(str, first['loc'])) or 'state'}: {first['msg']}") \
            from None


def save_state(store: ArtifactStore, state: BookState) -> None:
    store.write_bytes(book_state_key(state.book_id), state.model_dump_json(indent=2).encode())


def move(store: ArtifactStore, book_id: str, to: State, *, at: datetime | None = None,
         note: str = "") -> tuple[BookState, bool]:
    """(the book's state after moving it to `to`, whether it changed). The same state again changes nothing."""
    state = load_state(store, book_id)
    if state.state == to:
        return state, False
    if (state.state, to) not in MOVES:
        hint = " (restore it first)" if state.state == "archived" else ""
        raise LifecycleError(f"book {book_id!r} is {state.state}: it cannot be {to}{hint}")
    when = _now(at)
    changed = state.model_copy(update={
        "state": to, "history": [*state.history, StateChange(state=to, at=when, note=note)],
        "delivered_at": when if to == "delivered" else None if to == "active" else state.delivered_at,
        "archived_at": when if to == "archived" else None if to == "active" else state.archived_at})
    save_state(store, changed)
    return changed, True


def mark_delivered(store: ArtifactStore, book_id: str, *, at: datetime | None = None,
                   note: str = "") -> tuple[BookState, bool]:
    """Record that the book was handed over; it needs its PDF (that is what is delivered)."""
    if not store.exists(pdf_key(book_id)):
        raise LifecycleError(f"book {book_id!r} has no PDF at {store.uri(pdf_key(book_id))}: nothing to deliver yet")
    return move(store, book_id, "delivered", at=at, note=note)


def due_for_archive(states: Iterable[BookState], now: datetime, older_than_days: float) -> list[str]:
    """Books delivered at least `older_than_days` ago and not archived yet, oldest delivery first."""
    cutoff = now - timedelta(days=older_than_days)
    due = [s for s in states if s.state == "delivered" and s.delivered_at is not None and s.delivered_at <= cutoff]
    return [s.book_id for s in sorted(due, key=lambda s: s.delivered_at)]


def slots_above(slots: Iterable[str], longest: int) -> list[str]:
    """The page slots a product bounded by the longest active book no longer needs ('013'.. when it has 12)."""
    return [s for s in slots if s.isdigit() and int(s) > longest]


def kept_in_store(store: ArtifactStore, book_id: str) -> dict[str, int]:
    """What an archived book still has in the store: its files under books/<book>/, its ledger rows."""
    files = store.list(book_key(book_id, "").rstrip("/"))
    return {"book_files": len(files), "ledger_rows": len(store.list(f"{LEDGER_PREFIX}/{book_folder(book_id)}")),
            "has_pdf": int(pdf_key(book_id) in files), "has_story": int(story_key(book_id) in files)}
