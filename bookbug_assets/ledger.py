"""The generation ledger (one small JSON object per generation), its per-book compaction, and the per-book budget.

Rows are separate objects rather than lines in one file so that concurrent steps, separate run
processes and an S3 store can all append without locks. They are never rewritten or deleted: they
are the truth, and everything compacted from them is a cache that can be rebuilt from them.

Compaction is per book and incremental. Each book has one Parquet segment of its compacted rows
and a manifest naming that segment, the row files it holds and their total cost:

    ledger/rows/<book>/<stamp>-<id>.json      one row per generation (`_global`: rows of no book)
    ledger/books/<book>/segment-<id>.parquet  the book's compacted rows (never overwritten: a new name each time)
    ledger/books/<book>/manifest.json         Manifest: which row files that segment holds, and their sum

`compact(book)` lists that book's row files and parses only those its manifest does not name, so
its cost follows the book, not the project's history. The segment is written first, the manifest
second: a crash between them leaves the old manifest naming the old segment, the new segment is
ignored, and the rows it held are still "not compacted" and are compacted again next time (no row
lost, none counted twice). `spent(book)` is the manifest's total plus the rows not compacted yet.

Per book rather than a `generation_ledger` partitioned by book: rows of style training and of
experiments belong to no book partition, archiving a book removes its partition while its ledger
stays, and the book's runs stay as they are. ledger_table.py builds the whole-project table from
these segments.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl
from pydantic import BaseModel, Field, ValidationError

from bookbug_assets.storage import ArtifactStore

LEDGER_PREFIX = "ledger/rows"
COMPACTED_PREFIX = "ledger/books"
GLOBAL_FOLDER = "_global"
ROW_KEY = "row_key"  # a segment's extra column: the row file's name (a manifest's keys can be checked against it)


class LedgerRow(BaseModel):
    """One generation attempt, or one call of the quality judge (`kind` "judge": `provider`/`model` are the judge's,
    `seed` 0, `request_key` the verdict's cache key, `image_sha256` the image judged, `attempt` the image attempt
    it judged). Documented column by column in README ("The ledger")."""

    ts: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    run_id: str = ""
    book_id: str = ""
    asset: str = ""
    partition: str = ""
    kind: str = ""
    provider: str
    model: str
    version: str | None = None
    seed: int
    request_key: str
    job_id: str | None = None
    image_sha256: str | None = None
    # ok | cached | refused | timeout | failed | lost | budget_stop | skipped (remembered refusal); a judge call
    # (kind "judge", quality/judge_gate.py): ok | cached | malformed | refused | unavailable | budget_stop
    status: str
    cache_hit: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempt: int = 1
    lora: str | None = None
    variant: str = ""  # the provider's lossy settings (ImageRequest.variant), "" for full precision
    is_preview: bool = False
    width: int = 0
    height: int = 0
    error: str | None = None
    change: str = ""  # what this attempt changed against the image's first ("" for the first): no paid repeat


LEDGER_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"), "run_id": pl.Utf8, "book_id": pl.Utf8, "asset": pl.Utf8,
    "partition": pl.Utf8, "kind": pl.Utf8, "provider": pl.Utf8, "model": pl.Utf8, "version": pl.Utf8,
    "seed": pl.Int64, "request_key": pl.Utf8, "job_id": pl.Utf8, "image_sha256": pl.Utf8,
    "status": pl.Utf8, "cache_hit": pl.Boolean, "cost_usd": pl.Float64, "latency_s": pl.Float64,
    "attempt": pl.Int64, "lora": pl.Utf8, "variant": pl.Utf8, "is_preview": pl.Boolean, "width": pl.Int64,
    "height": pl.Int64, "error": pl.Utf8, "change": pl.Utf8,
}
SEGMENT_SCHEMA = {**LEDGER_SCHEMA, ROW_KEY: pl.Utf8}


def book_folder(book_id: str) -> str:
    return book_id or GLOBAL_FOLDER


def folder_book(folder: str) -> str:
    return "" if folder == GLOBAL_FOLDER else folder


def _book_prefix(book_id: str) -> str:
    return f"{LEDGER_PREFIX}/{book_folder(book_id)}"


def manifest_key(book_id: str) -> str:
    return f"{COMPACTED_PREFIX}/{book_folder(book_id)}/manifest.json"


def segment_key(book_id: str, name: str) -> str:
    return f"{COMPACTED_PREFIX}/{book_folder(book_id)}/{name}"


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


class Manifest(BaseModel):
    """A book's compacted state: its current segment, the row files (names) that segment holds, their sum."""

    book_id: str
    segment: str | None = None
    keys: list[str] = []
    rows: int = 0
    spent_usd: float = 0.0


