"""The book's storage layout: every ArtifactStore key, the records kept there, and the target names.

No other module spells a key. A target is one image of a book: `sprite_sheet`, `hero_page` or
`page-NNN`; its name is also what the image's seed derives from (rendering.derived_seed), what
its quality verdict and review decision are filed under, and what a review file's `pages: {N: ..}`
maps to. Keeping the three uses on one spelling is what lets an unreviewed book keep its cache.

    books/<book>/story.json                 StoryRecord: the validated story and its source file's hash
    books/<book>/sprite_sheet.json          GenerationRecord of the kept sprite sheet (kept even if it failed)
    books/<book>/hero_page.json             ... of the hero page
    books/<book>/pages/<NNN>.json           PageRecord: an accepted page and what it was drawn for
    books/<book>/quality/<target>.json      QualityVerdict of the target's current image
    books/<book>/review/state.json          ReviewState folded from the book's review files
    books/<book>/lifecycle.json             BookState: active, delivered or archived (lifecycle.py)
    books/<book>/<book>.pdf                 the reading / print PDF; provenance.json beside it
    books/<book>/print/<platform>-interior.pdf | -cover.pdf | -print.json   files for a print platform
    styles/<style>/dataset.json | lora.json | quality_profile-<hash>.json | trained/<job>.json
    cache/<k[:2]>/<k>.json, journal/<k>.json   generation's content-hash cache and its job journal
    cache/outcomes/<k[:2]>/<k>.json         a request refused (or failed for its input): not paid for again
    cache/uploads/<account>/<sha>.json      a reference's upload URL and expiry on a provider's file storage
    cache/judge/<k[:2]>/<k>.json            a judge's verdict on an image (judge_cache_key)
    cache/thumbnails/<sha[:2]>/<sha>-<px>.jpg   the UI's thumbnail of a stored image
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, Field

from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story, page_key

BOOK_TARGETS = ("sprite_sheet", "hero_page")  # the references every page is drawn against
PAGE_TARGET_PREFIX = "page-"


# --- targets and partition keys ---------------------------------------------------------------------------

def page_target(number: int | str) -> str:
    """'page-003' for page 3 (or its slot key '003')."""
    return f"{PAGE_TARGET_PREFIX}{page_key(int(number))}"


def is_page_target(target: str) -> bool:
    return target.startswith(PAGE_TARGET_PREFIX)


def page_number(target: str) -> int:
    """3 for 'page-003'."""
    return int(target.removeprefix(PAGE_TARGET_PREFIX))


def book_targets(story: Story) -> list[str]:
    """Every image of a book, references first: the order approvals and provenance list them in."""
    return [*BOOK_TARGETS, *(page_target(k) for k in story.page_keys)]


def target_label(target: str) -> str:
    """How a person reads a target: 'page 3', 'hero_page'."""
    return f"page {page_number(target)}" if is_page_target(target) else target


def derived_seed(story: Story, what: str) -> int:
    """Stable per image, different between images, changed only by the story's seed."""
    return int.from_bytes(hashlib.sha256(f"{story.seed}:{what}".encode()).digest()[:4], "big") % 2**31


def page_partition(book_id: str, page: str) -> str:
    """The string form of the book x page partition key ('book|003'), as Dagster's MultiPartitionKey spells it
    for the dimensions (book, page); also the ledger's partition column for pages."""
    return f"{book_id}|{page}"


def split_page_partition(key: str) -> tuple[str, str]:
    book_id, _, page = str(key).partition("|")
    return book_id, page


# --- keys ---------------------------------------------------------------------------------------------------

def book_key(book_id: str, name: str) -> str:
    return f"books/{book_id}/{name}"


def story_key(book_id: str) -> str:
    return book_key(book_id, "story.json")


def record_key(book_id: str, target: str) -> str:
    """Where the current image record of a target lives."""
    if is_page_target(target):
        return book_key(book_id, f"pages/{target.removeprefix(PAGE_TARGET_PREFIX)}.json")
    return book_key(book_id, f"{target}.json")


def verdict_key(book_id: str, target: str) -> str:
    return book_key(book_id, f"quality/{target}.json")


def verdicts_prefix(book_id: str) -> str:
    return book_key(book_id, "quality")


def review_state_key(book_id: str) -> str:
    return book_key(book_id, "review/state.json")


def book_state_key(book_id: str) -> str:
    return book_key(book_id, "lifecycle.json")


def pdf_key(book_id: str) -> str:
    return book_key(book_id, f"{book_id}.pdf")


def pdf_inputs_key(book_id: str) -> str:
    """What the book's PDF was made from (print_book.pdf_inputs), so an unchanged book is not laid out again."""
    return book_key(book_id, "pdf_inputs.json")


def provenance_key(book_id: str) -> str:
    return book_key(book_id, "provenance.json")


def print_file_key(book_id: str, platform: str, part: str) -> str:
    """A file for a print platform: part is "interior.pdf", "cover.pdf" or "print.json" (what was padded, sized)."""
    return book_key(book_id, f"print/{platform}-{part}")


