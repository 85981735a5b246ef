"""The story format: what a children's-book app hands over. Pydantic at the edge, strict.

A story file (JSON or YAML) becomes one book partition. Everything that later reaches a path,
a partition key or a prompt passes through these models first.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from bookbug_assets.quality_section import QualitySection
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
# A visible trait the quality judge looks for on every page ("red knitted scarf"): one line, short enough to
# check at a glance.
Feature = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
                    AfterValidator(_one_line)]
MAX_FEATURES = 12
# The back cover's blurb: a few sentences under the back-cover art, clear of the barcode box.
BackCoverText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=600),
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


class PrintTarget(BaseModel):
    """Where the book is printed: the platform's rules (print_platforms.py) size the interior and the cover."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["kdp", "ingramspark", "lulu", "generic"]
    binding: Literal["paperback", "hardcover"] = "paperback"
    paper: Literal["white", "cream", "premium-color", "standard-color"] = "premium-color"


class Character(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Slug
    name: ShortText
    description: SceneText = Field(description="Looks, clothes, colours: repeated in every prompt that shows them.")
    features: list[Feature] = Field(
        default_factory=list, max_length=MAX_FEATURES,
        description="Short visible traits the quality judge checks on every page, e.g. 'red knitted scarf'. "
                    "Without them the judge works from the description.")

    @field_validator("features")
    @classmethod
    def _features_are_distinct(cls, value: list[str]) -> list[str]:
        # The judge answers per feature by its text: two spellings of one trait would get two answers.
        seen = set()
        for feature in value:
            if feature.casefold() in seen:
                raise ValueError(f"feature {feature!r} is listed twice")
            seen.add(feature.casefold())
        return value


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
    quality: QualitySection | None = Field(None, description="This book's quality-gate limits; they win over the "
                                                             "style's, and run config wins over them.")
    print: PrintTarget | None = Field(None, description="The print-on-demand target; absent means the generic proof.")
    back_cover_text: BackCoverText | None = Field(None, description="Plain text printed on the back cover.")

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
    def _print_target_is_offered(self) -> Story:
        if self.print is None:
            return self
        # Only the plain rule table, imported here: the platform rules need nothing from stories/.
        from bookbug_assets.print_platforms import target_problem

        problem = target_problem(self.print.platform, self.print.binding, self.print.paper,
                                 self.format.trim_width_in, self.format.trim_height_in)
        if problem:
            where, why = problem
            name = "format.trim_width_in x format.trim_height_in" if where == "trim" else f"print.{where}"
            raise ValueError(f"{name}: {why}")
        return self

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
