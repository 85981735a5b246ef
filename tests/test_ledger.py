"""The ledger's per-book compaction: only new row files are parsed, a crash between segment and manifest loses
and double-counts nothing, the running total equals the sum of the rows, the project table heals lost races."""

import random
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from bookbug_assets.cost_report import cost_tables
from bookbug_assets.ledger import LEDGER_PREFIX, Ledger, LedgerRow, manifest_key, parquet_bytes, segment_key
from bookbug_assets.ledger_table import LEDGER_PARQUET, ledger_table, read_table, refresh_table
from bookbug_assets.storage import LocalArtifactStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class CountingStore(LocalArtifactStore):
    """Counts the ledger row files read (parsed) and can fail one chosen write, as a crash would."""

    def __init__(self, root):
        super().__init__(root)
        self.row_reads = 0
        self.fail_write_of: str | None = None
        self.fail_delete = False

    def read_bytes(self, key):
        if key.startswith(LEDGER_PREFIX + "/"):
            self.row_reads += 1
        return super().read_bytes(key)

    def write_bytes(self, key, data):
        if self.fail_write_of is not None and key.endswith(self.fail_write_of):
            self.fail_write_of = None
            raise OSError(f"crash while writing {key}")
        super().write_bytes(key, data)

    def delete(self, key):
        if self.fail_delete:
            raise OSError(f"crash while deleting {key}")
        super().delete(key)


def row(book: str, n: int, cost: float = 0.04, asset: str = "book_pages") -> LedgerRow:
    return LedgerRow(ts=T0 + timedelta(seconds=n), book_id=book, asset=asset, partition=f"{book}|{n:03d}",
                     provider="planted", model="v1", seed=n, request_key=f"{book}-{n}", status="ok",
                     cost_usd=cost, latency_s=1.0)


def append(ledger: Ledger, book: str, numbers, cost: float = 0.04) -> list[LedgerRow]:
    rows = [row(book, n, cost) for n in numbers]
    for r in rows:
        ledger.append(r)
    return rows


@pytest.fixture
def store(tmp_path):
    return CountingStore(tmp_path / "outputs")


def test_compaction_parses_only_the_rows_written_since_the_last_one(store):
    ledger = Ledger(store)
    written = append(ledger, "pip", range(5)) + append(ledger, "other", range(3))
    store.row_reads = 0
    first = ledger.compact("pip")
    assert (first.parsed, first.rows, store.row_reads) == (5, 5, 5)  # the other book's rows are not read
    written += append(ledger, "pip", range(5, 8))
    store.row_reads = 0
    second = ledger.compact("pip")
    assert (second.parsed, second.rows, store.row_reads) == (3, 8, 3)
    store.row_reads = 0
    assert ledger.compact("pip").parsed == 0 and store.row_reads == 0
    assert len(store.list(segment_key("pip", "").rstrip("/"))) == 2  # one segment (the old one deleted) + manifest
    # Every caller still sees every row, once, in the order written; compacted rows equal what was written.
    assert ledger.rows("pip") == [r for r in written if r.book_id == "pip"]
    assert ledger.rows() == sorted(written, key=lambda r: (r.book_id, r.ts))
    assert ledger.frame().height == 11 and ledger.frame("other").height == 3
    assert list(ledger.frame().columns)[-1] == "change"
    store.row_reads = 0
    ledger.spent("pip")
    assert store.row_reads == 0  # a running total, not a re-read of the book's rows


def test_a_crash_between_segment_and_manifest_loses_no_row_and_counts_none_twice(store):
    ledger = Ledger(store)
    append(ledger, "pip", range(4), cost=0.05)
    ledger.compact("pip")
    append(ledger, "pip", range(4, 6), cost=0.05)
    store.fail_write_of = "manifest.json"
    with pytest.raises(OSError, match="crash"):
        ledger.compact("pip")
    segments = [k for k in store.list("ledger/books/pip") if "segment-" in k]
    assert len(segments) == 2  # the new segment was written; the old manifest still names the old one
    assert len(ledger.rows("pip")) == 6 and ledger.spent("pip") == pytest.approx(0.30)
    assert ledger.frame("pip")["request_key"].n_unique() == 6
    again = ledger.compact("pip")
    assert (again.parsed, again.rows) == (2, 6)  # the rows the orphan held are compacted once, now
    assert ledger.frame("pip").height == 6 and ledger.spent("pip") == pytest.approx(0.30)
    assert refresh_table(store).frame.height == 6  # the left-over segment never reaches the table


