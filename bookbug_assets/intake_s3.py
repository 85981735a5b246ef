"""The S3 story prefix: the same parser, budget and owner rule as the drop folder (bookbug_assets.story_intake).

The cursor keeps a last-modified mark (so a tick lists only recent objects) and the ETag of every key taken.
Objects are taken oldest first within the tick's budget; the mark never passes one not taken yet. An upload is
whole when it is listed (a PUT or a multipart upload appears only once complete), so there is no settling time.
Only objects directly under the prefix are uploads: deeper keys (`rejected/`, other folders) are not looked at,
nor hidden names (`.name`); a key with an empty segment right under the prefix (`stories//pip.yaml`, what joining
`stories/` and `/pip.yaml` gives) gets a reason object saying how to name it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bookbug_assets.input_files import shown
from bookbug_assets.story_intake import (Accepted, MissingStyle, StoryNotFound, StorySource, TickBudget,
                                         already_built, check_upload, peek_book_id, recorded_source, sha256_hex,
                                         unexpected_reason, validate_upload)
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story, StoryError
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES
from bookbug_assets.watched_folder import REJECTED_DIR, reason_file_name

# The listing keeps only objects strictly newer than the mark. S3 stamps LastModified to the second,
# and with the time an upload *began*: a slow upload can show up in a listing after a later, faster
# one has moved the mark past it. Listing from well before the mark and de-duplicating by ETag closes
# both gaps; the listing is the same either way, only the time filter moves.
_OVERLAP = timedelta(minutes=5)
_S3_ERRORS = (ClientError, BotoCoreError, OSError)


def list_objects(client: Any, bucket: str, prefix: str, since: datetime | None = None) -> list[dict]:
    """The objects under `prefix`, oldest first (then by key); with `since`, only those modified after it."""
    objects = [obj for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
               for obj in page.get("Contents", [])]
    objects.sort(key=lambda obj: (obj["LastModified"], obj["Key"]))
    return [obj for obj in objects if since is None or obj["LastModified"] > since]


def norm_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""



def upload_name(key: str, prefix: str) -> str | None:
    """The name of an upload directly under the prefix ('/pip.yaml' for 'stories//pip.yaml'); None for keys in
    folders below it and hidden names, which are not uploads."""
    name = key[len(prefix):]
    if name.startswith("/") and "/" not in name[1:] and len(name) > 1:
        return name  # an empty segment: answered with a reason, not ignored
    if not name or "/" in name or name.startswith("."):
        return None
    return name


def _read(client: Any, bucket: str, key: str) -> bytes:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    data = body.read(MAX_STORY_BYTES + 1)  # never more than a story may be, whatever the listing said
    if len(data) > MAX_STORY_BYTES:
        raise StoryError(key, [("", f"object is over {MAX_STORY_BYTES:,} bytes; a story must be under that")])
    return data


@dataclass
class S3Scan:
    accepted: list[Accepted] = field(default_factory=list)  # source.name is the key
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (key, etag, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, error): tried again next tick
    cursor: dict = field(default_factory=dict)
    deferred: int = 0  # changed objects left for the next tick (budget spent)
    unbuilt_style: list[tuple[str, str]] = field(default_factory=list)  # (key, style): valid, style not built yet


def scan_s3_stories(client: Any, bucket: str, prefix: str, known_styles: set[str], cursor: dict, log, *,
                    store: ArtifactStore | None = None, budget: TickBudget | None = None,
                    built_styles: set[str] | None = None) -> S3Scan:
    """New or changed story objects since `cursor`, within the budget. Never raises for one object.

    The cursor keeps only keys still listed (a deleted upload leaves it), so it never grows past the prefix.
    `built_styles`: as in intake.scan_folder_tick, a story whose style is not built waits for it."""
    prefix = norm_prefix(prefix)
    listed = list_objects(client, bucket, prefix)
    present = {obj["Key"] for obj in listed}
    etags: dict[str, str] = {k: v for k, v in cursor.get("etags", {}).items() if k in present}
    books: dict[str, str] = {b: k for b, k in cursor.get("books", {}).items() if k in present}  # book_id -> owner
    waiting: dict[str, str] = {k: v for k, v in cursor.get("waiting", {}).items() if k in present}  # key -> lack
    since = datetime.fromisoformat(cursor["since"]) if cursor.get("since") else None
    retry = {key for key, lack in waiting.items()  # what it lacked is there now: its style, or its style built
             if (lack.startswith("build:") and (built_styles is None or lack[6:] in built_styles))
             or (not lack.startswith("build:") and lack in known_styles)}
    for key in retry:
        etags.pop(key, None)  # looked at again; it leaves `waiting` when a tick takes it
    floor = since - _OVERLAP if since else None
    objects = [obj for obj in listed if floor is None or obj["LastModified"] > floor or obj["Key"] in retry]
    budget = budget or TickBudget()
    scan = S3Scan()
    mark = since
    hold: datetime | None = None  # the mark may not pass an object that must be read again
    for obj in objects:
        key, modified = obj["Key"], obj["LastModified"]
        name = upload_name(key, prefix)
        etag = str(obj.get("ETag", "")).strip('"')
        if name is None or etags.get(key) == etag:
            continue
        if not budget.take():  # taken oldest first, so the mark stays below every object left for later
            scan.deferred += 1
            continue
        waiting.pop(key, None)
        try:
            if name.startswith("/"):
                raise StoryError(name, [("", f"the key {shown(key)!r} has an empty path segment ('//'); upload it "
                                             f"as {prefix}{shown(name.lstrip('/'))}")])
            check_upload(name, int(obj.get("Size", 0)))  # from the listing, before a byte is downloaded
            data = _read(client, bucket, key)
            source = validate_upload(name, data, known_styles)
            book_id = source.story.book_id
            owner = books.get(book_id) or _recorded_owner(client, bucket, prefix, store, book_id, key)
            if owner not in (None, key) and _exists(client, bucket, owner):
                raise StoryError(name, [("book_id", f"{book_id!r} is already used by {owner[len(prefix):]}")])
            books[book_id] = key
            source = StorySource(name=key, sha256=source.sha256, story=source.story)
            built = already_built(store, source)
            if not built and built_styles is not None and source.story.style not in built_styles:
                waiting[key] = f"build:{source.story.style}"  # taken again once the style is built
                scan.unbuilt_style.append((key, source.story.style))
            else:
                scan.accepted.append(Accepted(source, built=built))
        except MissingStyle as exc:
            waiting[key] = exc.style
            scan.rejected.append((key, etag, shown(str(exc))))
        except StoryError as exc:
            scan.rejected.append((key, etag, shown(str(exc))))
        except _S3_ERRORS as exc:
            log.warning(f"s3 story sensor: cannot read s3://{bucket}/{key} ({type(exc).__name__}); trying again "
                        "next tick")
            scan.unreadable.append((key, type(exc).__name__))
            hold = modified if hold is None else min(hold, modified)
            continue
        except Exception as exc:  # noqa: BLE001 - one odd upload must not stop the sensor
            scan.rejected.append((key, etag, unexpected_reason(name, exc)))
        etags[key] = etag
        mark = modified if mark is None else max(mark, modified)
    if hold is not None and mark is not None and mark >= hold:
        mark = hold - _OVERLAP
    scan.cursor = {"since": mark.isoformat() if mark else None, "etags": etags, "books": books, "waiting": waiting}
    return scan


def _recorded_owner(client: Any, bucket: str, prefix: str, store: ArtifactStore | None, book_id: str,
                    key: str) -> str | None:
    """The upload this book was built from, while it still holds the bytes it was built from."""
    recorded = recorded_source(store, book_id)
    if recorded is None or prefix + recorded[0] == key:
        return None
    try:
        same = sha256_hex(_read(client, bucket, prefix + recorded[0])) == recorded[1]
    except (StoryError, *_S3_ERRORS):
        return None
    return prefix + recorded[0] if same else None


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


def reason_key(prefix: str, key: str) -> str:
    prefix = norm_prefix(prefix)
    return f"{prefix}{REJECTED_DIR}/{reason_file_name(key[len(prefix):]).removesuffix('.txt')}.json"


def write_s3_rejection(client: Any, bucket: str, prefix: str, key: str, etag: str, reason: str) -> str:
    """A JSON reason object under <prefix>rejected/; the upload itself is left where it is."""
    where = reason_key(prefix, key)
    body = {"key": key, "etag": etag, "reason": reason, "rejected_at": datetime.now(timezone.utc).isoformat()}
    client.put_object(Bucket=bucket, Key=where, Body=json.dumps(body, indent=2).encode(),
                      ContentType="application/json")
    return where


def clear_s3_rejection(client: Any, bucket: str, prefix: str, key: str) -> None:
    """Remove the reason object of an upload that is accepted now (deleting a missing key is not an error)."""
    client.delete_object(Bucket=bucket, Key=reason_key(prefix, key))


def fetch_story_from_s3(client: Any, bucket: str, prefix: str, book_id: str, known_styles: set[str],
                        key_hint: str | None = None, recorded: tuple[str, str] | None = None
                        ) -> tuple[str, str, Story]:
    """(key, sha256 of the bytes, story) of the upload `book_id` is read from: the sensor's `bookbug/story_key`
    run tag, else the upload the book was last built from (`recorded`: name, sha256), else the oldest upload
    claiming the id. Raises StoryNotFound in one line; an upload that does not parse is never this book's failure."""
    prefix = norm_prefix(prefix)

    def source_of(key: str) -> StorySource:
        try:
            data = _read(client, bucket, key)
            return StorySource(key, sha256_hex(data), validate_upload(key[len(prefix):], data, known_styles).story)
        except StoryError as exc:
            raise StoryNotFound(shown(str(exc))) from None
        except _S3_ERRORS as exc:
            raise StoryNotFound(f"s3://{bucket}/{key}: cannot be read ({type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - the upload's own failure, said in one line
            raise StoryNotFound(unexpected_reason(key, exc)) from None

    if key_hint:
        hinted = upload_name(key_hint, prefix) if key_hint.startswith(prefix) else None
        if hinted is None or hinted.startswith("/"):
            raise StoryNotFound(f"run tag bookbug/story_key={shown(key_hint)!r} is not an upload under {prefix}")
        source = source_of(key_hint)
        if source.story.book_id != book_id:
            raise StoryNotFound(f"{key_hint} now has book_id {source.story.book_id!r}, not {book_id!r}")
        return source.name, source.sha256, source.story
    if recorded:
        owner = prefix + recorded[0]
        try:
            claimed = peek_book_id(recorded[0], _read(client, bucket, owner))
        except (StoryError, *_S3_ERRORS):
            claimed = None
        if claimed == book_id:
            source = source_of(owner)
            return source.name, source.sha256, source.story
    for obj in list_objects(client, bucket, prefix):  # oldest first: the sensor's rule for who came first
        key = obj["Key"]
        name = upload_name(key, prefix)
        if name is None or name.startswith("/") or PurePosixPath(name).suffix.lower() not in STORY_SUFFIXES:
            continue
        try:
            if peek_book_id(name, _read(client, bucket, key)) != book_id:
                continue
            source = source_of(key)
        except (StoryNotFound, StoryError, *_S3_ERRORS):
            continue
        return source.name, source.sha256, source.story
    raise StoryNotFound(f"no valid story under s3://{bucket}/{prefix} has book_id {book_id!r}")
