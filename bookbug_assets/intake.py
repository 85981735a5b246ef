"""The story drop folder: which files a tick takes, what became of each, and which file a book is read from.

A tick (`scan_folder_tick`) looks at every entry with one `lstat` and reads only files whose size or mtime changed
since the cursor, oldest first, within the tick's budget (story_intake.TickBudget). A file is taken once it has
settled: unchanged for SETTLE_S seconds, or unchanged across two ticks (an mtime in the future), so a half-written
upload is not taken as a short story. Every file taken is recorded in the cursor whatever became of it, so a bad
or slow file is looked at once and never stops the ones behind it. Links, FIFOs and devices are refused unread
(bookbug_assets.watched_folder). A story refused for a style that is not there is retried when the style appears;
touching a story (same bytes, new mtime) requests its backfill again. `story_for_book` is what the `story` asset
and the CLI read a book from: the sensor's file first, then the file the book was last built from.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from bookbug_assets.input_files import shown
from bookbug_assets.story_intake import (Accepted, MissingStyle, StoryNotFound, StorySource, TickBudget,
                                         already_built, check_upload, peek_book_id, recorded_source, sha256_hex,
                                         unexpected_reason, validate_upload)
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story, StoryError
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES
from bookbug_assets.styles import style_names
from bookbug_assets.watched_folder import (REJECTED_DIR, Entry, EntryRefused, list_entries, read_regular,
                                           write_reason)

__all__ = ["REJECTED_DIR", "FolderCursor", "FolderScan", "StoryNotFound", "changed_files", "find_story_file",
           "newly_refused", "read_cursor_files", "scan_folder_tick", "scan_story_folder", "story_for_book",
           "write_rejection"]

SETTLE_S = 5.0  # an upload whose mtime is this old is finished (a writer updates the mtime with every write)


def write_rejection(folder: Path, name: str, reason: str, log=None) -> Path | None:
    """A reason file in <folder>/rejected/ (never through a link); the upload itself is left where it is."""
    return write_reason(folder, name, reason, log)


# --- fingerprints: "<size>:<mtime_ns>:<sha256>" for a file read, "<kind>:<size>:<mtime_ns>" for one not read ----

def _sha_of(fingerprint: str | None) -> str | None:
    """The content hash in a fingerprint; an old cursor's bare sha256 is one too."""
    if not fingerprint:
        return None
    tail = fingerprint.rsplit(":", 1)[-1]
    return tail if len(tail) == 64 else None


def _look_of(fingerprint: str | None) -> str | None:
    parts = (fingerprint or "").split(":")
    if len(parts) == 3 and parts[0].isdigit():
        return f"{parts[0]}:{parts[1]}"
    if len(parts) == 3:  # refused:<size>:<mtime> / unreadable:<size>:<mtime>
        return f"{parts[1]}:{parts[2]}"
    return None


@dataclass
class FolderCursor:
    files: dict[str, str] = field(default_factory=dict)    # name -> fingerprint of what the sensor took
    owners: dict[str, str] = field(default_factory=dict)   # book_id -> the file that owns it
    waiting: dict[str, str] = field(default_factory=dict)  # name -> "style:<s>" / "book_id:<b>" / "build:<s>"
    pending: dict[str, str] = field(default_factory=dict)  # name -> its look, while it settles

    @classmethod
    def parse(cls, cursor: str | None, log) -> FolderCursor:
        """A damaged cursor starts afresh (every file is looked at again; built books are not rebuilt)."""
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            return cls(**{name: {str(k): str(v) for k, v in raw.get(name, {}).items()}
                          for name in ("files", "owners", "waiting", "pending")})
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning(f"ignoring an unreadable sensor cursor ({type(exc).__name__}); every file is looked at again")
            return cls()

    def dumps(self) -> str:
        return json.dumps({"files": self.files, "owners": self.owners, "waiting": self.waiting,
                           "pending": self.pending}, sort_keys=True)


def read_cursor_files(cursor: str | None, log) -> dict[str, str]:
    """The {file name: fingerprint} a folder sensor's cursor holds (the review sensor's too)."""
    return FolderCursor.parse(cursor, log).files


