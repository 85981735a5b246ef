"""Reading story files. Every error names the file, the field and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from bookbug_assets.stories.models import Story

MAX_STORY_BYTES = 1_000_000  # a 64-page story is ~100 KB; anything near this is not a story
STORY_SUFFIXES = (".json", ".yaml", ".yml")


class StoryError(ValueError):
    """A story that cannot become a book. `problems` is a list of (field, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{field}: {msg}" if field else msg for field, msg in problems)
        super().__init__(f"{source}: {lines}")


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def parse_story_bytes(data: bytes, source: str, known_styles: set[str] | None = None) -> Story:
    """Parse and validate one story. `source` names the file in every error."""
    if len(data) > MAX_STORY_BYTES:
        raise StoryError(source, [("", f"file is {len(data):,} bytes; a story must be under {MAX_STORY_BYTES:,}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoryError(source, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    if "\x00" in text:
        raise StoryError(source, [("", "binary data, not a story")])
    try:
        if source.lower().endswith(".json"):
            raw = json.loads(text)
        else:
            raw = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise StoryError(source, [("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise StoryError(source, [("", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")]) from None
    if not isinstance(raw, dict):
        raise StoryError(source, [("", f"top level must be a mapping, got {type(raw).__name__}")])
    try:
        story = Story.model_validate(raw)
    except ValidationError as exc:
        problems = [(_field_path(err["loc"]) or "story", err["msg"]) for err in exc.errors(include_url=False)]
        raise StoryError(source, problems) from None
    if known_styles is not None and story.style not in known_styles:
        choices = ", ".join(sorted(known_styles)) or "none"
        raise StoryError(source, [("style", f"unknown style {story.style!r} (available: {choices})")])
    return story


def load_story_file(path: Path, known_styles: set[str] | None = None) -> Story:
    if path.suffix.lower() not in STORY_SUFFIXES:
        raise StoryError(path.name, [("", f"unsupported extension {path.suffix!r}; use .json, .yaml or .yml")])
    size = path.stat().st_size
    if size > MAX_STORY_BYTES:  # refuse before reading a 50 MB upload into memory
        raise StoryError(path.name, [("", f"file is {size:,} bytes; a story must be under {MAX_STORY_BYTES:,}")])
    return parse_story_bytes(path.read_bytes(), path.name, known_styles)
