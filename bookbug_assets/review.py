"""Human review of a book's images: a YAML file per book, a review state in the ArtifactStore.

A person writes `data/reviews/<book_id>.yaml`:

    book_id: pip-and-the-lantern
    require_approval: true            # optional: unapproved images make a DRAFT PDF
    reviewer: sam                     # optional
    sprite_sheet: {decision: approve}
    hero_page: {decision: reject, note: "Olive's spectacles are round and yellow"}
    pages:
      3: {decision: reject, note: "Pip's scarf is red, not blue"}
      4: {decision: approve}

The review sensor validates the file (every error names the file and the field) and folds it
into `books/<book>/review/state.json`. That state is how a rejection reaches generation: each new
rejection bumps the target's `revision` and adds its note, and `reviewed_request` turns
(revision, notes) into a new seed and a prompt that carries the notes. The state outlives the
file's current wording, so an approval after a rejection keeps the regenerated image (same
revision, same seed, a cache hit) instead of falling back to the rejected one.

An approval is bound to the image it was given for (its sha256): regenerate the image and it is
unapproved again, which is what a DRAFT PDF must reflect.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator,
)

from bookbug_assets.input_files import InputFileError, read_mapping, shown, validate
from bookbug_assets.intake import changed_files
from bookbug_assets.watched_folder import read_regular
from bookbug_assets.layout import (
    BOOK_TARGETS, book_targets, current_image_sha, derived_seed, page_number, page_partition, page_target,
    review_state_key, stored_story, verdict_key,
)
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.review_page_keys import is_page_number_key, yaml_page_key_problems
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Slug, Story, is_slug, page_key
from bookbug_assets.stories.text import plain_text_problem

MAX_REVIEW_BYTES = 256_000
MAX_NOTES_IN_PROMPT = 3  # the latest few; an ever-growing prompt would drown the scene


def _one_line(value: str) -> str:
    # A note goes into a provider prompt and a reviewer's name into the state and logs: one line of plain text,
    # by the rule story text follows (stories/text.py: no control, separator, bidi or invisible characters).
    if problem := plain_text_problem(value, allow_newlines=False):
        raise ValueError(problem)
    return value


Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=400), AfterValidator(_one_line)]
ReviewerName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_one_line)]


class ReviewError(InputFileError):
    """A review file that cannot be applied. `problems` is a list of (field, message)."""


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    note: Note = ""

    @model_validator(mode="after")
    def _rejection_has_note(self) -> Decision:
        if self.decision == "reject" and not self.note:
            raise ValueError("a rejection needs a note saying what to fix (it is added to the prompt)")
        return self


class ReviewFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    book_id: Slug
    require_approval: bool = False
    reviewer: ReviewerName = ""
    sprite_sheet: Decision | None = None
    hero_page: Decision | None = None
    pages: dict[int, Decision] = Field(default_factory=dict, description="1-based page number -> decision")

    @field_validator("pages", mode="before")
    @classmethod
    def _keys_are_page_numbers(cls, value: object) -> object:
        # pydantic's lax int would read True as page 1 and 3.0 as page 3, and let 3 and "3" merge into one entry.
        if not isinstance(value, dict):
            return value
        seen: dict[int, object] = {}
        for key in value:
            if not is_page_number_key(key):
                raise ValueError(f"page key {shown(repr(key))} is not a page number; write pages as 1:, 2:, ...")
            number = int(key)
            if number in seen:
                raise ValueError(f"page {number} is listed twice (as {seen[number]!r} and {key!r})")
            seen[number] = key
        return value

    def decisions(self) -> dict[str, Decision]:
        out = {t: getattr(self, t) for t in BOOK_TARGETS if getattr(self, t) is not None}
        out.update({page_target(n): d for n, d in sorted(self.pages.items())})
        return out


class TargetReview(BaseModel):
    """What generation and the PDF need to know about one image's review history."""

    decision: Literal["approve", "reject"] | None = None
    note: str = ""
    revision: int = 0  # rejections so far; 0 = the original seed and prompt
    notes: list[str] = Field(default_factory=list)
    image_sha256: str | None = None  # the image the latest decision was made on
    decided_at: datetime | None = None


class ReviewState(BaseModel):
    book_id: str
    require_approval: bool = False
    reviewer: str = ""
    source: str = ""
    source_sha256: str = ""
    targets: dict[str, TargetReview] = Field(default_factory=dict)


def approved_sha(state: ReviewState, target: str) -> str | None:
    """The bytes a reviewer approved for `target`, if its latest decision is an approval."""
    review = state.targets.get(target)
    return review.image_sha256 if review is not None and review.decision == "approve" else None


def load_state(store: ArtifactStore, book_id: str) -> ReviewState:
    key = review_state_key(book_id)
    return ReviewState.model_validate(store.read_json(key)) if store.exists(key) else ReviewState(book_id=book_id)


