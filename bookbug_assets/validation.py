"""What `bookbug validate` and `bookbug book` check before anything runs: a story file or a style folder, judged
by the very rules the sensors apply (story_intake.validate_upload, style_intake.style_problem, the folder's owner
rule), so that "valid here" means "taken by the sensor" and nothing is paid for a file a sensor would refuse.

Every problem is one line, `file: field: problem` (input_files.problem_text escapes and clips it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from bookbug_assets.input_files import InputFileError, field_path, problem_text, read_mapping, shown
from bookbug_assets.intake import story_for_book
from bookbug_assets.quality_section import QualitySection
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import StoryError
from bookbug_assets.stories.parsing import MAX_STORY_BYTES, STORY_SUFFIXES
from bookbug_assets.story_intake import (StoryNotFound, StorySource, check_upload, peek_book_id, recorded_source,
                                         validate_upload)
from bookbug_assets.style_intake import style_problem
from bookbug_assets.styles import IMAGE_SUFFIXES, MAX_IMAGES, MIN_IMAGES, StyleError, load_style_config, style_names
from bookbug_assets.stories.models import is_slug
from bookbug_assets.watched_folder import EntryRefused, kind_problem, list_entries, read_regular


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def line(self) -> str:
        return f"{shown(self.file)}: {problem_text(self.field, self.message)}"


def problems_of(file: str, exc: StoryError) -> list[Problem]:
    return [Problem(file, f, m) for f, m in exc.problems] or [Problem(file, "", str(exc))]


def in_folder(path: Path, folder: Path) -> bool:
    """`path` names an entry directly inside `folder` (the entry itself may be a link: that is not followed)."""
    try:
        return path.absolute().parent.resolve() == folder.resolve()
    except OSError:
        return False


def read_story_file(path: Path, stories_dir: Path) -> bytes:
    """The bytes of a story file a user named. Inside the watched folder, read as the sensor reads it (no links,
    no FIFOs); elsewhere the user chose the file, so a link is followed, but only to a regular file (a FIFO
    would block the reader). Raises StoryError naming `path`."""
    try:
        if path.is_dir():
            raise EntryRefused(path.name, "it is a folder, not a story file (`bookbug validate` checks a style "
                                          "folder)")
        check_upload(path.name, 0)
        if in_folder(path, stories_dir):
            return read_regular(stories_dir, path.name, MAX_STORY_BYTES)
        data, size = read_chosen_file(path, MAX_STORY_BYTES)
        check_upload(path.name, size)
        return data
    except StoryError as exc:
        raise StoryError(str(path), exc.problems) from None
    except EntryRefused as exc:
        raise StoryError(str(path), [("", f"not read: {exc.problem}")]) from None
    except OSError as exc:
        raise StoryError(str(path), [("", f"cannot be read: {exc.strerror or type(exc).__name__}")]) from None


def read_chosen_file(path: Path, max_bytes: int) -> tuple[bytes, int]:
    """(at most `max_bytes` + 1 bytes, the file's size) of a file a user named on the command line: a link is
    followed (the user chose it), but only to a regular file, opened without blocking (a FIFO would hang the
    reader). Raises EntryRefused or OSError."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise EntryRefused(path.name, kind_problem(info) or "it is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    return data, max(info.st_size, len(data))  # it may have grown since the stat


def folder_claimants(stories_dir: Path, book_id: str, besides: str | None = None) -> list[str]:
    """Names of the story files in the watched folder that claim `book_id` (valid or not), except `besides`."""
    names = []
    for entry in list_entries(stories_dir):
        if entry.problem or entry.name == besides or Path(entry.name).suffix.lower() not in STORY_SUFFIXES:
            continue
        try:
            if peek_book_id(entry.name, read_regular(stories_dir, entry.name, MAX_STORY_BYTES)) == book_id:
                names.append(entry.name)
        except (EntryRefused, OSError):
            continue
    return names


def owner_problem(path: Path, book_id: str, stories_dir: Path, styles_dir: Path,
                  store: ArtifactStore | None) -> str | None:
    """Why `path` may not be built as `book_id`: another file owns that id, as the story sensor decided it.

    The owner is the file the sensor took first (the `story` record of a built book, else the oldest file claiming
    the id, story_for_book). A file outside the folder never takes a book id a file in the folder claims: building
    it would replace that book's pages with another story's."""
    inside = in_folder(path, stories_dir)
    others = folder_claimants(stories_dir, book_id, besides=path.name if inside else None)
    if not others:
        return None
    if inside:
        try:
            owner = story_for_book(stories_dir, book_id, set(style_names(styles_dir)),
                                   recorded=recorded_source(store, book_id)).name
        except StoryNotFound:
            owner = others[0]
        if owner == path.name:
            return None
    else:
        owner = others[0]
    return (f"{book_id!r} belongs to {shown(owner)} in {stories_dir}; give this story a book_id of its own "
            f"(or build {shown(owner)})")


def given_story(path: Path, stories_dir: Path, styles_dir: Path, store: ArtifactStore | None) -> StorySource:
    """The story a user named, validated as the sensor would take it; raises StoryError (one line per problem)."""
    data = read_story_file(path, stories_dir)
    try:
        source = validate_upload(path.name, data, set(style_names(styles_dir)))
    except StoryError as exc:
        raise StoryError(str(path), exc.problems) from None
    problem = owner_problem(path, source.story.book_id, stories_dir, styles_dir, store)
    if problem:
        raise StoryError(str(path), [("book_id", problem)])
    return source


def story_file_problems(path: Path, stories_dir: Path, styles_dir: Path,
                        store: ArtifactStore | None = None) -> list[Problem]:
    """Every problem the story sensor would find in `path`, and those of the style folder it names."""
    try:
        source = given_story(path, stories_dir, styles_dir, store)
    except StoryError as exc:
        return problems_of(str(path), exc)
    style_dir = styles_dir / source.story.style
    return [Problem(str(path), "style", f"style {source.story.style!r} cannot be used: {p.line()}")
            for p in style_folder_problems(style_dir)]


def style_folder_problems(style_dir: Path) -> list[Problem]:
    """Every problem of a style folder the style sensor would refuse it for (style_intake.style_problem decides;
    the checks before it only list all the problems where that stops at the first)."""
    name = str(style_dir)
    if style_dir.is_symlink() or not style_dir.is_dir():
        return [Problem(name, "", "a style must be a folder inside the styles folder, not a link or a file")]
    problems = []
    if not is_slug(style_dir.name):
        problems.append(Problem(name, "", f"the folder name {style_dir.name!r} is not a style name (a-z, 0-9 and -, "
                                          "up to 64): the style sensor does not look at it"))
    config = style_dir / "style.yaml"
    try:
        load_style_config(style_dir)
    except StyleError as exc:
        cause = exc.__context__  # load_style_config says every pydantic problem in one message; list them apart
        if isinstance(cause, ValidationError):
            problems += [Problem(str(config), field_path(tuple(e["loc"])), e["msg"]) for e in cause.errors()]
        else:
            problems.append(Problem(name, "", str(exc)))
    problems += _dataset_problems(style_dir)
    if not problems:
        found = style_problem(style_dir)
        if found:
            problems.append(Problem(name, "", found))
    return problems


def _dataset_problems(style_dir: Path) -> list[Problem]:
    images_dir = style_dir / "images"
    if not images_dir.is_dir():
        return [Problem(str(images_dir), "", f"missing; a style needs {MIN_IMAGES}-{MAX_IMAGES} images with a .txt "
                                             "caption each")]
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    problems = []
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        problems.append(Problem(str(images_dir), "", f"{len(images)} images; a style dataset needs "
                                                     f"{MIN_IMAGES}-{MAX_IMAGES}"))
    for image in images:
        if not image.with_suffix(".txt").is_file():
            problems.append(Problem(str(image.with_suffix(".txt")), "", f"missing caption for {image.name}"))
    return problems


# --- quality thresholds given to a run (`--thresholds FILE` or NAME=VALUE) ----------------------------------------

MAX_THRESHOLDS_BYTES = 64 * 1024  # eight numbers and their comments; anything bigger is not a thresholds file
THRESHOLDS_SUFFIXES = (".yaml", ".yml", ".json")


class ThresholdsFileError(InputFileError):
    """A thresholds file that cannot be used: `file: field: problem; ...`."""


def limit_problem(error: dict) -> str:
    """A pydantic error of QualitySection as a user reads it."""
    if error["type"] == "extra_forbidden":
        return f"not a quality limit (limits: {', '.join(QualitySection.model_fields)})"
    return error["msg"]


def _bool_problems(raw: dict) -> list[tuple[str, str]]:
    # pydantic reads `max_clipping: true` as 1.0 (a lax bool -> number); in a file that is a slip, not a limit.
    fields = QualitySection.model_fields
    return [(str(name), "a number, not true/false") for name, value in raw.items()
            if isinstance(value, bool) and name in fields and bool not in get_args(fields[name].annotation)]


def thresholds_file(path: Path) -> dict[str, float | bool]:
    """The quality limits in a YAML or JSON file: QualitySection's fields at the top level (or under one
    `quality:` key, as a story or style.yaml writes them). Raises ThresholdsFileError naming the file and field."""
    source = str(path)
    try:
        data, size = read_chosen_file(path, MAX_THRESHOLDS_BYTES)
    except EntryRefused as exc:
        raise ThresholdsFileError(source, [("", f"not read: {exc.problem}")]) from None
    except OSError as exc:
        raise ThresholdsFileError(source, [("", f"cannot be read: {exc.strerror or type(exc).__name__}")]) from None
    if size > MAX_THRESHOLDS_BYTES:
        raise ThresholdsFileError(source, [("", f"file is {size:,} bytes; a thresholds file must be under "
                                                f"{MAX_THRESHOLDS_BYTES:,}")])
    raw: dict = read_mapping(data, source, ThresholdsFileError, MAX_THRESHOLDS_BYTES, "thresholds file")
    if list(raw) == ["quality"] and isinstance(raw["quality"], dict):
        raw = raw["quality"]
    problems = _bool_problems(raw)
    try:
        section = QualitySection.model_validate(raw)
    except ValidationError as exc:
        problems += [(field_path(tuple(e["loc"])), limit_problem(e)) for e in exc.errors()
                     if field_path(tuple(e["loc"])) not in dict(problems)]
    if problems:
        raise ThresholdsFileError(source, problems)
    return section.values()
