"""Story sensors: a file dropped in data/stories/ becomes a book partition and a whole-book backfill.

One tick, per new or changed file (content hash in the cursor, so an unchanged file never runs
twice): parse and validate (bookbug_assets.intake); on success add the book partition and any
missing page slots and request a backfill of exactly that book's assets and real pages; on
failure write a reason file naming the field, log it, and go on with the other files. The sensor
never raises for a bad story: a failed tick would not advance the cursor and would block every
later upload.
"""

import json

import dagster as dg
# Private imports: RunRequest.for_asset_graph_subset (public) takes these; dagster has no public builder yet.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.intake import read_cursor_files, read_cursor_owners, scan_story_folder, write_rejection
from bookbug_assets.layout import page_partition
from bookbug_assets.stories import Story

BOOK_ASSETS = ("story", "sprite_sheet", "hero_page", "book_pdf")


def book_subset(asset_graph, story: Story, include_ledger: bool = True) -> AssetGraphSubset:
    """Exactly one book: its book-level assets and its real pages, never the empty slots."""
    wanted = {AssetKeyPartitionKey(dg.AssetKey(name), story.book_id) for name in BOOK_ASSETS}
    wanted |= {AssetKeyPartitionKey(dg.AssetKey("book_pages"), page_partition(story.book_id, page))
               for page in story.page_keys}
    if include_ledger:
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None))
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)


def book_run_request(asset_graph, story: Story, reason: str) -> dg.RunRequest:
    return dg.RunRequest.for_asset_graph_subset(book_subset(asset_graph, story),
                                                tags={"bookbug/book": story.book_id, "bookbug/reason": reason})


# The backfills it requests may only touch these assets (Dagster checks a subset against the target).
BOOK_SELECTION = dg.AssetSelection.assets(*BOOK_ASSETS, "book_pages", "generation_ledger")


def story_sensor_result(context: dg.SensorEvaluationContext, stories: list[tuple[Story, dict[str, str]]],
                        rejected_any: bool, cursor: str, skip_reason: str) -> dg.SensorResult:
    """The tail both story sensors share: add the new books and page slots, and request one backfill per story
    (`stories`: each story with extra run tags), in one result with the new cursor."""
    existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
    existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
    new_books = sorted({s.book_id for s, _ in stories} - existing_books)
    new_slots = sorted({k for s, _ in stories for k in s.page_keys} - existing_slots)
    asset_graph = context.repository_def.asset_graph
    run_requests = []
    for story, tags in stories:
        request = book_run_request(asset_graph, story, "new story" if story.book_id in new_books else "story changed")
        run_requests.append(request.with_replaced_attrs(tags={**request.tags, **tags}) if tags else request)
    partition_requests = []
    if new_books:
        partition_requests.append(books_partitions.build_add_request(new_books))
    if new_slots:
        partition_requests.append(page_slots_partitions.build_add_request(new_slots))
    if not run_requests and not rejected_any:
        return dg.SensorResult(skip_reason=skip_reason, cursor=cursor)
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


@dg.sensor(name="story_folder_sensor", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=BOOK_SELECTION,
           description="Watches the stories folder: a new or changed story adds its book partition and page slots "
                       "and backfills exactly that book; a malformed one gets a reason file in rejected/.")
def story_folder_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
    seen = read_cursor_files(context.cursor, context.log)
    owners = read_cursor_owners(context.cursor)
    stories, rejected, state = scan_story_folder(storage.stories_path, storage.styles_path, seen, context.log,
                                                 owners)
    for name, reason in rejected:
        where = write_rejection(storage.stories_path, name, reason, context.log)
        context.log.warning(f"rejected story {reason}" + (f" (reason written to {where.name})" if where else ""))
    return story_sensor_result(context, [(s, {}) for s in stories], bool(rejected),
                               json.dumps({"files": state, "owners": owners}, sort_keys=True),
                               skip_reason="no new or changed stories")
