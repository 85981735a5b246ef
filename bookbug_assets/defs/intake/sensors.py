"""Story sensors: files dropped in data/stories/ become book partitions and one backfill per tick.

One tick (bookbug_assets.intake.scan_folder_tick): every settled file whose size or mtime changed is read and
validated with the one story parser, oldest first, at most 20 files or about 3 s per tick (the rest the next
tick). Every valid one adds its book partition and any missing page slots, and the tick requests ONE backfill of
all of those books' assets and real pages (issue 13: 1,000 files made 1,000 backfills, 6-10 s for the daemon to
create). Dagster gives every run of a backfill the same tags, so which file each book is read from is written into
the store before the request (story_intake.write_requested_source) and the `story` step reads it there. A book
already built as it is (make demo, `bookbug`) only gets its partitions; a book whose style is not built yet waits,
logged, and is taken once the style sensor has built it. A rejected one gets a reason file, and the tick goes on.

The per-file state lives in the store (bookbug_assets.sensor_state); the Dagster cursor only names its version, so
the tick rows Dagster keeps stay about 150 bytes whatever the number of files.
"""

import dagster as dg
# Private imports: RunRequest.for_asset_graph_subset (public) takes these; dagster has no public builder yet.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.defs.common import BOOK_TAG
from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.intake import FolderCursor, scan_folder_tick
from bookbug_assets.layout import page_partition
from bookbug_assets.sensor_state import load_sensor_state, save_sensor_state
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story
from bookbug_assets.story_intake import STORY_FILE_TAG, STORY_SHA_TAG, Accepted, TickBudget, write_requested_source
from bookbug_assets.style_intake import built_styles
from bookbug_assets.styles import style_names
from bookbug_assets.watched_folder import clear_reason, write_reason

BOOK_ASSETS = ("story", "sprite_sheet", "hero_page", "book_pdf")


def book_subset(asset_graph, story: Story, include_ledger: bool = True) -> AssetGraphSubset:
    """Exactly one book: its book-level assets and its real pages, never the empty slots."""
    return AssetGraphSubset.from_asset_partition_set(_book_keys(story, include_ledger), asset_graph)


def _book_keys(story: Story, include_ledger: bool = True) -> set[AssetKeyPartitionKey]:
    wanted = {AssetKeyPartitionKey(dg.AssetKey(name), story.book_id) for name in BOOK_ASSETS}
    wanted |= {AssetKeyPartitionKey(dg.AssetKey("book_pages"), page_partition(story.book_id, page))
               for page in story.page_keys}
    if include_ledger:
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None))
    return wanted


def books_subset(asset_graph, stories: list[Story]) -> AssetGraphSubset:
    """Every one of these books (their book-level assets and real pages) and the ledger once: one backfill."""
    wanted = {AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None)}
    for story in stories:
        wanted |= _book_keys(story, include_ledger=False)
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)


def book_run_request(asset_graph, story: Story, reason: str) -> dg.RunRequest:
    """One book's backfill (what `bookbug` and the benchmarks ask for; the sensors use books_run_request)."""
    return dg.RunRequest.for_asset_graph_subset(book_subset(asset_graph, story),
                                                tags={BOOK_TAG: story.book_id, "bookbug/reason": reason})


def books_run_request(asset_graph, stories: list[Story], reasons: dict[str, str],
                      single_book_tags: dict[str, str]) -> dg.RunRequest:
    """One backfill for every book a tick accepted. Its tags apply to every run in it, so they only say why and how
    many; which file each book is read from is in the store (story_intake.write_requested_source). With one book it
    also carries that book's file tags, which the UI shows on its runs."""
    counts = {reason: list(reasons.values()).count(reason) for reason in sorted(set(reasons.values()))}
    tags = {"bookbug/books": str(len(stories)),
            "bookbug/reason": ", ".join(f"{n} {r}" if len(stories) > 1 else r for r, n in counts.items())}
    if len(stories) == 1:
        tags = {**tags, BOOK_TAG: stories[0].book_id, **single_book_tags}
    return dg.RunRequest.for_asset_graph_subset(books_subset(asset_graph, stories), tags=tags)


# The backfills it requests may only touch these assets (Dagster checks a subset against the target).
BOOK_SELECTION = dg.AssetSelection.assets(*BOOK_ASSETS, "book_pages", "generation_ledger")


def story_sensor_result(context: dg.SensorEvaluationContext, accepted: list[tuple[Accepted, dict[str, str]]],
                        rejected_any: bool, cursor: str, skip_reason: str, store: ArtifactStore,
                        unbuilt_style: list[tuple[str, str]] = ()) -> dg.SensorResult:
    """The tail both story sensors share: add the new books and page slots, and request one backfill for every
    story (`accepted`: each with the run tags it would carry alone) not already built as it is, in one result with
    the new cursor. A story whose style is not built yet (`unbuilt_style`: file, style) is only logged: the scan
    takes it again once the style sensor has built its style."""
    for name, style in unbuilt_style:
        context.log.info(f"{name}: waits for style {style!r}, which is not built yet (style_lora[{style}] is not "
                         "materialized); the style sensor builds it and this story is taken on the tick after")
    existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
    existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
    stories = [a.source.story for a, _ in accepted]
    new_books = sorted({s.book_id for s in stories} - existing_books)
    new_slots = sorted({k for s in stories for k in s.page_keys} - existing_slots)
    requested: list[Story] = []
    reasons: dict[str, str] = {}
    single_tags: dict[str, str] = {}
    for item, tags in accepted:
        story = item.source.story
        if item.built:
            context.log.info(f"{story.book_id}: already built from {item.source.name} as it is; not backfilled "
                             "again (touch the file to rebuild it)")
            continue
        # Written before the request: the book's story step reads the file the sensor took from here.
        write_requested_source(store, item.source)
        requested.append(story)
        reasons[story.book_id] = "story touched" if item.touched else \
            "new story" if story.book_id in new_books else "story changed"
        single_tags = tags
    run_requests = []
    if requested:
        run_requests.append(books_run_request(context.repository_def.asset_graph, requested, reasons, single_tags))
        context.log.info(f"one backfill for {len(requested)} book(s): {', '.join(s.book_id for s in requested)}")
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
    folder, store = storage.stories_path, storage.store()
    known = set(style_names(storage.styles_path))
    state = FolderCursor.parse(load_sensor_state(store, context.cursor, context.log), context.log)
    scan = scan_folder_tick(folder, known, state, context.log, store=store, budget=TickBudget(),
                            built_styles=built_styles(store, known))
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
    skip = "no new or changed stories" + (f" ({scan.settling} still being written)" if scan.settling else "") + \
        (f" ({len(scan.unbuilt_style)} waiting for their style to be built)" if scan.unbuilt_style else "")
    cursor = save_sensor_state(store, "story_folder_sensor", scan.cursor.dumps(), context.cursor,
                               entries=len(scan.cursor.files))
    return story_sensor_result(context, tagged, bool(scan.rejected), cursor, skip_reason=skip, store=store,
                               unbuilt_style=scan.unbuilt_style)