def parse_review(data: bytes, source: str, story: Story | None) -> ReviewFile:
    """Validate a review file; `story` (when known) bounds the page numbers."""
    is_yaml = not source.lower().endswith(".json")
    try:
        raw = read_mapping(data, source, ReviewError, MAX_REVIEW_BYTES, "review")
    except ReviewError as exc:
        # `1:` and `yes:` are one key to YAML (true == 1): say which spelling is wrong, not "duplicate key True".
        if is_yaml and exc.problems and all("duplicate key" in m for _, m in exc.problems):
            raise ReviewError(source, yaml_page_key_problems(data.decode("utf-8")) or exc.problems) from None
        raise
    if is_yaml:
        key_problems = yaml_page_key_problems(data.decode("utf-8"))  # read_mapping decoded and bounded it
        if key_problems:
            raise ReviewError(source, key_problems)
    review = validate(ReviewFile, raw, source, ReviewError, root="review")
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if review.book_id != stem:
        raise ReviewError(source, [("book_id", f"{review.book_id!r} does not match the file name {stem!r}")])
    if story is not None:
        bad = [n for n in review.pages if not 1 <= n <= len(story.pages)]
        if bad:
            raise ReviewError(source, [(f"pages.{n}", f"page {n} does not exist; the book has {len(story.pages)} "
                                                      "pages") for n in bad])
    return review


def fold_review(state: ReviewState, review: ReviewFile, store: ArtifactStore, source: str,
                source_sha256: str) -> tuple[ReviewState, list[str], list[str]]:
    """(new state, targets newly rejected, targets newly approved). Pure apart from reading records.

    A rejection is new when the target was not already rejected with this very note: rewording the
    note asks for another try, an unchanged file never regenerates twice. The exception is a replay: the
    very file already folded (its sha256 is the state's source) coming back because the sensor tick that
    folded it failed before committing its cursor. Its decisions are reported again, so the runs that tick
    should have requested are requested now (a regeneration already done is a cache hit).
    """
    now = datetime.now(timezone.utc)
    replay = bool(state.source_sha256) and state.source_sha256 == source_sha256
    new = state.model_copy(deep=True, update={"require_approval": review.require_approval, "source": source,
                                               "reviewer": review.reviewer, "source_sha256": source_sha256})
    rejected, approved = [], []
    decisions = review.decisions()
    for target, decision in decisions.items():
        current = new.targets.get(target, TargetReview())
        image = current_image_sha(store, review.book_id, target)
        if decision.decision == "reject":
            if current.decision == "reject" and current.note == decision.note:
                if replay:
                    rejected.append(target)
                continue
            notes = [n for n in current.notes if n != decision.note] + [decision.note]
            new.targets[target] = current.model_copy(update={
                "decision": "reject", "note": decision.note, "revision": current.revision + 1, "notes": notes,
                "image_sha256": image, "decided_at": now})
            rejected.append(target)
        else:
            if current.decision == "approve" and current.image_sha256 == image:
                if replay:
                    approved.append(target)
                continue
            new.targets[target] = current.model_copy(update={
                "decision": "approve", "note": decision.note, "image_sha256": image, "decided_at": now})
            approved.append(target)
    for target, current in new.targets.items():
        if target not in decisions and current.decision is not None:
            # Removed from the file: the decision is withdrawn; the revision (and its image) stays.
            new.targets[target] = current.model_copy(update={"decision": None, "note": ""})
    return new, rejected, approved


def overrides_gate(store: ArtifactStore, book_id: str, target: str) -> bool:
    """An approval of an image its quality gate refused: the asset must run again to accept it."""
    key = verdict_key(book_id, target)
    return store.exists(key) and not store.read_json(key).get("accepted", True)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reviewed_request(store: ArtifactStore, story: Story, target: str, request: ImageRequest,
                     attempt: int = 1, state: ReviewState | None = None) -> ImageRequest:
    """The request for `target` after its review history and quality retries.

    Revision 0, attempt 1 returns `request` unchanged, so books nobody reviewed keep their cache.
    Otherwise the seed is derived from (target, revision, attempt) and the reviewer's latest notes
    are appended to the prompt.
    """
    review = (state or load_state(store, story.book_id)).targets.get(target)
    revision = review.revision if review else 0
    if revision == 0 and attempt == 1:
        return request
    update: dict = {"seed": derived_seed(story, f"{target}/review-{revision}/attempt-{attempt}")}
    if revision:
        notes = "; ".join(review.notes[-MAX_NOTES_IN_PROMPT:])
        update["prompt"] = f"{request.prompt} Reviewer notes, fix these: {notes}."
    return request.model_copy(update=update)


class Approval(BaseModel):
    required: bool
    unapproved: list[str]

    @property
    def draft(self) -> bool:
        return self.required and bool(self.unapproved)


