"""The whole project's ledger in one Parquet file, `ledger/generation_ledger.parquet`: every book's compacted rows.

Built from the per-book segments (ledger.py), never from the rows' JSON. The file carries, in its own
Parquet key-value metadata, which segment each book's rows came from; a refresh lists the segment
files and reads again only the books whose segment changed. The index travelling inside the table
(one atomic write) matters: two books' runs refreshing at once may each write a table without the
other's newest rows, but each table states exactly what it holds, so the next refresh sees the
missing segment and replaces that book's rows. Nothing is ever appended blindly, so nothing is counted
twice.

What a refresh costs: one listing of `ledger/books/` (two keys per book), the changed books' manifests
and segments, and rewriting the file: linear in the project's rows, at about 2 us a row against the
90 us a row of parsing them again (benchmarks/RESULTS.md, "Ledger growth").
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import polars as pl

from bookbug_assets.ledger import COMPACTED_PREFIX, LEDGER_SCHEMA, ROW_KEY, Ledger, folder_book
from bookbug_assets.storage import ArtifactStore

LEDGER_PARQUET = "ledger/generation_ledger.parquet"
SEGMENTS_METADATA = "bookbug.segments"  # {book folder: segment file name} of the rows the table holds


@dataclass(frozen=True)
class TableRefresh:
    frame: pl.DataFrame
    books: int  # books in the table
    books_read: int  # books whose segment was read this time


def _listed_segments(store: ArtifactStore) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key in store.list(COMPACTED_PREFIX):
        folder, _, name = key[len(COMPACTED_PREFIX) + 1:].partition("/")
        names = found.setdefault(folder, set())
        if name.startswith("segment-") and name.endswith(".parquet"):
            names.add(name)
    return found


def read_table(store: ArtifactStore) -> tuple[pl.DataFrame, dict[str, str]] | None:
    """(the table, its segments index), or None when there is no readable table yet."""
    try:
        data = store.read_bytes(LEDGER_PARQUET)
    except FileNotFoundError:
        return None
    try:
        index = json.loads(pl.read_parquet_metadata(io.BytesIO(data)).get(SEGMENTS_METADATA, "null"))
        frame = pl.read_parquet(io.BytesIO(data))
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None  # a table written before it carried its index, or damaged: rebuilt from the segments
    if not isinstance(index, dict) or list(frame.columns) != list(LEDGER_SCHEMA):
        return None
    return frame, index


def ledger_table(store: ArtifactStore) -> pl.DataFrame:
    """The table as the last refresh left it (what cost_report reads), built first if there is none yet."""
    found = read_table(store)
    return found[0] if found is not None else refresh_table(store).frame


def refresh_table(store: ArtifactStore) -> TableRefresh:
    """Bring the table up to the books' current segments (compact the books first: ledger.Ledger.compact).

    With no readable table (the first refresh, or a table from before per-book compaction), every book is
    compacted first, once: otherwise the table would hold only the books compacted since."""
    ledger = Ledger(store)
    found = read_table(store)
    if found is None:
        ledger.compact_all()
    listed = _listed_segments(store)
    table, index = found if found is not None else (pl.DataFrame(schema=LEDGER_SCHEMA), {})
    fresh: dict[str, tuple[str, pl.DataFrame]] = {}
    for folder, names in sorted(listed.items()):
        if names == {index.get(folder)}:
            continue  # its one segment is the one the table holds
        book = folder_book(folder)
        if ledger.manifest(book).segment == index.get(folder):
            continue  # a left-over segment beside the current one (a crash before its manifest)
        manifest, segment = ledger.compacted(book)
        if manifest.segment is not None:
            fresh[folder] = (manifest.segment, segment.drop(ROW_KEY))
    gone = [f for f in index if f not in listed]
    if found is not None and not fresh and not gone:
        return TableRefresh(table, len(index), 0)
    replaced = [folder_book(f) for f in (*fresh, *gone)]
    kept = table.filter(~pl.col("book_id").is_in(replaced)) if replaced else table
    frame = pl.concat([kept, *(seg for _, seg in fresh.values())]).sort("ts", maintain_order=True)
    new_index = {f: s for f, s in index.items() if f not in gone} | {f: s for f, (s, _) in fresh.items()}
    buffer = io.BytesIO()
    # No column statistics: the table is always read whole, and they double the time to write it.
    frame.write_parquet(buffer, statistics=False, metadata={SEGMENTS_METADATA: json.dumps(new_index, sort_keys=True)})
    store.write_bytes(LEDGER_PARQUET, buffer.getvalue())
    return TableRefresh(frame, len(new_index), len(fresh))

