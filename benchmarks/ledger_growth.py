"""How the ledger's costs grow with a project's history (issue 13 item 2), the old full re-read measured in the
same run as the baseline.

1. At 1k / 10k / 100k rows already in the ledger (50 rows a book): one book's ledger step, old (list, parse and
   validate every JSON row, write the table) and new (compact that book's new rows, refresh the project table);
   cost_report, old (from the JSON rows) and new (from the table), and new again once every book has its 14
   quality verdicts (cost_report reads them all for its acceptable-image counts); a book's budget read (`spent`).
2. A project's life: 200 books of 15 rows each (a 12-page book's run), each followed by its ledger step; the
   cumulative cost after 25 / 50 / 100 / 200 books and its exponent k (cumulative ~ books^k; k = 1 is linear).

Rows are written straight to files in a temporary folder (no fsync), which is how they look on disk after
Ledger.append, so 100k rows take seconds to make. Prints the load average beside every figure.

    .venv/bin/python benchmarks/ledger_growth.py                  # 1k, 10k, 100k rows and 200 books
    .venv/bin/python benchmarks/ledger_growth.py --sizes 1000 10000 --books 100
    .venv/bin/python benchmarks/ledger_growth.py --dir /dev/shm                    # on a RAM disk: no fsync latency
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from bookbug_assets.cost_report import cost_tables
from bookbug_assets.ledger import LEDGER_PREFIX, LEDGER_SCHEMA, Ledger, LedgerRow, parquet_bytes
from bookbug_assets.ledger_table import ledger_table, refresh_table
from bookbug_assets.storage import LocalArtifactStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
OLD_TABLE = "ledger/old_generation_ledger.parquet"  # the baseline writes beside, never over, the new table
TEMPLATE = LedgerRow(book_id="x", asset="book_pages", partition="x|001", kind="page", provider="replicate",
                     model="black-forest-labs/flux-kontext-pro", version="v1", seed=1, request_key="k",
                     job_id="j", image_sha256="0" * 64, status="ok", cost_usd=0.04, latency_s=9.5,
                     width=1024, height=1024).model_dump(mode="json")


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def write_rows(root: Path, book: str, count: int, start: int) -> None:
    folder = root / LEDGER_PREFIX / book
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        ts = T0 + timedelta(seconds=n)
        row = {**TEMPLATE, "ts": ts.isoformat().replace("+00:00", "Z"), "book_id": book, "seed": n,
               "partition": f"{book}|{n % 64 + 1:03d}", "request_key": f"{book}-{n}",
               "cache_hit": n % 3 == 0, "cost_usd": 0.0 if n % 3 == 0 else 0.04}
        (folder / f"{ts.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json").write_text(json.dumps(row))


def write_verdicts(root: Path, books: list[str], per_book: int = 14) -> None:
    """A quality verdict per image (sprite sheet, hero page, 12 pages), as cost_report's acceptable count reads."""
    for book in books:
        folder = root / "books" / book / "quality"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_book):
            verdict = {"book_id": book, "target": f"page-{n:03d}", "passed": True, "accepted": True,
                       "image_sha256": "0" * 64, "image_key": "blobs/00/x.png", "provider": TEMPLATE["provider"],
                       "model": TEMPLATE["model"], "seed": n}
            (folder / f"page-{n:03d}.json").write_text(json.dumps(verdict))


# --- the old path, as it was before per-book compaction (the baseline) --------------------------------------

def old_rows(store, prefix: str = LEDGER_PREFIX) -> list[LedgerRow]:
    return [LedgerRow.model_validate(json.loads(store.read_bytes(k))) for k in store.list(prefix)
            if k.endswith(".json")]


def old_frame(store) -> pl.DataFrame:
    rows = [r.model_dump() for r in old_rows(store)]
    return pl.DataFrame(rows, schema=LEDGER_SCHEMA).sort("ts") if rows else pl.DataFrame(schema=LEDGER_SCHEMA)


def old_ledger_step(store) -> None:
    store.write_bytes(OLD_TABLE, parquet_bytes(old_frame(store)))


def old_spent(store, book: str) -> float:
    return round(sum(r.cost_usd for r in old_rows(store, f"{LEDGER_PREFIX}/{book}")), 6)


# --- the new path ---------------------------------------------------------------------------------------------