@dataclass
class FolderScan:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    cursor: FolderCursor = field(default_factory=FolderCursor)
    deferred: int = 0  # changed files left for the next tick (budget spent)
    settling: int = 0  # files still being written, or too new to tell
    unbuilt_style: list[tuple[str, str]] = field(default_factory=list)  # (file, style): valid, its style not built


def _refused_fingerprint(entry: Entry, kind: str = "refused") -> str:
    return f"{kind}:{entry.look}"


def scan_folder_tick(stories_dir: Path, known_styles: set[str], cursor: FolderCursor, log, *,
                     store: ArtifactStore | None = None, budget: TickBudget | None = None,
                     settle_s: float = SETTLE_S, now: float | None = None,
                     built_styles: set[str] | None = None) -> FolderScan:
    """One tick over the drop folder. Never raises for one file: whatever a file does is its own rejection.

    `built_styles`: the styles whose style_lora is built; a valid story in another style waits (it owns its book id
    but is not accepted) and is taken again once its style is built, so no book runs against a style not built."""
    now_ns = int((time.time() if now is None else now) * 1e9)
    entries = list_entries(stories_dir)
    present = {e.name for e in entries}
    state = FolderCursor(files={n: f for n, f in cursor.files.items() if n in present},
                         owners={b: n for b, n in cursor.owners.items() if n in present},  # gone: the id is free
                         waiting={n: s for n, s in cursor.waiting.items() if n in present})
    for name, lacked in list(state.waiting.items()):
        kind, _, value = lacked.partition(":")
        if (kind == "style" and value in known_styles) or (kind == "book_id" and value not in state.owners) or \
                (kind == "build" and (built_styles is None or value in built_styles)):
            state.files.pop(name, None)  # what it lacked is there now (its style, a free book_id): take it again
            del state.waiting[name]
    scan = FolderScan(cursor=state)
    budget = budget or TickBudget(max_files=10**9, seconds=float("inf"))
    for entry in entries:
        prior = state.files.get(entry.name)
        if _look_of(prior) == entry.look:
            continue
        settled = now_ns - entry.mtime_ns >= settle_s * 1e9 or cursor.pending.get(entry.name) == entry.look
        if not settled:
            state.pending[entry.name] = entry.look
            scan.settling += 1
            continue
        if not budget.take():
            scan.deferred += 1
            continue
        _take(stories_dir, entry, prior, known_styles, state, scan, store, built_styles)
    return scan


def _take(stories_dir: Path, entry: Entry, prior: str | None, known_styles: set[str], state: FolderCursor,
          scan: FolderScan, store: ArtifactStore | None, built_styles: set[str] | None = None) -> None:
    name = entry.name
    state.waiting.pop(name, None)
    try:
        if entry.problem:
            raise EntryRefused(name, entry.problem)
        check_upload(name, entry.size)
        data = read_regular(stories_dir, name, MAX_STORY_BYTES)
    except (EntryRefused, StoryError) as exc:
        state.files[name] = _refused_fingerprint(entry)
        scan.rejected.append((name, shown(str(exc))))
        return
    except OSError as exc:  # no permission, an I/O error: said once, looked at again when the file changes
        state.files[name] = _refused_fingerprint(entry, "unreadable")
        scan.rejected.append((name, f"{shown(name)}: cannot be read ({exc.strerror or type(exc).__name__}); "
                                    "the sensor tries again when the file changes"))
        return
    sha = sha256_hex(data)
    state.files[name] = f"{entry.look}:{sha}"
    touched = _sha_of(prior) == sha
    if touched and len(prior) == 64:  # an older cursor held only the hash: the same story, not a touch
        return
    try:
        source = validate_upload(name, data, known_styles)
        book_id = source.story.book_id
        holder = state.owners.get(book_id) or _recorded_holder(stories_dir, store, book_id, name, state)
        if holder is not None and holder != name:
            state.waiting[name] = f"book_id:{book_id}"
            raise StoryError(name, [("book_id", f"{book_id!r} is already used by {holder}; this file is taken if "
                                                "that one goes or changes its book_id")])
        for other in [b for b, owner in state.owners.items() if owner == name]:
            del state.owners[other]  # this file's earlier book_id, if it changed, is free again
        state.owners[book_id] = name
        built = not touched and already_built(store, source)
        if not built and built_styles is not None and source.story.style not in built_styles:
            state.waiting[name] = f"build:{source.story.style}"  # taken again once the style is built
            scan.unbuilt_style.append((name, source.story.style))
            return
        scan.accepted.append(Accepted(source, touched=touched, built=built))
    except MissingStyle as exc:
        state.waiting[name] = f"style:{exc.style}"
        scan.rejected.append((name, str(exc)))
    except StoryError as exc:
        scan.rejected.append((name, str(exc)))
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the sensor
        scan.rejected.append((name, unexpected_reason(name, exc)))


