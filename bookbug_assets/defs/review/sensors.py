"""The review sensor: a rejection in `data/reviews/<book>.yaml` regenerates exactly that image.

Per new or changed review file (content hash in the cursor): validate it against the book's
materialized story, fold it into the book's review state (bookbug_assets.review), and request one
backfill of the rejected images and what is drawn from them:

  page N       -> book_pages[book|N], book_pdf[book]
  hero_page    -> hero_page, every page (they use it as a reference), book_pdf
  sprite_sheet -> sprite_sheet, hero_page, every page, book_pdf

A malformed file gets a reason file in `<reviews>/rejected/` and a warning; the state is not
touched and nothing runs. Like the story sensor it never raises for a bad file: a failed tick
would not advance the cursor and would block every later review.
"""

import json

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from bookbug_assets.defs.common import BOOK_TAG
from bookbug_assets.defs.intake.sensors import BOOK_SELECTION
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.intake import newly_refused, read_cursor_files, write_rejection
from bookbug_assets.layout import target_label
from bookbug_assets.review import regeneration_keys, reviews_dir_for, scan_reviews
from bookbug_assets.stories.models import Story


def regeneration_request(asset_graph, story: Story, targets: list[str]) -> dg.RunRequest:
    wanted = {AssetKeyPartitionKey(dg.AssetKey(asset), partition)
              for asset, partition in regeneration_keys(story, targets)}
    if asset_graph.has(dg.AssetKey("generation_ledger")):
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("generation_ledger"), None))
    what = ", ".join(target_label(t) for t in targets)
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset.from_asset_partition_set(wanted, asset_graph),
        tags={BOOK_TAG: story.book_id, "bookbug/reason": f"review of {what}"[:200]})


def build_review_sensor(reviews_dir: str | None = None, name: str = "review_sensor") -> dg.SensorDefinition:
    # asset_selection: the daemon refuses asset-graph backfill requests from a sensor without one.
    @dg.sensor(name=name, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
               asset_selection=BOOK_SELECTION,
               description="Watches data/reviews/<book>.yaml: a rejected page, sprite sheet or hero page is "
                           "regenerated with a new seed and the reviewer's note, with its dependents and the PDF; "
                           "a malformed review gets a reason file in rejected/ and changes nothing.")
    def review_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
        seen = read_cursor_files(context.cursor, context.log)
        folder = reviews_dir_for(storage.stories_path, reviews_dir)
        # Links, FIFOs and devices are never read (bookbug_assets.watched_folder): each gets a reason, once.
        refused = newly_refused(folder, seen)
        changes, failures, state = scan_reviews(folder, storage.store(), seen, context.log)
        failures = refused + failures
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
