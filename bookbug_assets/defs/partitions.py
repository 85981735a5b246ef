"""Partitions: books and styles (dynamic, added by their sensors), and pages as book x page (layout.page_partition).

Pages are a MultiPartitionsDefinition over two dynamic dimensions, `book` and `page` (slots
"001".."NNN", grown by the story sensor to the longest book seen). That keeps each page its own
partition *and* gives Dagster's built-in MultiToSingleDimensionPartitionMapping from a page to
its book's sprite sheet and hero page, so lineage and staleness stay per book. The price is the
cross product: a 12-page book has empty cells 013.. when a longer book exists. bookbug never
requests those cells (the sensor and `regenerate` build exact page lists; the page asset refuses
a slot past the end of its story) and README explains the grey cells.
"""

from __future__ import annotations

import dagster as dg

books_partitions = dg.DynamicPartitionsDefinition(name="books")
page_slots_partitions = dg.DynamicPartitionsDefinition(name="page_slots")
book_pages_partitions = dg.MultiPartitionsDefinition({"book": books_partitions, "page": page_slots_partitions})


# One partition per accepted style folder, added by the style sensor (defs/styles/sensors.py) or by a book run
# for its own style: a new folder appears without reloading the definitions.
styles_partitions = dg.DynamicPartitionsDefinition(name="styles")


def split_page_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(book, page) from a page partition key, however Dagster handed it over."""
    dims = book_pages_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
    return dims["book"], dims["page"]
