"""Reading story files. Every error names the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

from bookbug_assets.input_files import InputFileError, read_mapping, validate
from bookbug_assets.stories.models import Story

MAX_STORY_BYTES = 1_000_000  # a 64-page story is ~100 KB; anything near this is not a story
STORY_SUFFIXES = (".json", ".yaml", ".yml")


class StoryError(InputFileError):
    """A story that cannot become a book. `problems` is a list of (field, message)."""


def parse_story_bytes(data: bytes, source: str, known_styles: set[str] | None = None) -> Story:
    """Parse and validate one story. `source` names the file in every error."""
    raw = read_mapping(data, source, StoryError, MAX_STORY_BYTES, "story")
    story = validate(Story, raw, source, StoryError, root="story")
    if known_styles is not None and story.style not in known_styles:
        choices = ", ".join(sorted(known_styles)) or "none"
        raise StoryError(source, [("style", f"unknown style {story.style!r} (available: {choices})")])
    # Imported here: the layout needs reportlab's fonts, which nothing else in stories/ does.
    from bookbug_assets.pdf import PdfSpec, text_fit_problems

    problems = text_fit_problems(title=story.title, author=story.author, page_texts=[p.text for p in story.pages],
                                 spec=PdfSpec.of(story.format))
    if problems:
        raise StoryError(source, problems)
    return story


def load_story_file(path: Path, known_styles: set[str] | None = None) -> Story:
    if path.suffix.lower() not in STORY_SUFFIXES:
        raise StoryError(path.name, [("", f"unsupported extension {path.suffix!r}; use .json, .yaml or .yml")])
    size = path.stat().st_size
    if size > MAX_STORY_BYTES:  # refuse before reading a 50 MB upload into memory
        raise StoryError(path.name, [("", f"file is {size:,} bytes; a story must be under {MAX_STORY_BYTES:,}")])
    return parse_story_bytes(path.read_bytes(), path.name, known_styles)