def _recorded_holder(stories_dir: Path, store: ArtifactStore | None, book_id: str, name: str,
                     state: FolderCursor) -> str | None:
    """The file this book was built from (make demo, `bookbug`), while it still holds the bytes it was built from:
    with no owner in the cursor (a new instance, a lost cursor) it still owns the book."""
    recorded = recorded_source(store, book_id)
    if recorded is None or recorded[0] == name:
        return None
    holder, sha = recorded
    if _sha_of(state.files.get(holder)) == sha or _current_sha(stories_dir, holder) == sha:
        state.owners[book_id] = holder
        return holder
    return None


def _current_sha(stories_dir: Path, name: str) -> str | None:
    try:
        return sha256_hex(read_regular(stories_dir, name, MAX_STORY_BYTES))
    except (EntryRefused, OSError):
        return None


def scan_story_folder(stories_dir: Path, styles_dir: Path, seen: dict[str, str], log,
                      owners: dict[str, str] | None = None
                      ) -> tuple[list[Story], list[tuple[str, str]], dict[str, str]]:
    """(accepted stories, rejections (name, reason), new {name: fingerprint}) of one unbounded pass over every
    file, settled or not; the sensor uses scan_folder_tick. `owners` is updated in place."""
    cursor = FolderCursor(files=dict(seen), owners=dict(owners or {}))
    scan = scan_folder_tick(stories_dir, set(style_names(styles_dir)), cursor, log, settle_s=0)
    if owners is not None:
        owners.clear()
        owners.update(scan.cursor.owners)
    return [a.source.story for a in scan.accepted], scan.rejected, scan.cursor.files


# --- the review folder reads through the same rules -------------------------------------------------------------

def changed_files(folder: Path, seen: dict[str, str], max_bytes: int, log) -> tuple[list[Path], dict[str, str]]:
    """Regular files of a drop folder whose content changed since `seen`, and the new {name: fingerprint}.

    A file whose size and mtime are as before is not read; a touched one (same bytes) is not a change. Entries
    that are not read (links, FIFOs) are recorded but not returned: `newly_refused` gives their reasons."""
    changed: list[Path] = []
    state: dict[str, str] = {}
    for entry in list_entries(folder):
        prior = seen.get(entry.name)
        if _look_of(prior) == entry.look:
            state[entry.name] = prior
            continue
        if entry.problem:
            state[entry.name] = _refused_fingerprint(entry)
            continue
        if entry.size > max_bytes:  # never read a huge upload just to hash it; the reader refuses it by size
            state[entry.name] = _refused_fingerprint(entry, "large")
            changed.append(folder / entry.name)
            continue
        try:
            sha = sha256_hex(read_regular(folder, entry.name, max_bytes))
        except (EntryRefused, OSError) as exc:
            state[entry.name] = _refused_fingerprint(entry, "unreadable")
            log.warning(f"cannot read {folder / entry.name}: {exc}; looked at again when it changes")
            continue
        state[entry.name] = f"{entry.look}:{sha}"
        if _sha_of(prior) != sha:
            changed.append(folder / entry.name)
    return changed, state


def newly_refused(folder: Path, seen: dict[str, str]) -> list[tuple[str, str]]:
    """(name, reason) for entries not read (links, FIFOs, devices) that the cursor `seen` has not answered yet."""
    return [(e.name, f"{shown(e.name)}: not read: {e.problem}") for e in list_entries(folder)
            if e.problem and seen.get(e.name) != _refused_fingerprint(e)]


# --- which file a book is read from ------------------------------------------------------------------------------

