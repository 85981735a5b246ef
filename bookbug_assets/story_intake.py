"""What both story intakes (the folder, bookbug_assets.intake; S3, bookbug_assets.intake_s3) share.

- One parser: `validate_upload` is the only way an upload becomes a Story, in a sensor tick and in the `story` asset,
  so nothing is valid in one place and refused in another. It includes the text-fit layout check (pdf.py): a story
  that cannot be printed is refused in the tick, with a reason file beside it, before a book partition exists or a
  run starts. Its cost is bounded (at most 64 pages, 10,000 values, 1 MB; about 0.7 s for the worst file here),
  and the tick budget below bounds the tick.
- One bounded batch: `TickBudget` lets a tick take at most MAX_FILES_PER_TICK uploads or about TICK_BUDGET_S
  seconds of reading and parsing (always at least one), oldest first; the rest wait in the folder or the bucket and
  the cursor, which records every file the tick took, carries on next tick. A flood of large uploads therefore
  delays a later story by a few ticks and never stops the cursor (a tick that ran past Dagster's sensor timeout
  would fail whole and keep its old cursor).
- One owner rule: the file the sensor accepted first for a book id owns it while it exists and still claims it.
  The sensor tags its runs with the file (or key) and its sha256; the `story` record (layout.StoryRecord) keeps
  the source a book was last built from, so runs without a tag (the UI, `bookbug regenerate`) read the same file.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

from bookbug_assets.input_files import read_mapping, shown
from bookbug_assets.layout import StoryRecord, pdf_key, story_key
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story, StoryError, parse_story_bytes
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES

MAX_FILES_PER_TICK = 20
TICK_BUDGET_S = 3.0  # Dagster's sensor timeout is 60 s; a tick also builds run requests and writes reasons

# Run tags a story sensor puts on the backfill it requests: what the `story` asset reads.
STORY_FILE_TAG = "bookbug/story_file"    # a file name in the stories folder
STORY_KEY_TAG = "bookbug/story_key"      # an S3 key under the stories prefix
STORY_SHA_TAG = "bookbug/story_sha256"   # the sha256 of the bytes the sensor validated


class StoryNotFound(LookupError):
    """No valid story file (or S3 upload) holds a book id, or the one that owns it cannot be read now."""


class MissingStyle(StoryError):
    """A valid story whose style folder is not there (yet): the sensor retries it when the style appears."""

    def __init__(self, source: str, style: str, known_styles: set[str]):
        self.style = style
        choices = ", ".join(sorted(known_styles)) or "none"
        super().__init__(source, [("style", f"unknown style {style!r} (available: {choices}); the story is taken "
                                            "as soon as that style folder appears")])


@dataclass(frozen=True)
class StorySource:
    """A story and where it came from: a file name in the stories folder or an S3 key, and its bytes' sha256."""

    name: str
    sha256: str
    story: Story


@dataclass(frozen=True)
class Accepted:
    """An upload a tick accepted. `built`: the store already holds this very story built to a PDF (make demo,
    `bookbug`), so the tick adds its partitions and requests nothing; `touched`: same bytes, new mtime."""

    source: StorySource
    touched: bool = False
    built: bool = False


class TickBudget:
    """At most `max_files` uploads or about `seconds` of work per tick, and always at least one upload."""

    def __init__(self, max_files: int = MAX_FILES_PER_TICK, seconds: float = TICK_BUDGET_S, clock=time.monotonic):
        self.max_files, self.seconds, self.clock = max_files, seconds, clock
        self.started = clock()
        self.taken = 0

    def take(self) -> bool:
        """True if the tick may take one more upload (and counts it)."""
        if self.taken and (self.taken >= self.max_files or self.clock() - self.started >= self.seconds):
            return False
        self.taken += 1
        return True


