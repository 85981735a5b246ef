"""Story intake: the drop folder and the S3 prefix, scanned the same way, never raising for one bad file.

Both sources keep what they have seen in their sensor's cursor (file name -> content hash; S3 key ->
ETag), parse every new or changed file with the one story parser, and turn any failure of one file
into that file's rejection reason: a raising tick would not advance the cursor and would block every
later upload. `find_story_file` and `fetch_story_from_s3` are what the `story` asset reads a book from.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bookbug_assets.storage import atomic_file
from bookbug_assets.stories import Story, StoryError, load_story_file, parse_story_bytes
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES
from bookbug_assets.styles import style_names

REJECTED_DIR = "rejected"


class StoryNotFound(LookupError):
    """No valid story file (or S3 upload) holds a book id, or several do."""


# --- the drop folder ---------------------------------------------------------------------------------------

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
    """A file name for `name`'s reason file: readable, and distinct for names that differ only in the characters
    it replaces (`a b.yaml` and `a_b.yaml`, `é.yaml` and `è.yaml` would otherwise share one reason file)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "unnamed"
    if safe == name:
        return safe
    return f"{safe}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


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


def find_story_file(stories_dir: Path, book_id: str, known_styles: set[str]) -> tuple[Path, Story]:
    """The one file in the drop folder whose story has this book id."""
    matches: list[tuple[Path, Story]] = []
    for path in sorted(stories_dir.glob("*")):
        if path.suffix.lower() not in STORY_SUFFIXES or not path.is_file():
            continue
        try:
            parsed = load_story_file(path, known_styles)
        except Exception:  # noqa: BLE001 - any file that does not parse is the sensor's rejection, not this book's
            continue
        if parsed.book_id == book_id:
            matches.append((path, parsed))
    if not matches:
        raise StoryNotFound(f"no valid story file in {stories_dir} has book_id {book_id!r}")
    if len(matches) > 1:
        raise StoryNotFound(f"book_id {book_id!r} is claimed by several files: "
                            f"{', '.join(p.name for p, _ in matches)}")
    return matches[0]



# --- the S3 prefix -------------------------------------------------------------------------------------------

# The listing keeps only objects strictly newer than the mark. S3 stamps LastModified to the second,
# and with the time an upload *began*: a slow upload can show up in a listing after a later, faster
# one has moved the mark past it. Listing from well before the mark and de-duplicating by ETag closes
# both gaps; the listing is the same either way, only the time filter moves.
_OVERLAP = timedelta(minutes=5)


def list_objects(client: Any, bucket: str, prefix: str, since: datetime | None = None) -> list[dict]:
    """The objects under `prefix`, oldest first; with `since`, only those modified strictly after it
    (what dagster-aws's get_objects returns, without importing the Dagster layer)."""
    objects = [obj for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
               for obj in page.get("Contents", [])]
    objects.sort(key=lambda obj: obj["LastModified"])
    return [obj for obj in objects if since is None or obj["LastModified"] > since]


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
    objects = list_objects(client, bucket, prefix, since - _OVERLAP if since else None)
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
    candidates += [o["Key"] for o in list_objects(client, bucket, prefix)
                   if _upload_name(o["Key"], prefix) and o["Key"] != key_hint]
    matches: list[tuple[str, str, Story]] = []
    for key in candidates:
        name = _upload_name(key, prefix)
        if name is None or PurePosixPath(name).suffix.lower() not in STORY_SUFFIXES:
            continue
        try:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            parsed = parse_story_bytes(data, name, known_styles)
        except Exception:  # noqa: BLE001 - an upload that does not parse is the sensor's rejection, not this book's
            continue
        if parsed.book_id == book_id:
            matches.append((key, hashlib.sha256(data).hexdigest(), parsed))
            if key == key_hint:
                return matches[0]
    if not matches:
        raise StoryNotFound(f"no valid story under s3://{bucket}/{prefix} has book_id {book_id!r}")
    if len(matches) > 1:
        raise StoryNotFound(f"book_id {book_id!r} is claimed by several uploads: "
                            f"{', '.join(k for k, _, _ in matches)}")
    return matches[0]