def _read_source(stories_dir: Path, name: str, known_styles: set[str]) -> StorySource:
    try:
        return validate_upload(name, read_regular(stories_dir, name, MAX_STORY_BYTES), known_styles)
    except (StoryError, EntryRefused) as exc:
        raise StoryNotFound(shown(str(exc))) from None
    except OSError as exc:
        raise StoryNotFound(f"{shown(name)}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - the file's own failure, said in one line
        raise StoryNotFound(unexpected_reason(name, exc)) from None


def _read_named_file(path: str, known_styles: set[str]) -> StorySource:
    """A story file outside the folder that `bookbug book <file>` named (an absolute path in the run tag): a regular
    file (a link the user chose is followed, a FIFO or device is not opened), validated by the one parser. Its
    failure says nothing of its content: the CLI validated it before the run, so a failure here means it changed
    or the tag was set by hand."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise EntryRefused(path, "not a regular file")
            data = handle.read(MAX_STORY_BYTES + 1)
        source = validate_upload(Path(path).name, data, known_styles)
    except Exception:  # noqa: BLE001 - any failure: one line that quotes nothing from the file
        raise StoryNotFound(f"{shown(path)}: not a valid story file now; check it with `bookbug validate "
                            f"{shown(path)}`") from None
    return StorySource(name=path, sha256=source.sha256, story=source.story)


def story_for_book(stories_dir: Path, book_id: str, known_styles: set[str], *, tagged: str | None = None,
                   recorded: tuple[str, str] | None = None) -> StorySource:
    """The story of `book_id`: the file the sensor (or the CLI) tagged its run with, else the file the book was last
    built from (`recorded`: name, sha256), else the oldest file claiming the id. Raises StoryNotFound (one line) when
    the owner's file is not valid now, or when a tagged file would take a book another file still owns.

    A name is a file in the stories folder; an absolute path is a file `bookbug book` was given outside it."""
    if tagged is not None:
        source = _read_named_file(tagged, known_styles) if os.path.isabs(tagged) else \
            _read_source(stories_dir, tagged, known_styles)
        if source.story.book_id != book_id:
            raise StoryNotFound(f"{shown(tagged)} now has book_id {source.story.book_id!r}, not {book_id!r}")
        if recorded and recorded[0] != tagged and _current_sha(stories_dir, recorded[0]) == recorded[1]:
            raise StoryNotFound(f"{shown(tagged)} claims book_id {book_id!r}, which {recorded[0]} owns; "
                                "give it a book_id of its own")
        return source
    if recorded and os.path.isabs(recorded[0]):  # last built by `bookbug book` from a file outside the folder
        try:
            source = _read_named_file(recorded[0], known_styles)
            if source.story.book_id == book_id:
                return source
        except StoryNotFound:
            pass  # gone or changed: the folder may hold the book now
    if recorded and recorded[0] in {e.name for e in list_entries(stories_dir) if not e.problem}:
        owner = recorded[0]
        try:
            claimed = peek_book_id(owner, read_regular(stories_dir, owner, MAX_STORY_BYTES))
        except (EntryRefused, OSError):
            claimed = None
        if claimed == book_id:  # still this book's file: its problems are this book's
            return _read_source(stories_dir, owner, known_styles)
    for entry in list_entries(stories_dir):  # oldest first: the sensor's rule for who came first
        if entry.problem or Path(entry.name).suffix.lower() not in STORY_SUFFIXES:
            continue
        try:
            if peek_book_id(entry.name, read_regular(stories_dir, entry.name, MAX_STORY_BYTES)) != book_id:
                continue
            return _read_source(stories_dir, entry.name, known_styles)
        except (StoryNotFound, EntryRefused, OSError):
            continue  # a file that does not parse is the sensor's rejection, not this book's failure
    raise StoryNotFound(f"no valid story file in {stories_dir} has book_id {book_id!r}")


def find_story_file(stories_dir: Path, book_id: str, known_styles: set[str],
                    store: ArtifactStore | None = None) -> tuple[Path, Story]:
    """(path, story) of the file `book_id` is read from (story_for_book; `store` gives the recorded owner)."""
    source = story_for_book(stories_dir, book_id, known_styles, recorded=recorded_source(store, book_id))
    return stories_dir / source.name, source.story