def approval_status(store: ArtifactStore, story: Story, required: bool = False) -> Approval:
    """Which images still lack an approval of their *current* bytes.

    Required when the caller says so (BOOKBUG_REQUIRE_APPROVAL) or the book's review file does.
    """
    state = load_state(store, story.book_id)
    required = required or state.require_approval
    unapproved = []
    for target in book_targets(story):
        review = state.targets.get(target)
        image = current_image_sha(store, story.book_id, target)
        if review is None or review.decision != "approve" or image is None or review.image_sha256 != image:
            unapproved.append(target)
    return Approval(required=required, unapproved=unapproved)


def refused_images(store: ArtifactStore, book_id: str, current: dict[str, str]) -> list[str]:
    """Targets (of `current`: target -> image sha256) whose very bytes a reviewer rejected or a gate refused.

    What book_pdf must not print: a rejected page whose redraw failed still has its old record.
    """
    state = load_state(store, book_id)
    verdicts = load_verdicts(store, book_id)
    refused = []
    for target, sha in current.items():
        review = state.targets.get(target)
        verdict = verdicts.get(target)
        if review is not None and review.decision == "reject" and review.image_sha256 == sha:
            refused.append(f"{target} (rejected in review)")
        elif verdict is not None and not verdict.accepted and verdict.image_sha256 == sha:
            refused.append(f"{target} (failed its quality gate: {'; '.join(verdict.failures) or 'see its check'})")
    return refused


# --- review files, as the review sensor applies them ----------------------------------------------------------

REVIEW_SUFFIXES = (".yaml", ".yml")


def reviews_dir_for(stories_dir: Path, configured: str | None = None) -> Path:
    """Configured folder, else $BOOKBUG_REVIEWS_DIR, else `reviews/` beside the stories folder."""
    folder = configured or os.environ.get("BOOKBUG_REVIEWS_DIR")
    return Path(folder) if folder else stories_dir.parent / "reviews"


def regeneration_keys(story: Story, targets: list[str]) -> set[tuple[str, str | None]]:
    """(asset, partition) for the reviewed images and everything drawn from them."""
    book = story.book_id
    all_pages = {("book_pages", page_partition(book, k)) for k in story.page_keys}
    keys: set[tuple[str, str | None]] = {("book_pdf", book)}
    for target in targets:
        if target == "sprite_sheet":
            keys |= {("sprite_sheet", book), ("hero_page", book)} | all_pages
        elif target == "hero_page":
            keys |= {("hero_page", book)} | all_pages
        else:
            keys.add(("book_pages", page_partition(book, page_key(page_number(target)))))
    return keys


def apply_review_file(path: Path, store: ArtifactStore) -> tuple[Story, list[str], list[str], list[str]]:
    """Validate and fold one file into its book's state; returns (story, rejected, approved, overridden).

    `overridden`: approvals of images their quality gate refused (the asset runs again to accept them).

    Raises ReviewError, leaving the stored state untouched, when the file cannot be applied.
    """
    size = path.stat().st_size
    if size > MAX_REVIEW_BYTES:  # never read a huge upload into memory
        raise ReviewError(path.name, [("", f"file is {size:,} bytes; a review must be under {MAX_REVIEW_BYTES:,}")])
    data = read_regular(path.parent, path.name, MAX_REVIEW_BYTES)  # a regular file in the folder, never a link
    stem = path.stem
    if not is_slug(stem):
        raise ReviewError(path.name, [("", "the file name must be <book_id>.yaml with a book id of a-z, 0-9, -")])
    story = stored_story(store, stem)
    review = parse_review(data, path.name, story)
    if story is None:
        raise ReviewError(path.name, [("book_id", f"book {stem!r} has no materialized story yet; review it after "
                                                  "it renders")])
    state, rejected, approved = fold_review(load_state(store, stem), review, store, path.name, file_sha256(data))
    missing = [t for t in approved if state.targets[t].image_sha256 is None]
    if missing:
        raise ReviewError(path.name, [(t if t in BOOK_TARGETS else f"pages.{page_number(t)}",
                                       "cannot approve an image that has not been rendered") for t in missing])
    # Read before the state is written: if this raises, nothing changed and the file is rejected whole.
    overridden = [t for t in approved if overrides_gate(store, stem, t)]
    store.write_json(review_state_key(stem), state.model_dump(mode="json"))  # one atomic write: all or nothing
    return story, rejected, approved, overridden


def scan_reviews(folder: Path, store: ArtifactStore, seen: dict[str, str], log):
    """(changes [(story, rejected, approved)], rejections [(name, reason)], new cursor state)."""
    changes, failures = [], []
    changed, state = changed_files(folder, seen, MAX_REVIEW_BYTES, log)
    for path in changed:
        try:
            if path.suffix.lower() not in REVIEW_SUFFIXES:
                raise ReviewError(path.name, [("", f"unsupported extension {path.suffix!r}; use .yaml")])
            changes.append(apply_review_file(path, store))
        except ReviewError as exc:
            failures.append((path.name, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the sensor
            failures.append((path.name, f"{path.name}: could not be applied: {type(exc).__name__}: {exc}"))
    return changes, failures, state
