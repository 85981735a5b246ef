"""Story sensors: a file dropped in data/stories/ becomes a book partition and a whole-book backfill.

One tick, per new or changed file (content hash in the cursor, so an unchanged file never runs
twice): parse and validate; on success add the book partition and any missing page slots and
request a backfill of exactly that book's assets and real pages; on failure write a reason file
naming the field, log it, and go on with the other files. The sensor never raises for a bad
story: a failed tick would not advance the cursor and would block every later upload.
"""


import hashlib
import json
import re
from pathlib import Path

import dagster as dg
# Private imports: RunRequest.for_asset_graph_subset (public) takes these; dagster has no public builder yet.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.partitions import books_partitions, page_slots_partitions, style_names
from bookbug_assets.resources import BookbugStorage
from bookbug_assets.storage import atomic_file
from bookbug_assets.stories import Story, StoryError, load_story_file
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES

BOOK_ASSETS = ("story", "sprite_sheet", "hero_page", "book_pdf")
REJECTED_DIR = "rejected"


def file_fingerprint(path: Path, max_bytes: int) -> str:
    stat = path.stat()
    if stat.st_size > max_bytes:  # never read a huge upload just to hash it
        return f"size:{stat.st_size}:mtime:{stat.st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_files(folder: Path, seen: dict[str, str], max_bytes: int, log) -> tuple[list[Path], dict[str, str]]:
    """Files of a drop folder that are new or changed since the cursor's `seen`, and the new cursor state."""
    changed: list[Path] = []
    state: dict[str, str] = {}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    for path in files:
        try:
            fingerprint = file_fingerprint(path, max_bytes)
        except OSError as exc:
            log.warning(f"cannot read {path}: {exc}")
            continue
        state[path.name] = fingerprint
        if seen.get(path.name) != fingerprint:
            changed.append(path)
    return changed, state


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "unnamed"


def write_rejection(stories_dir: Path, name: str, reason: str, log=None) -> Path | None:
    """A reason file beside the drop folder; the upload itself is left where it is.

    Never raises: a folder we cannot write to is logged, and the rejection still shows in the tick's log.
    """
    path = stories_dir / REJECTED_DIR / f"{_safe_name(name)}.reason.txt"
    try:
        with atomic_file(path) as handle:
            handle.write((reason + "\n").encode())
    except OSError as exc:
        if log is not None:
            log.error(f"cannot write the reason file for {name} into {path.parent}: {exc}")
        return None
    return path


def read_cursor_files(cursor: str | None, log) -> dict[str, str]:
    """The {file name: fingerprint} a folder sensor's cursor holds; a damaged cursor starts afresh."""
    try:
        files = json.loads(cursor)["files"] if cursor else {}
        return {str(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning(f"ignoring an unreadable sensor cursor ({type(exc).__name__}); every file is looked at again")
        return {}


def read_cursor_owners(cursor: str | None) -> dict[str, str]:
    """{book_id: story file name} from the story sensor's cursor; an old or damaged cursor has none."""
    try:
        owners = json.loads(cursor).get("owners", {}) if cursor else {}
        return {str(k): str(v) for k, v in owners.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def book_subset(asset_graph, story: Story, include_ledger: bool = True) -> AssetGraphSubset:
    """Exactly one book: its book-level assets and its real pages, never the empty slots."""
    wanted = {AssetKeyPartitionKey(dg.AssetKey(name), story.book_id) for name in BOOK_ASSETS}
    wanted |= {AssetKeyPartitionKey(dg.AssetKey("book_pages"),
                                       str(dg.MultiPartitionKey({"book": story.book_id, "page": page})))
               for page in story.page_keys}
    if include_ledger:
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None))
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)


def book_run_request(asset_graph, story: Story, reason: str) -> dg.RunRequest:
    return dg.RunRequest.for_asset_graph_subset(book_subset(asset_graph, story),
                                                tags={"bookbug/book": story.book_id, "bookbug/reason": reason})


def scan_story_folder(stories_dir: Path, styles_dir: Path, seen: dict[str, str], log,
                      owners: dict[str, str] | None = None) -> tuple[list[Story], list[tuple[str, str]], dict[str, str]]:
    """(new or changed stories, rejections (name, reason), new cursor state). Never raises per file.

    `owners` ({book_id: file name}, kept in the cursor) is updated in place: a later file that reuses a book_id
    another file in the folder still holds is rejected, in this tick or any later one.
    """
    known_styles = set(style_names(styles_dir))
    stories: list[Story] = []
    rejected: list[tuple[str, str]] = []
    owners = {} if owners is None else owners
    for book_id, owner in list(owners.items()):
        if not (stories_dir / owner).is_file():  # deleted or renamed: its book_id is free again
            del owners[book_id]
    claimed: dict[str, str] = {}
    changed, state = changed_files(stories_dir, seen, MAX_STORY_BYTES, log)
    for path in changed:
        try:
            if path.suffix.lower() not in STORY_SUFFIXES:
                raise StoryError(path.name, [("", f"unsupported extension {path.suffix!r}; use .json or .yaml")])
            parsed = load_story_file(path, known_styles)
            holder = claimed.get(parsed.book_id) or owners.get(parsed.book_id)
            if holder is not None and holder != path.name:
                raise StoryError(path.name, [("book_id", f"{parsed.book_id!r} is already used by {holder}")])
            claimed[parsed.book_id] = path.name
            for book_id in [b for b, owner in owners.items() if owner == path.name]:
                del owners[book_id]  # this file's earlier book_id, if it changed, is free again
            owners[parsed.book_id] = path.name
            stories.append(parsed)
        except StoryError as exc:
            rejected.append((path.name, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the sensor
            rejected.append((path.name, f"{path.name}: could not be read as a story: {type(exc).__name__}: {exc}"))
    return stories, rejected, state


# The backfills it requests may only touch these assets (Dagster checks a subset against the target).
BOOK_SELECTION = dg.AssetSelection.assets(*BOOK_ASSETS, "book_pages", "generation_ledger")


@dg.sensor(name="story_folder_sensor", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=BOOK_SELECTION,
           description="Watches the stories folder: a new or changed story adds its book partition and page slots "
                       "and backfills exactly that book; a malformed one gets a reason file in rejected/.")
def story_folder_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
    seen = read_cursor_files(context.cursor, context.log)
    existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
    existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
    owners = read_cursor_owners(context.cursor)
    stories, rejected, state = scan_story_folder(storage.stories_path, storage.styles_path, seen, context.log,
                                                 owners)
    for name, reason in rejected:
        where = write_rejection(storage.stories_path, name, reason, context.log)
        context.log.warning(f"rejected story {reason}" + (f" (reason written to {where.name})" if where else ""))
    new_books = sorted({s.book_id for s in stories} - existing_books)
    new_slots = sorted({k for s in stories for k in s.page_keys} - existing_slots)
    asset_graph = context.repository_def.asset_graph
    run_requests = [book_run_request(asset_graph, s, "new story" if s.book_id in new_books else "story changed")
                    for s in stories]
    partition_requests = []
    if new_books:
        partition_requests.append(books_partitions.build_add_request(new_books))
    if new_slots:
        partition_requests.append(page_slots_partitions.build_add_request(new_slots))
    cursor = json.dumps({"files": state, "owners": owners}, sort_keys=True)
    if not run_requests and not rejected:
        return dg.SensorResult(skip_reason="no new or changed stories", cursor=cursor)
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)