@dataclass(frozen=True)
class Compaction:
    """What one compaction of one book did: `parsed` row files read and validated, `rows` in its segment now."""

    book_id: str
    parsed: int
    rows: int
    segment: str | None


def _rows_frame(items: list[tuple[str, LedgerRow]]) -> pl.DataFrame:
    if not items:
        return pl.DataFrame(schema=SEGMENT_SCHEMA)
    return pl.DataFrame([{**row.model_dump(), ROW_KEY: name} for name, row in items], schema=SEGMENT_SCHEMA)


class Ledger:
    def __init__(self, store: ArtifactStore):
        self.store = store

    def append(self, row: LedgerRow) -> None:
        stamp = row.ts.strftime("%Y%m%dT%H%M%S%f")
        key = f"{_book_prefix(row.book_id)}/{stamp}-{uuid.uuid4().hex[:8]}.json"
        self.store.write_bytes(key, row.model_dump_json().encode())

    # --- the compacted state and the rows not compacted yet -----------------------------------------------

    def manifest(self, book_id: str) -> Manifest:
        """The book's manifest; an unreadable one counts as none (it is a cache: the rows are the truth)."""
        try:
            return Manifest.model_validate_json(self.store.read_bytes(manifest_key(book_id)))
        except (FileNotFoundError, ValidationError):
            return Manifest(book_id=book_id)

    def compacted(self, book_id: str) -> tuple[Manifest, pl.DataFrame]:
        """The manifest and its segment. A segment gone under us (a concurrent compaction of the same book
        replaced it) is looked up again in the newer manifest; failing that, the book counts as not compacted."""
        manifest = self.manifest(book_id)
        for _ in range(2):
            if manifest.segment is None:
                break
            try:
                data = self.store.read_bytes(segment_key(book_id, manifest.segment))
            except FileNotFoundError:
                manifest = self.manifest(book_id)
                continue
            return manifest, pl.read_parquet(io.BytesIO(data))
        return Manifest(book_id=book_id), pl.DataFrame(schema=SEGMENT_SCHEMA)

    def _parse(self, key: str) -> LedgerRow:
        try:
            return LedgerRow.model_validate_json(self.store.read_bytes(key))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"ledger row {key}: {'.'.join(map(str, first['loc'])) or 'row'}: {first['msg']}") \
                from None

    def _pending(self, book_id: str, manifest: Manifest,
                 listed: list[str] | None = None) -> list[tuple[str, LedgerRow]]:
        """(file name, row) for the book's row files its manifest does not name, in file-name order."""
        keys = listed if listed is not None else [k for k in self.store.list(_book_prefix(book_id))
                                                  if k.endswith(".json")]
        done = set(manifest.keys)
        names = [(k, k.rsplit("/", 1)[-1]) for k in keys]
        return [(name, self._parse(key)) for key, name in names if name not in done]

    def _listed_by_folder(self) -> dict[str, list[str]]:
        by_folder: dict[str, list[str]] = {}
        for key in self.store.list(LEDGER_PREFIX):
            if key.endswith(".json"):
                by_folder.setdefault(key[len(LEDGER_PREFIX) + 1:].split("/", 1)[0], []).append(key)
        return by_folder

    def books(self) -> list[str]:
        """Every book id with ledger rows ("" for rows of no book). Lists every row file: not for a book's run."""
        return [folder_book(f) for f in sorted(self._listed_by_folder())]

    def _book_frame(self, book_id: str, listed: list[str] | None = None) -> pl.DataFrame:
        """All of a book's rows (compacted and not yet), with their file names, in file-name order."""
        manifest, segment = self.compacted(book_id)
        pending = self._pending(book_id, manifest, listed)
        frame = pl.concat([segment.select(SEGMENT_SCHEMA.keys()), _rows_frame(pending)]) if pending else segment
        return frame.sort(ROW_KEY)

    # --- what callers read --------------------------------------------------------------------------------

    def rows(self, book_id: str | None = None) -> list[LedgerRow]:
        """Every row of a book (or of all books), in the order they were written (their file names)."""
        frame = self._frame_with_keys(book_id).drop(ROW_KEY)
        return [LedgerRow.model_validate(r) for r in frame.iter_rows(named=True)]

    def frame(self, book_id: str | None = None) -> pl.DataFrame:
        """Every row of a book (or of all books, which lists every row file) as LEDGER_SCHEMA, by time."""
        return self._frame_with_keys(book_id).drop(ROW_KEY).sort("ts")

    def _frame_with_keys(self, book_id: str | None) -> pl.DataFrame:
        if book_id is not None:
            return self._book_frame(book_id)
        frames = [self._book_frame(folder_book(f), keys) for f, keys in sorted(self._listed_by_folder().items())]
        return pl.concat(frames) if frames else pl.DataFrame(schema=SEGMENT_SCHEMA)

    def spent(self, book_id: str) -> float:
        """The book's running total (its manifest) plus the rows not compacted yet: no re-read of its history."""
        manifest = self.manifest(book_id)
        return round(manifest.spent_usd + sum(row.cost_usd for _, row in self._pending(book_id, manifest)), 6)

    # --- compaction ---------------------------------------------------------------------------------------

    def compact(self, book_id: str, listed: list[str] | None = None) -> Compaction:
        """Fold the book's new row files into a new segment, then name it in the manifest (module docstring).
        `listed`: the book's row keys when the caller has just listed them."""
        manifest, segment = self.compacted(book_id)
        pending = self._pending(book_id, manifest, listed)
        if not pending:
            return Compaction(book_id, 0, manifest.rows, manifest.segment)
        frame = pl.concat([segment.select(SEGMENT_SCHEMA.keys()), _rows_frame(pending)]).sort(ROW_KEY)
        name = f"segment-{uuid.uuid4().hex[:12]}.parquet"
        self.store.write_bytes(segment_key(book_id, name), parquet_bytes(frame))
        total = float(frame["cost_usd"].sum()) if frame.height else 0.0
        keys = sorted({*manifest.keys, *(n for n, _ in pending)})
        new = Manifest(book_id=book_id, segment=name, keys=keys, rows=frame.height, spent_usd=round(total, 9))
        self.store.write_bytes(manifest_key(book_id), json.dumps(new.model_dump()).encode())
        if manifest.segment and manifest.segment != name:
            # Only the segment this compaction replaced: a concurrent one's new segment may be named next.
            self.store.delete(segment_key(book_id, manifest.segment))
        return Compaction(book_id, len(pending), frame.height, name)

    def compact_all(self) -> list[Compaction]:
        """Every book with rows not compacted yet (lists every row file: for a catch-up, not a book's run)."""
        listed = self._listed_by_folder()
        return [c for c in (self.compact(folder_book(f), keys) for f, keys in sorted(listed.items())) if c.parsed]