def new_compaction(store, book: str) -> int:
    ledger = Ledger(store)
    return ledger.compact(book).parsed + ledger.compact("").parsed


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def at_size(rows: int, per_book: int = 50, new_book_rows: int = 15, where: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ledger-growth-", dir=where) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        for b in range(rows // per_book):
            write_rows(root, f"book-{b:05d}", per_book, b * per_book)
        made = time.perf_counter() - started
        store = LocalArtifactStore(root)
        migrate = timed(lambda: (Ledger(store).compact_all(), refresh_table(store)))  # once, on upgrading
        write_rows(root, "new-book", new_book_rows, rows)  # the book whose ledger step is measured
        old_step = timed(old_ledger_step, store)
        compact = timed(new_compaction, store, "new-book")
        refresh = timed(refresh_table, store)
        old_report = timed(lambda: cost_tables(store, old_frame(store)))
        new_report = timed(lambda: cost_tables(store, ledger_table(store)))
        write_verdicts(root, [f"book-{b:05d}" for b in range(rows // per_book)])
        with_verdicts = timed(lambda: cost_tables(store, ledger_table(store)))
        probe = "book-00000"
        old_budget, new_budget = timed(old_spent, store, probe), timed(Ledger(store).spent, probe)
        assert abs(old_spent(store, probe) - Ledger(store).spent(probe)) < 1e-9
        assert ledger_table(store).height == old_frame(store).height == rows + new_book_rows
        return {"rows": rows, "make_s": made, "migrate_s": migrate, "old_step_s": old_step, "compact_s": compact,
                "refresh_s": refresh, "old_report_s": old_report, "new_report_s": new_report,
                "verdicts_report_s": with_verdicts, "old_spent_ms": old_budget * 1000, "new_spent_ms": new_budget * 1000, "load": load()}


def fit_k(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(y) on log(x): the exponent k of y ~ x^k."""
    xs, ys = [math.log(b) for b, _ in points], [math.log(max(c, 1e-9)) for _, c in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def project_life(books: int, per_book: int = 15, where: str | None = None) -> dict:
    marks = sorted({m for m in (books // 8, books // 4, books // 2, books) if m > 0})
    totals = {"old": 0.0, "compact": 0.0, "refresh": 0.0}
    at: dict[str, list[tuple[int, float]]] = {k: [] for k in (*totals, "new")}
    with tempfile.TemporaryDirectory(prefix="ledger-life-", dir=where) as tmp:
        root = Path(tmp)
        store = LocalArtifactStore(root)
        for b in range(1, books + 1):
            write_rows(root, f"book-{b:05d}", per_book, b * per_book)
            totals["old"] += timed(old_ledger_step, store)
            totals["compact"] += timed(new_compaction, store, f"book-{b:05d}")
            totals["refresh"] += timed(refresh_table, store)
            if b in marks:
                for key in totals:
                    at[key].append((b, totals[key]))
                at["new"].append((b, totals["compact"] + totals["refresh"]))
        assert ledger_table(store).height == books * per_book
    return {"marks": marks, "at": at, "k": {key: fit_k(points) for key, points in at.items()}, "load": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--books", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where the temporary stores go (default: the system's temp "
                        "folder); a RAM disk takes the disk's fsync latency out of the figures")
    args = parser.parse_args()
    print(f"load average at start: {load()}; stores in {args.dir or tempfile.gettempdir()}")
    print("| rows | old ledger step | new: compact the book | new: refresh the table | old cost_report | "
          "new cost_report | new cost_report + verdicts | old spent | new spent | first compaction (once) | "
          "load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for size in args.sizes:
        r = at_size(size, where=args.dir)
        results.append(r)
        print(f"| {r['rows']:,} | {r['old_step_s']:.3f} s | {r['compact_s'] * 1000:.1f} ms | "
              f"{r['refresh_s'] * 1000:.1f} ms | {r['old_report_s']:.3f} s | {r['new_report_s'] * 1000:.1f} ms | "
              f"{r['verdicts_report_s']:.3f} s | "
              f"{r['old_spent_ms']:.1f} ms | {r['new_spent_ms']:.1f} ms | {r['migrate_s']:.2f} s | {r['load']} |",
              flush=True)
    if len(results) > 1:  # time ~ rows^e between the smallest and the largest size
        cells = [fit_k([(r["rows"], r[key]) for r in results]) for key in
                 ("old_step_s", "compact_s", "refresh_s", "old_report_s", "new_report_s", "verdicts_report_s",
                  "old_spent_ms",
                  "new_spent_ms", "migrate_s")]
        print("| exponent (time ~ rows^e) | " + " | ".join(f"{e:.2f}" for e in cells) + f" | {load()} |")
    life = project_life(args.books, where=args.dir)
    print(f"\n| cumulative over books | {' | '.join(str(m) for m in life['marks'])} | k | load average |")
    print("|---|" + "---|" * (len(life["marks"]) + 2))
    names = {"old": "old ledger step (full re-read)", "compact": "new: compaction", "refresh": "new: table refresh",
             "new": "new: compaction + table refresh"}
    for key, label in names.items():
        cells = " | ".join(f"{c:.2f} s" for _, c in life["at"][key])
        print(f"| {label} | {cells} | {life['k'][key]:.2f} | {life['load']} |")
    print(f"\nledger_growth k_old={life['k']['old']:.2f} k_compaction={life['k']['compact']:.2f} "
          f"k_new={life['k']['new']:.2f} books={args.books} load={load()}")


if __name__ == "__main__":
    main()
