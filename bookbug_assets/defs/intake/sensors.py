"""Story sensors: a file dropped in data/stories/ becomes a book partition and a whole-book backfill.

One tick (bookbug_assets.intake.scan_folder_tick): every settled file whose size or mtime changed is read and
validated with the one story parser, oldest first, at most 20 files or about 3 s per tick (the rest the next
tick). A valid one adds the book partition and any missing page slots and requests a backfill of exactly that
book's assets and real pages, tagged with the file and its sha256 (what the `story` asset reads); one that is
already built as it is (make demo, `bookbug`) only gets its partitions. A rejected one gets a reason file, and the
tick goes on. The cursor records every file the tick took, so a bad or slow file never blocks the ones after it.
"""

import dagster as dg
# Private imports: RunRequest.for_asset_graph_subset (public) takes these; dagster has no public builder yet.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.intake import FolderCursor, scan_folder_tick
from bookbug_assets.layout import page_partition
from bookbug_assets.stories import Story
from bookbug_assets.story_intake import STORY_FILE_TAG, STORY_SHA_TAG, Accepted, TickBudget
from bookbug_assets.styles import style_names
from bookbug_assets.watched_folder import clear_reason, write_reason

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


def story_sensor_result(context: dg.SensorEvaluationContext, accepted: list[tuple[Accepted, dict[str, str]]],
                        rejected_any: bool, cursor: str, skip_reason: str) -> dg.SensorResult:
    """The tail both story sensors share: add the new books and page slots, and request one backfill per story
    (`accepted`: each with its run tags) unless it is already built as it is, in one result with the new cursor."""
    existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
    existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
    stories = [a.source.story for a, _ in accepted]
    new_books = sorted({s.book_id for s in stories} - existing_books)
    new_slots = sorted({k for s in stories for k in s.page_keys} - existing_slots)
    asset_graph = context.repository_def.asset_graph
    run_requests = []
    for item, tags in accepted:
        story = item.source.story
        if item.built:
            context.log.info(f"{story.book_id}: already built from {item.source.name} as it is; not backfilled "
                             "again (touch the file to rebuild it)")
            continue
        reason = "story touched" if item.touched else "new story" if story.book_id in new_books else "story changed"
        request = book_run_request(asset_graph, story, reason)
        run_requests.append(request.with_replaced_attrs(tags={**request.tags, **tags}))
    partition_requests = []
    if new_books:
        partition_requests.append(books_partitions.build_add_request(new_books))
    if new_slots:
        partition_requests.append(page_slots_partitions.build_add_request(new_slots))
    if not run_requests and not partition_requests and not rejected_any:
        return dg.SensorResult(skip_reason=skip_reason, cursor=cursor)
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


@dg.sensor(name="story_folder_sensor", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=BOOK_SELECTION,
           description="Watches the stories folder: a new, changed or touched story adds its book partition and page "
                       "slots and backfills exactly that book; a malformed one gets a reason file in rejected/.")
def story_folder_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
    folder = storage.stories_path
    scan = scan_folder_tick(folder, set(style_names(storage.styles_path)), FolderCursor.parse(context.cursor,
                            context.log), context.log, store=storage.store(), budget=TickBudget())
    for name, reason in scan.rejected:
        where = write_reason(folder, name, reason, context.log)
        context.log.warning(f"rejected story {reason}" + (f" (reason written to {where.name})" if where else ""))
    for item in scan.accepted:
        if clear_reason(folder, item.source.name):
            context.log.info(f"{item.source.name}: accepted now; its old reason file is removed")
    if scan.deferred:
        context.log.info(f"{scan.deferred} changed file(s) wait for the next tick (a tick takes at most "
                         f"{TickBudget().max_files} files or about {TickBudget().seconds:.0f} s)")
    tagged = [(item, {STORY_FILE_TAG: item.source.name, STORY_SHA_TAG: item.source.sha256}) for item in scan.accepted]
    skip = "no new or changed stories" + (f" ({scan.settling} still being written)" if scan.settling else "")
    return story_sensor_result(context, tagged, bool(scan.rejected), scan.cursor.dumps(), skip_reason=skip)
