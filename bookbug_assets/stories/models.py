"""The story format: what a children's-book app hands over. Pydantic at the edge, strict.

A story file (JSON or YAML) becomes one book partition. Everything that later reaches a path,
a partition key or a prompt passes through these models first.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from bookbug_assets.stories.text import plain_text_problem

SLUG_PATTERN = r"^[a-z0-9-]{1,64}$"
_SLUG_RE = re.compile(SLUG_PATTERN)

MAX_PAGES = 64  # picture books run 12-48 pages; more is almost certainly a broken upload


def _one_line(value: str) -> str:
    if problem := plain_text_problem(value, allow_newlines=False):
        raise ValueError(problem)
    return value


def _text_lines(value: str) -> str:
    if problem := plain_text_problem(value, allow_newlines=True):
        raise ValueError(problem)
    return value


# Every free-text field reaches a prompt, the PDF (text and metadata) or a log, so none may hold control,
# bidirectional or invisible characters (stories/text.py has the whole rule and why). Titles, authors and
# names are one line: no newline, no tab. Page text, scenes and descriptions may break lines (newline, tab).
# Why ZWJ U+200D (and ZWNJ U+200C) is allowed only between two visible non-ASCII characters: emoji sequences
# (a family, the rainbow flag) and Indic/Persian spelling need it exactly there; anywhere else it is invisible
# and only makes two equal-looking titles or names differ.
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                      AfterValidator(_one_line)]
PageText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1200), AfterValidator(_text_lines)]
SceneText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
                      AfterValidator(_text_lines)]


def is_slug(value: str) -> bool:
    return bool(_SLUG_RE.fullmatch(value))


class BookFormat(BaseModel):
    """Trim size and print geometry, in inches. Defaults: 8.5 x 8.5 in, 0.125 in bleed, 300 DPI."""

    model_config = ConfigDict(extra="forbid")

    trim_width_in: float = Field(8.5, ge=4.0, le=14.0)
    trim_height_in: float = Field(8.5, ge=4.0, le=14.0)
    bleed_in: float = Field(0.125, ge=0.0, le=0.5)
    safe_margin_in: float = Field(0.5, ge=0.125, le=1.5)
    dpi: int = Field(300, ge=150, le=600)

    @property
    def page_pixels(self) -> tuple[int, int]:
        """Full-bleed page size in pixels at the print resolution."""
        return (round((self.trim_width_in + 2 * self.bleed_in) * self.dpi),
                round((self.trim_height_in + 2 * self.bleed_in) * self.dpi))


class Character(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Slug
    name: ShortText
    description: SceneText = Field(description="Looks, clothes, colours: repeated in every prompt that shows them.")


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: PageText = Field(description="Words printed on the page; never drawn into the art.")
    scene: SceneText = Field(description="What the illustration shows.")
    characters: list[Slug] = Field(default_factory=list, description="Ids of the characters on this page.")


class Story(BaseModel):
    """A whole book. `book_id` is the partition key; `style` names a folder under data/styles/."""

    model_config = ConfigDict(extra="forbid")

    book_id: Slug
    title: ShortText
    author: ShortText = "bookbug"
    style: Slug
    characters: list[Character] = Field(min_length=1, max_length=8)
    pages: list[Page] = Field(min_length=1, max_length=MAX_PAGES)
    format: BookFormat = Field(default_factory=BookFormat)
    provider: str | None = Field(None, description="Override, as <family>:<model>, e.g. replicate:google/nano-banana-pro")
    seed: int = Field(1234, ge=0, lt=2**31)
    budget_usd: float | None = Field(None, ge=0, description="Stop generating before this book costs more.")

    @field_validator("provider")
    @classmethod
    def _provider_has_family(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.fullmatch(r"[a-z_]+:[A-Za-z0-9_./-]+", value):
            raise ValueError("must look like <family>:<model>, e.g. fal:fal-ai/flux-pro/kontext")
        # Only the plain name table, imported here: stories/ stays free of provider code (and its imports).
        from bookbug_assets.providers.registry import FAMILIES

        family = value.partition(":")[0]
        if family not in FAMILIES:
            raise ValueError(f"unknown provider family {family!r}; choose one of {', '.join(sorted(FAMILIES))}")
        return value

    @model_validator(mode="after")
    def _characters_are_known(self) -> Story:
        ids = [c.id for c in self.characters]
        if len(set(ids)) != len(ids):
            raise ValueError("character ids must be unique")
        for number, page in enumerate(self.pages, start=1):
            for cid in page.characters:
                if cid not in ids:
                    raise ValueError(f"page {number} names unknown character {cid!r} (known: {', '.join(ids)})")
        return self

    @property
    def page_keys(self) -> list[str]:
        return [page_key(n) for n in range(1, len(self.pages) + 1)]

    def page(self, key: str) -> Page:
        return self.pages[int(key) - 1]


def page_key(number: int) -> str:
    """Zero-padded so that page partitions sort and range correctly."""
    return f"{number:03d}"
