"""The review sensor: a rejection in `data/reviews/<book>.yaml` regenerates exactly that image.

Per new or changed review file (content hash in the cursor): validate it against the book's
materialized story, fold it into the book's review state in the ArtifactStore (review.py), and
request one backfill of the rejected images and what is drawn from them:

  page N       -> book_pages[book|N], book_pdf[book]
  hero_page    -> hero_page, every page (they use it as a reference), book_pdf
  sprite_sheet -> sprite_sheet, hero_page, every page, book_pdf

A malformed file gets a reason file in `<reviews>/rejected/` and a warning; the state is not
touched and nothing runs. Like the story sensor it never raises for a bad file: a failed tick
would not advance the cursor and would block every later review.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.assets._shared import book_key
from bookbug_assets.resources import BookbugStorage
from bookbug_assets.review import (
    BOOK_TARGETS, MAX_REVIEW_BYTES, ReviewError, file_sha256, fold_review, load_state, overrides_gate, parse_review,
    state_key,
)
from bookbug_assets.sensors import BOOK_SELECTION, changed_files, read_cursor_files, write_rejection
from bookbug_assets.stories.models import Story, is_slug
from bookbug_assets.storage import ArtifactStore

REVIEW_SUFFIXES = (".yaml", ".yml")


def reviews_dir_for(storage: BookbugStorage, configured: str | None = None) -> Path:
    """Configured folder, else $BOOKBUG_REVIEWS_DIR, else `reviews/` beside the stories folder."""
    folder = configured or os.environ.get("BOOKBUG_REVIEWS_DIR")
    return Path(folder) if folder else storage.stories_path.parent / "reviews"


def _story(store: ArtifactStore, book_id: str) -> Story | None:
    key = book_key(book_id, "story.json")
    return Story.model_validate(store.read_json(key)["story"]) if store.exists(key) else None


def regeneration_keys(story: Story, targets: list[str]) -> set[tuple[str, str | None]]:
    """(asset, partition) for the reviewed images and everything drawn from them."""
    book = story.book_id
    all_pages = {("book_pages", f"{book}|{k}") for k in story.page_keys}
    keys: set[tuple[str, str | None]] = {("book_pdf", book)}
    for target in targets:
        if target == "sprite_sheet":
            keys |= {("sprite_sheet", book), ("hero_page", book)} | all_pages
        elif target == "hero_page":
            keys |= {("hero_page", book)} | all_pages
        else:
            keys.add(("book_pages", f"{book}|{target.removeprefix('page-')}"))
    return keys


def regeneration_request(asset_graph, story: Story, targets: list[str]) -> dg.RunRequest:
    wanted = {AssetKeyPartitionKey(dg.AssetKey(asset), partition)
              for asset, partition in regeneration_keys(story, targets)}
    if asset_graph.has(dg.AssetKey("generation_ledger")):
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None))
    what = ", ".join(t.replace("page-", "page ") for t in targets)
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset.from_asset_partition_set(wanted, asset_graph),
        tags={"bookbug/book": story.book_id, "bookbug/reason": f"review of {what}"[:200]})


def apply_review_file(path: Path, store: ArtifactStore) -> tuple[Story, list[str], list[str], list[str]]:
    """Validate and fold one file into its book's state; returns (story, rejected, approved, overridden).

    `overridden`: approvals of images their quality gate refused (the asset runs again to accept them).

    Raises ReviewError, leaving the stored state untouched, when the file cannot be applied.
    """
    size = path.stat().st_size
    if size > MAX_REVIEW_BYTES:  # never read a huge upload into memory
        raise ReviewError(path.name, [("", f"file is {size:,} bytes; a review must be under {MAX_REVIEW_BYTES:,}")])
    data = path.read_bytes()
    stem = path.stem
    if not is_slug(stem):
        raise ReviewError(path.name, [("", "the file name must be <book_id>.yaml with a book id of a-z, 0-9, -")])
    story = _story(store, stem)
    review = parse_review(data, path.name, story)
    if story is None:
        raise ReviewError(path.name, [("book_id", f"book {stem!r} has no materialized story yet; review it after "
                                                  "it renders")])
    state, rejected, approved = fold_review(load_state(store, stem), review, store, path.name, file_sha256(data))
    missing = [t for t in approved if state.targets[t].image_sha256 is None]
    if missing:
        raise ReviewError(path.name, [(t if t in BOOK_TARGETS else f"pages.{int(t[5:])}",
                                       "cannot approve an image that has not been rendered") for t in missing])
    # Read before the state is written: if this raises, nothing changed and the file is rejected whole.
    overridden = [t for t in approved if overrides_gate(store, stem, t)]
    store.write_json(state_key(stem), state.model_dump(mode="json"))  # one atomic write: all or nothing
    return story, rejected, approved, overridden


def scan_reviews(folder: Path, store: ArtifactStore, seen: dict[str, str], log):
    """(changes [(story, rejected, approved)], rejections [(name, reason)], new cursor state)."""
    changes, failures = [], []
    changed, state = changed_files(folder, seen, MAX_REVIEW_BYTES, log)
    for path in changed:
        try:
            if path.suffix.lower() not in REVIEW_SUFFIXES:
                raise ReviewError(path.name, [("", f"unsupported extension {path.suffix!r}; use .yaml")])
            changes.append(apply_review_file(path, store))
        except ReviewError as exc:
            failures.append((path.name, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the sensor
            failures.append((path.name, f"{path.name}: could not be applied: {type(exc).__name__}: {exc}"))
    return changes, failures, state


def build_review_sensor(reviews_dir: str | None = None, name: str = "review_sensor") -> dg.SensorDefinition:
    # asset_selection: the daemon refuses asset-graph backfill requests from a sensor without one.
    @dg.sensor(name=name, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
               asset_selection=BOOK_SELECTION,
               description="Watches data/reviews/<book>.yaml: a rejected page, sprite sheet or hero page is "
                           "regenerated with a new seed and the reviewer's note, with its dependents and the PDF; "
                           "a malformed review gets a reason file in rejected/ and changes nothing.")
    def review_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
        seen = read_cursor_files(context.cursor, context.log)
        folder = reviews_dir_for(storage, reviews_dir)
        changes, failures, state = scan_reviews(folder, storage.store(), seen, context.log)
        for file_name, reason in failures:
            where = write_rejection(folder, file_name, reason, context.log)
            context.log.warning(f"rejected review {reason}" + (f" (reason written to rejected/{where.name})"
                                                                 if where else ""))
        run_requests = []
        for story, rejected, approved, overridden in changes:
            if approved:
                context.log.info(f"{story.book_id}: approved {', '.join(approved)}")
            # An approval of an image its gate refused re-runs the asset (a cache hit) to accept it.
            if rejected or overridden:
                context.log.info(f"{story.book_id}: regenerating {', '.join(rejected) or 'nothing'}, accepting "
                                 f"{', '.join(overridden) or 'nothing'} over its quality gate, after review")
                run_requests.append(regeneration_request(context.repository_def.asset_graph, story,
                                                         rejected + overridden))
        cursor = json.dumps({"files": state}, sort_keys=True)
        if not run_requests:
            return dg.SensorResult(skip_reason="no new rejections", cursor=cursor)
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)

    return review_sensor


review_sensor = build_review_sensor()
