"""book_style: the style a book is drawn in, at the version it was drawn with. The edge that keeps staleness per book.

A book's images depend on one style's LoRA, but Dagster 1.13 has no partition mapping from a book to *its own*
style partition (a user-function "DynamicPartitionMapping" is unmerged, dagster-io/dagster PR #24584, issue
#13139). With AllPartitionMapping every book depended on every style, so training a new style made every other
book "Unsynced". Instead each book has this external asset partition: the sprite sheet records its data version
(`<style>:<profile digest>`) as an observation before drawing, and `style_lora` records a new observation for
every book in its style when the style changes. Dagster's own staleness then says "has a new dependency data
version" for exactly the books of that style, and for no other.
"""

import hashlib
import json

import dagster as dg

from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.layout import stored_story, style_profile_key
from bookbug_assets.storage import ArtifactStore

BOOK_STYLE = "book_style"
DATA_VERSION_TAG = "dagster/data_version"  # how an observation carries a data version (dagster's own tag name)

book_style = dg.AssetSpec(
    BOOK_STYLE, partitions_def=books_partitions, group_name="book", kinds={"python"}, code_version="1",
    description="Which style a book is drawn in and at which version of its style_lora (observed, not "
                "materialized): books go stale when their own style changes, never when another style does.")


def style_version(store: ArtifactStore, style: str) -> str:
    """`<style>:<digest of its style_lora profile>`, or `<style>:untrained` before style_lora ran."""
    key = style_profile_key(style)
    if not store.exists(key):
        return f"{style}:untrained"
    profile = json.dumps(store.read_json(key), sort_keys=True, separators=(",", ":"))
    return f"{style}:{hashlib.sha256(profile.encode()).hexdigest()[:16]}"


def observe_book_style(context: dg.OpExecutionContext, store: ArtifactStore, book_id: str, style: str) -> None:
    version = style_version(store, style)
    context.log_event(dg.AssetObservation(asset_key=BOOK_STYLE, partition=book_id, tags={DATA_VERSION_TAG: version}))


def observe_books_of_style(context: dg.OpExecutionContext, store: ArtifactStore, style: str) -> list[str]:
    """After `style` changed: a new book_style observation for each book drawn in it (their pages go stale)."""
    books = []
    for book_id in context.instance.get_dynamic_partitions(books_partitions.name):
        story = stored_story(store, book_id)
        if story is not None and story.style == style:
            observe_book_style(context, store, book_id, style)
            books.append(book_id)
    return books


@dg.definitions
def book_style_defs() -> dg.Definitions:
    return dg.Definitions(assets=[book_style])