class BudgetExceeded(RuntimeError):
    pass


class BudgetGuard:
    """Stops a book before a generation would take it over budget.

    Spending already in the ledger is read once (its running total, Ledger.spent); concurrent pages of
    the same step reserve their price under a lock, so twelve pages fanned out at once cannot overshoot
    together.
    """

    def __init__(self, book_id: str, limit_usd: float | None, ledger: Ledger):
        self.book_id = book_id
        self.limit_usd = limit_usd
        self._lock = threading.Lock()
        self._spent = ledger.spent(book_id) if limit_usd is not None else 0.0

    @property
    def spent_usd(self) -> float:
        return self._spent

    def reserve(self, price_usd: float, what: str) -> None:
        if self.limit_usd is None or price_usd <= 0:
            return
        with self._lock:
            if self._spent + price_usd > self.limit_usd + 1e-9:
                raise BudgetExceeded(
                    f"book {self.book_id!r}: {what} would cost ${price_usd:.3f}, taking the book to "
                    f"${self._spent + price_usd:.3f} over its budget of ${self.limit_usd:.2f} "
                    f"(spent ${self._spent:.3f}); raise budget_usd in the story to continue")
            self._spent += price_usd

    def charge(self, price_usd: float) -> None:
        """Count a job that is already paid for (one resumed from the journal): it is never refused."""
        if self.limit_usd is None or price_usd <= 0:
            return
        with self._lock:
            self._spent += price_usd

    def release(self, price_usd: float) -> None:
        """Give back a reservation that was never paid (the job failed before creation)."""
        if self.limit_usd is None or price_usd <= 0:
            return
        with self._lock:
            self._spent -= price_usd