def check_upload(name: str, size: int) -> None:
    """What the name and size alone refuse, before a byte is read or downloaded."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in STORY_SUFFIXES:
        raise StoryError(name, [("", f"unsupported extension {suffix!r}; use .json, .yaml or .yml")])
    if size > MAX_STORY_BYTES:
        raise StoryError(name, [("", f"file is {size:,} bytes; a story must be under {MAX_STORY_BYTES:,}")])


def validate_upload(name: str, data: bytes, known_styles: set[str]) -> StorySource:
    """The one story parser of both intakes; raises StoryError (MissingStyle for a style not there yet)."""
    check_upload(name, len(data))
    story = parse_story_bytes(data, name)
    if story.style not in known_styles:
        raise MissingStyle(name, story.style, known_styles)
    return StorySource(name=name, sha256=sha256_hex(data), story=story)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unexpected_reason(name: str, exc: BaseException) -> str:
    """The reason for a failure no check names: its type only, since its text may quote the file."""
    return (f"{shown(name)}: could not be read as a story ({type(exc).__name__}); it must be a UTF-8 YAML or JSON "
            "story (see schemas/story.schema.json)")


def peek_book_id(name: str, data: bytes) -> str | None:
    """The book_id a file claims, from the bounded reader alone (no validation, no layout); None if none."""
    try:
        raw = read_mapping(data, name, StoryError, MAX_STORY_BYTES, "story")
    except Exception:  # noqa: BLE001 - a file that cannot be read claims nothing; the full parser says why
        return None
    value = raw.get("book_id")
    return value if isinstance(value, str) else None


def recorded_source(store: ArtifactStore | None, book_id: str) -> tuple[str, str] | None:
    """(source name, sha256) of the story this book was last built from, or None (never built, unreadable)."""
    if store is None:
        return None
    try:
        if not store.exists(story_key(book_id)):
            return None
        record = StoryRecord.model_validate(store.read_json(story_key(book_id)))
    except Exception:  # noqa: BLE001 - a damaged record only means the book is not known as built
        return None
    return record.source, record.sha256


def already_built(store: ArtifactStore | None, source: StorySource) -> bool:
    """The store holds this very story (same source name, same bytes) built to a PDF: nothing to run."""
    if recorded_source(store, source.story.book_id) != (PurePosixPath(source.name).name, source.sha256):
        return False
    try:
        return store.exists(pdf_key(source.story.book_id))
    except Exception:  # noqa: BLE001 - unknown means build it again (cache hits)
        return False


# --- the sensor's per-book request record ------------------------------------------------------------------------
# A story sensor requests one backfill per tick for every book it accepted, and Dagster gives every run of a
# backfill the same tags: a run tag can no longer say which file each book is read from. So before it requests, the
# sensor writes one small record per book into the store (shared by the sensor and every run worker, local or S3),
# and the `story` step of that book's partition reads it; the step removes it once the book's story record holds it.

def requested_key(book_id: str) -> str:
    return f"intake/requested/{book_id}.json"


def write_requested_source(store: ArtifactStore, source: StorySource) -> None:
    """Record which upload (folder file name or S3 key) and which bytes the sensor accepted for this book."""
    store.write_json(requested_key(source.story.book_id), {"source": source.name, "sha256": source.sha256})


def requested_source(store: ArtifactStore | None, book_id: str) -> tuple[str, str] | None:
    """(source, sha256) the story sensor last requested this book for, or None."""
    if store is None:
        return None
    try:
        if not store.exists(requested_key(book_id)):
            return None
        raw = store.read_json(requested_key(book_id))
        return str(raw["source"]), str(raw["sha256"])
    except Exception:  # noqa: BLE001 - a damaged record only means the recorded owner rule applies
        return None


def clear_requested_source(store: ArtifactStore, book_id: str, source: str) -> None:
    """Drop the request record once the story step has built the book from that very source."""
    requested = requested_source(store, book_id)
    if requested is not None and requested[0] == source:
        store.delete(requested_key(book_id))
