"""The S3 story sensor: an upload to s3://bucket/<prefix>/ becomes a book, like a file in data/stories/.

Its state keeps a last-modified high-water mark (so a tick looks only at recent objects) and the ETag
of every story key taken that is still listed (bookbug_assets.intake_s3.scan_s3_stories: the folder's
parser, budget and owner rule); it lives in the artifact store and the Dagster cursor only names it
(bookbug_assets.sensor_state), and every book the tick accepts goes into one backfill, as for the
folder (defs/intake/sensors.py). A malformed upload gets a JSON reason object under `<prefix>rejected/`
(removed once the upload is accepted) and the tick goes on. Built only when BOOKBUG_S3_BUCKET and
BOOKBUG_S3_STORIES_PREFIX are set.
"""

import json

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource

from bookbug_assets.defs.intake.sensors import BOOK_SELECTION, story_sensor_result
from bookbug_assets.defs.resources import BookbugStorage, storage_from_env
from bookbug_assets.intake_s3 import clear_s3_rejection, norm_prefix, scan_s3_stories, write_s3_rejection
from bookbug_assets.sensor_state import load_sensor_state, save_sensor_state
from bookbug_assets.story_intake import STORY_KEY_TAG, STORY_SHA_TAG, TickBudget
from bookbug_assets.style_intake import built_styles
from bookbug_assets.styles import style_names


def build_s3_story_sensor(bucket: str, prefix: str = "stories/", name: str = "s3_story_sensor",
                          minimum_interval_seconds: int = 30,
                          default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING
                          ) -> dg.SensorDefinition:
    """The sensor for one bucket/prefix; it needs resources `storage` (styles) and `s3` (S3Resource)."""

    # asset_selection: the daemon refuses asset-graph backfill requests from a sensor without one.
    @dg.sensor(name=name, minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
               asset_selection=BOOK_SELECTION,
               description=f"Watches s3://{bucket}/{norm_prefix(prefix)}: a new or changed story (new ETag) adds "
                           "its book partition and page slots and backfills exactly that book; a malformed one "
                           "gets a reason object under rejected/.")
    def s3_story_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage,
                        s3: S3Resource) -> dg.SensorResult:
        client, store = s3.get_client(), storage.store()
        state = load_sensor_state(store, context.cursor, context.log)
        try:
            cursor = json.loads(state) if state else {}
        except ValueError:
            context.log.warning("ignoring an unreadable sensor cursor; every upload is looked at again")
            cursor = {}
        known = set(style_names(storage.styles_path))
        scan = scan_s3_stories(client, bucket, prefix, known, cursor if isinstance(cursor, dict) else {},
                               context.log, store=store, budget=TickBudget(), built_styles=built_styles(store, known))
        for key, etag, reason in scan.rejected:
            try:
                where = write_s3_rejection(client, bucket, prefix, key, etag, reason)
                context.log.warning(f"rejected story {reason} (reason object {where})")
            except (ClientError, BotoCoreError) as exc:
                context.log.warning(f"rejected story {reason} (could not write its reason object: {exc})")
        for item in scan.accepted:
            try:
                clear_s3_rejection(client, bucket, prefix, item.source.name)
            except (ClientError, BotoCoreError) as exc:
                context.log.warning(f"could not remove the old reason object of {item.source.name}: {exc}")
        if scan.deferred:
            context.log.info(f"{scan.deferred} changed upload(s) wait for the next tick")
        # The story asset reads the very object the sensor validated (bookbug/story_key).
        tagged = [(item, {STORY_KEY_TAG: item.source.name, STORY_SHA_TAG: item.source.sha256})
                  for item in scan.accepted]
        new_cursor = save_sensor_state(store, name, json.dumps(scan.cursor, sort_keys=True), context.cursor,
                                       entries=len(scan.cursor["etags"]))
        return story_sensor_result(context, tagged, bool(scan.rejected), new_cursor, store=store,
                                   skip_reason="no new or changed stories in S3", unbuilt_style=scan.unbuilt_style)

    return s3_story_sensor


@dg.definitions
def s3_intake_defs() -> dg.Definitions:
    storage = storage_from_env()
    if not (storage.s3_bucket and storage.s3_stories_prefix):
        return dg.Definitions()
    return dg.Definitions(sensors=[build_s3_story_sensor(storage.s3_bucket, storage.s3_stories_prefix)])
