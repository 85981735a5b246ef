"""Partitions: books (dynamic), styles (one per folder), and pages as book x page.

Pages are a MultiPartitionsDefinition over two dynamic dimensions, `book` and `page` (slots
"001".."NNN", grown by the story sensor to the longest book seen). That keeps each page its own
partition *and* gives Dagster's built-in MultiToSingleDimensionPartitionMapping from a page to
its book's sprite sheet and hero page, so lineage and staleness stay per book. The price is the
cross product: a 12-page book has empty cells 013.. when a longer book exists. bookbug never
requests those cells (the sensor and `regenerate` build exact page lists; the page asset refuses
a slot past the end of its story) and README explains the grey cells.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from bookbug_assets.stories.models import is_slug

books_partitions = dg.DynamicPartitionsDefinition(name="books")
page_slots_partitions = dg.DynamicPartitionsDefinition(name="page_slots")
book_pages_partitions = dg.MultiPartitionsDefinition({"book": books_partitions, "page": page_slots_partitions})


def style_names(styles_dir: Path) -> list[str]:
    """Every folder under data/styles/ with a valid slug name is a style partition."""
    if not styles_dir.is_dir():
        return []
    return sorted(p.name for p in styles_dir.iterdir() if p.is_dir() and is_slug(p.name))


def styles_partitions_for(styles_dir: Path) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(style_names(styles_dir) or ["default"])


def page_partition_key(book_id: str, page: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"book": book_id, "page": page})


def split_page_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(book, page) from a page partition key, however Dagster handed it over."""
    dims = book_pages_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
    return dims["book"], dims["page"]
