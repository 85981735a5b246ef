"""The generation ledger (one small JSON object per generation) and the per-book budget.

Rows are separate objects rather than lines in one file so that concurrent steps, separate run
processes and an S3 store can all append without locks; the `generation_ledger` asset compacts
them into Parquet for reading.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone

import polars as pl
from pydantic import BaseModel, Field

from bookbug_assets.storage import ArtifactStore

LEDGER_PREFIX = "ledger/rows"


class LedgerRow(BaseModel):
    """One generation attempt. Documented column by column in README ("The ledger")."""

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
    status: str  # ok | cached | refused | timeout | failed | lost | budget_stop | skipped (remembered refusal)
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


def _book_prefix(book_id: str) -> str:
    return f"{LEDGER_PREFIX}/{book_id or '_global'}"


class Ledger:
    def __init__(self, store: ArtifactStore):
        self.store = store

    def append(self, row: LedgerRow) -> None:
        stamp = row.ts.strftime("%Y%m%dT%H%M%S%f")
        key = f"{_book_prefix(row.book_id)}/{stamp}-{uuid.uuid4().hex[:8]}.json"
        self.store.write_bytes(key, row.model_dump_json().encode())

    def rows(self, book_id: str | None = None) -> list[LedgerRow]:
        prefix = _book_prefix(book_id) if book_id is not None else LEDGER_PREFIX
        return [LedgerRow.model_validate(json.loads(self.store.read_bytes(k)))
                for k in self.store.list(prefix) if k.endswith(".json")]

    def frame(self, book_id: str | None = None) -> pl.DataFrame:
        rows = [r.model_dump() for r in self.rows(book_id)]
        if not rows:
            return pl.DataFrame(schema=LEDGER_SCHEMA)
        return pl.DataFrame(rows, schema=LEDGER_SCHEMA).sort("ts")

    def spent(self, book_id: str) -> float:
        return round(sum(r.cost_usd for r in self.rows(book_id)), 6)


class BudgetExceeded(RuntimeError):
    pass


class BudgetGuard:
    """Stops a book before a generation would take it over budget.

    Spending already in the ledger is read once; concurrent pages of the same step reserve
    their price under a lock, so twelve pages fanned out at once cannot overshoot together.
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