def style_key(style: str, name: str) -> str:
    return f"styles/{style}/{name}"


def style_dataset_key(style: str) -> str:
    return style_key(style, "dataset.json")


def style_profile_key(style: str) -> str:
    """The materialized style_lora profile (prompt prefix, trigger word, palette, LoRA)."""
    return style_key(style, "lora.json")


def style_quality_profile_key(style: str, dataset_hash: str) -> str:
    return style_key(style, f"quality_profile-{dataset_hash[:16]}.json")


def cache_key_path(request_key: str) -> str:
    return f"cache/{request_key[:2]}/{request_key}.json"


def journal_path(request_key: str) -> str:
    return f"journal/{request_key}.json"


def upload_record_path(account: str, sha256: str) -> str:
    """Where a reference uploaded to a provider's file storage is remembered (its URL and expiry), so the hero
    page's run and the pages' run, separate processes, upload each reference once per book."""
    return f"cache/uploads/{account.replace(':', '-')}/{sha256}.json"


def thumbnail_key(image_sha256: str, size_px: int) -> str:
    """The small JPEG the UI shows of an image, kept so a rerun does not decode the full image again."""
    return f"cache/thumbnails/{image_sha256[:2]}/{image_sha256}-{size_px}.jpg"


def assessment_cache_key(question_sha256: str) -> str:
    """Where the weight-free gate's assessment of one image against one book's references and limits is kept."""
    return f"cache/assessments/{question_sha256[:2]}/{question_sha256}.json"


def judge_cache_key(image_sha256: str, reference_shas: list[str], prompt_sha256: str, judge_version: str,
                    model: str) -> str:
    """Where a judge's verdict on exactly these bytes, references, prompt, prompt version and model is kept."""
    parts = [image_sha256, *sorted(reference_shas), prompt_sha256, judge_version, model]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return f"cache/judge/{digest[:2]}/{digest}.json"


def outcome_path(request_key: str) -> str:
    """A request the provider refused, or failed because of its input: remembered so a rerun does not pay again."""
    return f"cache/outcomes/{request_key[:2]}/{request_key}.json"


# --- records ------------------------------------------------------------------------------------------------

class GenerationRecord(BaseModel):
    """What an asset keeps about an image: where it is and exactly what made it."""

    request_key: str
    image_key: str
    image_sha256: str
    provider: str
    model: str
    version: str | None = None
    seed: int
    prompt: str
    width: int
    height: int
    job_id: str | None = None
    remote_url: str | None = None
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hit: bool = False
    attempts: int = 1
    refusals: list[str] = []
    lora: str | None = None
    variant: str = ""  # the provider's lossy settings it was drawn with (ImageRequest.variant), "" for none
    is_preview: bool = False
    created_at: datetime


class PageRecord(GenerationRecord):
    """An accepted page, with what it was drawn against: {"story": story sha256, role: reference sha256}.

    book_pdf compares `drawn_for` with the book now, so a page a failed rerun left behind (drawn for an
    earlier story or sprite sheet) is never printed as current."""

    drawn_for: dict[str, str] = Field(default_factory=dict)


class StoryRecord(BaseModel):
    """The `story` asset's output: the validated story and which file (and bytes) it came from."""

    source: str
    sha256: str
    story: Story


# --- reading a book's records -------------------------------------------------------------------------------

class NotMaterialized(LookupError):
    """An upstream record a step needs is not in the store yet; the message says what to materialize."""


def load_story_record(store: ArtifactStore, book_id: str) -> StoryRecord:
    key = story_key(book_id)
    if not store.exists(key):
        raise NotMaterialized(f"book {book_id!r}: no story materialized yet; materialize `story` for this book "
                              "first")
    return StoryRecord.model_validate(store.read_json(key))


def load_story(store: ArtifactStore, book_id: str) -> Story:
    return load_story_record(store, book_id).story


def stored_story(store: ArtifactStore, book_id: str) -> Story | None:
    """The book's materialized story, or None (a review of a book that has not rendered yet)."""
    return load_story(store, book_id) if store.exists(story_key(book_id)) else None


def load_record(store: ArtifactStore, book_id: str, target: str) -> GenerationRecord:
    key = record_key(book_id, target)
    if not store.exists(key):
        raise NotMaterialized(f"book {book_id!r}: {target} is not materialized yet; materialize it first")
    return GenerationRecord.model_validate(store.read_json(key))


def load_page_records(store: ArtifactStore, story: Story) -> dict[str, PageRecord]:
    """page-NNN -> its accepted record, for the pages that have one."""
    out = {}
    for key in story.page_keys:
        path = record_key(story.book_id, page_target(key))
        if store.exists(path):
            out[page_target(key)] = PageRecord.model_validate(store.read_json(path))
    return out


def current_image_sha(store: ArtifactStore, book_id: str, target: str) -> str | None:
    """The target's image now: its record, else the image its quality gate failed (so a person can approve
    that image over the gate)."""
    for key in (record_key(book_id, target), verdict_key(book_id, target)):
        if store.exists(key):
            return store.read_json(key).get("image_sha256")
    return None
