"""The S3 story sensor: an upload to s3://bucket/<prefix>/ becomes a book, like a file in data/stories/.

Listing goes through dagster-aws `get_objects`. The cursor keeps a last-modified high-water mark
(so a tick lists only recent objects) and the ETag of every story key seen (so an unchanged key is
never run twice, and a changed one, new ETag, always is). A malformed upload gets a JSON reason
object under `<prefix>rejected/` and the tick goes on: a raising tick would not advance the
cursor and would block every later upload. An object that cannot be *read* (an S3 hiccup) is
not rejected; it is left out of the cursor so the next tick tries again.

`fetch_story_from_s3` is what the `story` asset calls to read a book's story from the bucket.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects

from bookbug_assets.partitions import books_partitions, page_slots_partitions, style_names
from bookbug_assets.resources import BookbugStorage
from bookbug_assets.sensors import BOOK_SELECTION, REJECTED_DIR, _safe_name, book_run_request
from bookbug_assets.stories import Story, StoryError, parse_story_bytes
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES

# get_objects keeps only objects strictly newer than the mark. S3 stamps LastModified to the second,
# and with the time an upload *began*: a slow upload can show up in a listing after a later, faster
# one has moved the mark past it. Listing from well before the mark and de-duplicating by ETag closes
# both gaps; the listing is the same either way, only the time filter moves.
_OVERLAP = timedelta(minutes=5)


def _norm_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _upload_name(key: str, prefix: str) -> str | None:
    """The file name of an upload directly under the prefix; None for rejected/ and other folders."""
    name = key[len(prefix):]
    if not name or "/" in name or name.startswith("."):
        return None
    return name


@dataclass
class S3Scan:
    stories: list[tuple[str, Story]] = field(default_factory=list)  # (key, story)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (key, etag, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, error): retried next tick
    cursor: dict = field(default_factory=dict)


def parse_upload(name: str, size: int, read, known_styles: set[str]) -> Story:
    """Validate one upload; raises StoryError naming the file, the field and the problem.

    The size and extension are checked from the listing, before a byte is downloaded.
    """
    if PurePosixPath(name).suffix.lower() not in STORY_SUFFIXES:
        raise StoryError(name, [("", f"unsupported extension {PurePosixPath(name).suffix!r}; use .json or .yaml")])
    if size > MAX_STORY_BYTES:
        raise StoryError(name, [("", f"file is {size:,} bytes; a story must be under {MAX_STORY_BYTES:,}")])
    return parse_story_bytes(read(), name, known_styles)


def scan_s3_stories(client: Any, bucket: str, prefix: str, known_styles: set[str], cursor: dict,
                    log) -> S3Scan:
    """New or changed story objects since `cursor`. Never raises for one bad object."""
    prefix = _norm_prefix(prefix)
    etags: dict[str, str] = dict(cursor.get("etags", {}))
    books: dict[str, str] = dict(cursor.get("books", {}))  # book_id -> key that owns it
    since = datetime.fromisoformat(cursor["since"]) if cursor.get("since") else None
    objects = get_objects(bucket, prefix, since_last_modified=since - _OVERLAP if since else None, client=client)
    scan = S3Scan()
    mark = since
    hold: datetime | None = None  # the mark may not pass an object that must be read again
    for obj in objects:
        key, modified = obj["Key"], obj["LastModified"]
        name = _upload_name(key, prefix)
        etag = str(obj.get("ETag", "")).strip('"')
        if name is None or etags.get(key) == etag:
            continue

        def read(key=key) -> bytes:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()

        try:
            story = parse_upload(name, int(obj.get("Size", 0)), read, known_styles)
            owner = books.get(story.book_id)
            if owner not in (None, key) and _exists(client, bucket, owner):
                raise StoryError(name, [("book_id", f"{story.book_id!r} is already used by "
                                                    f"{owner[len(prefix):]}")])
            books[story.book_id] = key
            scan.stories.append((key, story))
        except StoryError as exc:
            scan.rejected.append((key, etag, str(exc)))
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning(f"s3 story sensor: cannot read s3://{bucket}/{key} ({exc}); trying again next tick")
            scan.unreadable.append((key, str(exc)))
            hold = modified if hold is None else min(hold, modified)
            continue
        except Exception as exc:  # noqa: BLE001 - one odd upload must not stop the sensor
            scan.rejected.append((key, etag, f"{name}: could not be read as a story: {type(exc).__name__}: {exc}"))
        etags[key] = etag
        mark = modified if mark is None else max(mark, modified)
    if hold is not None and mark is not None and mark >= hold:
        mark = hold - _OVERLAP
    scan.cursor = {"since": mark.isoformat() if mark else None, "etags": etags, "books": books}
    return scan


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


def write_s3_rejection(client: Any, bucket: str, prefix: str, key: str, etag: str, reason: str) -> str:
    """A JSON reason object under <prefix>rejected/; the upload itself is left where it is."""
    prefix = _norm_prefix(prefix)
    name = key[len(prefix):]
    reason_key = f"{prefix}{REJECTED_DIR}/{_safe_name(name)}.reason.json"
    body = {"key": key, "etag": etag, "reason": reason, "rejected_at": datetime.now(timezone.utc).isoformat()}
    client.put_object(Bucket=bucket, Key=reason_key, Body=json.dumps(body, indent=2).encode(),
                      ContentType="application/json")
    return reason_key


def fetch_story_from_s3(client: Any, bucket: str, prefix: str, book_id: str, known_styles: set[str],
                        key_hint: str | None = None) -> tuple[str, str, Story]:
    """(key, sha256 of the bytes, story) of the one upload whose story has `book_id`.

    `key_hint` (the sensor's `bookbug/story_key` run tag) is tried first, so a sensor-launched
    run reads one object; a run launched from the UI has no hint and scans the uploads.
    """
    prefix = _norm_prefix(prefix)
    candidates = [key_hint] if key_hint and key_hint.startswith(prefix) else []
    candidates += [o["Key"] for o in get_objects(bucket, prefix, client=client)
                   if _upload_name(o["Key"], prefix) and o["Key"] != key_hint]
    matches: list[tuple[str, str, Story]] = []
    for key in candidates:
        name = _upload_name(key, prefix)
        if name is None or PurePosixPath(name).suffix.lower() not in STORY_SUFFIXES:
            continue
        try:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            parsed = parse_story_bytes(data, name, known_styles)
        except (StoryError, ClientError):
            continue  # the sensor already rejected it with a reason object
        if parsed.book_id == book_id:
            matches.append((key, hashlib.sha256(data).hexdigest(), parsed))
            if key == key_hint:
                return matches[0]
    if not matches:
        raise dg.Failure(f"no valid story under s3://{bucket}/{prefix} has book_id {book_id!r}", allow_retries=False)
    if len(matches) > 1:
        raise dg.Failure(f"book_id {book_id!r} is claimed by several uploads: {', '.join(k for k, _, _ in matches)}",
                         allow_retries=False)
    return matches[0]


def build_s3_story_sensor(bucket: str, prefix: str = "stories/", name: str = "s3_story_sensor",
                          minimum_interval_seconds: int = 30,
                          default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING
                          ) -> dg.SensorDefinition:
    """The sensor for one bucket/prefix; it needs resources `storage` (styles) and `s3` (S3Resource)."""

    # asset_selection: the daemon refuses asset-graph backfill requests from a sensor without one.
    @dg.sensor(name=name, minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
               asset_selection=BOOK_SELECTION,
               description=f"Watches s3://{bucket}/{_norm_prefix(prefix)}: a new or changed story (new ETag) adds "
                           "its book partition and page slots and backfills exactly that book; a malformed one "
                           "gets a reason object under rejected/.")
    def s3_story_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage,
                        s3: S3Resource) -> dg.SensorResult:
        client = s3.get_client()
        cursor = json.loads(context.cursor) if context.cursor else {}
        scan = scan_s3_stories(client, bucket, prefix, set(style_names(storage.styles_path)), cursor, context.log)
        for key, etag, reason in scan.rejected:
            try:
                where = write_s3_rejection(client, bucket, prefix, key, etag, reason)
                context.log.warning(f"rejected story {reason} (reason object {where})")
            except (ClientError, BotoCoreError) as exc:
                context.log.warning(f"rejected story {reason} (could not write its reason object: {exc})")
        stories = [s for _, s in scan.stories]
        existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
        existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
        new_books = sorted({s.book_id for s in stories} - existing_books)
        new_slots = sorted({k for s in stories for k in s.page_keys} - existing_slots)
        asset_graph = context.repository_def.asset_graph
        run_requests = []
        for key, story in scan.stories:
            request = book_run_request(asset_graph, story, "new story" if story.book_id in new_books
                                       else "story changed")
            run_requests.append(request.with_replaced_attrs(tags={**request.tags, "bookbug/story_key": key}))
        partition_requests = []
        if new_books:
            partition_requests.append(books_partitions.build_add_request(new_books))
        if new_slots:
            partition_requests.append(page_slots_partitions.build_add_request(new_slots))
        cursor_text = json.dumps(scan.cursor, sort_keys=True)
        if not run_requests and not scan.rejected:
            return dg.SensorResult(skip_reason="no new or changed stories in S3", cursor=cursor_text)
        return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests,
                               cursor=cursor_text)

    return s3_story_sensor