def test_a_crash_after_the_manifest_before_the_old_segment_is_deleted(store):
    ledger = Ledger(store)
    append(ledger, "pip", range(3))
    ledger.compact("pip")
    append(ledger, "pip", range(3, 5))
    store.fail_delete = True
    with pytest.raises(OSError):
        ledger.compact("pip")
    store.fail_delete = False
    assert ledger.frame("pip").height == 5 and ledger.compact("pip").parsed == 0
    assert refresh_table(store).frame.height == 5


def test_spent_equals_the_sum_of_the_rows_compacted_or_not(store):
    ledger = Ledger(store)
    rng = random.Random(7)
    for step in range(6):
        for n in range(rng.randint(1, 9)):
            ledger.append(row("pip", step * 100 + n, cost=round(rng.uniform(0, 0.2), 4)))
        if step % 2:
            ledger.compact("pip")
        assert ledger.spent("pip") == pytest.approx(sum(r.cost_usd for r in ledger.rows("pip")), abs=1e-9)
    assert ledger.spent("nobody") == 0.0


def test_an_unreadable_manifest_or_a_missing_segment_falls_back_to_the_rows(store):
    ledger = Ledger(store)
    append(ledger, "pip", range(3), cost=0.1)
    ledger.compact("pip")
    store.write_bytes(manifest_key("pip"), b"{not json")
    assert ledger.spent("pip") == pytest.approx(0.3) and len(ledger.rows("pip")) == 3
    ledger.compact("pip")
    name = ledger.manifest("pip").segment
    store.delete(segment_key("pip", name))
    assert ledger.frame("pip").height == 3 and ledger.compact("pip").parsed == 3


def test_the_table_rereads_only_changed_books_and_heals_a_lost_race(store):
    ledger = Ledger(store)
    for book in ("a", "b", "c"):
        append(ledger, book, range(4))
        ledger.compact(book)
    first = refresh_table(store)
    assert (first.frame.height, first.books, first.books_read) == (12, 3, 3)
    assert refresh_table(store).books_read == 0
    stale = store.read_bytes(LEDGER_PARQUET)
    append(ledger, "a", range(4, 6))
    ledger.compact("a")
    assert refresh_table(store).books_read == 1
    # Another book's run, started before, writes its table last: it lacks a's newest rows, and says so.
    store.write_bytes(LEDGER_PARQUET, stale)
    assert ledger_table(store).height == 12
    healed = refresh_table(store)
    assert healed.books_read == 1 and healed.frame.height == 14
    assert healed.frame.filter(pl.col("book_id") == "a").height == 6
    assert read_table(store)[1] == {b: ledger.manifest(b).segment for b in ("a", "b", "c")}


def test_cost_tables_from_the_table_match_the_rows(store):
    ledger = Ledger(store)
    append(ledger, "a", range(3), cost=0.05)
    append(ledger, "b", range(2), cost=0.02)
    ledger.compact_all()
    from_table, _ = cost_tables(store, ledger_table(store))
    fresh, _ = cost_tables(store)
    assert from_table.equals(fresh)
    assert from_table["cost_usd"].to_list() == [0.15, 0.04]


def test_the_first_refresh_after_an_upgrade_compacts_every_book(store):
    ledger = Ledger(store)
    append(ledger, "a", range(3))
    append(ledger, "b", range(2))
    store.write_bytes(LEDGER_PARQUET, parquet_bytes(ledger.frame()))  # as the old generation_ledger wrote it
    ledger.compact("a")  # the first book run after the upgrade compacts only its own book
    table = refresh_table(store).frame
    assert sorted(table["book_id"].unique().to_list()) == ["a", "b"] and table.height == 5
    assert ledger.manifest("b").rows == 2
