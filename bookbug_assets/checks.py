"""Quality gates: asset checks on sprite_sheet, hero_page, every page partition, and a print preflight.

The measures are the weight-free ones in bookbug_assets.quality (style distance to the style
dataset's Lab palette, character similarity to the sprite sheet, artifact heuristics) plus size
and aspect. This module decides what they mean for a book: which apply to which image, the
thresholds (QualityThresholds, run config with calibrated defaults) and the verdict record each
image leaves in the ArtifactStore (`books/<book>/quality/<target>.json`) for the cost report, the
review sensor and golden runs.

Pages are checked inside the book_pages step (assets/pages.py): the step already holds the image,
regenerates a page that fails, and reports one check evaluation per page partition. The sprite
sheet and hero page have standalone checks here. Page and reference checks are blocking: a
failed image stops its dependents in the same run, and a page that fails keeps no page record,
so book_pdf cannot pick it up from a later run either.

Preview renders are storyboard tokens, not characters: on them the character measure is
reported but not gated, and the metadata says so.
"""


import io
from dataclasses import dataclass, fields
from datetime import datetime, timezone

import dagster as dg
from PIL import Image
from pydantic import BaseModel, Field

from bookbug_assets.assets._shared import book_key, load_record, load_story
from bookbug_assets.partitions import book_pages_partitions, books_partitions
from bookbug_assets.pdf import PdfSpec
from bookbug_assets.preflight import preflight_pdf
from bookbug_assets.quality import (
    CharacterModel, StyleProfile, Thresholds, assess, character_model, character_similarity, style_distance,
    style_profile,
)
from bookbug_assets.resources import BookbugStorage
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story
from bookbug_assets.styles import dataset_hash, dataset_items, load_style_config

PAGE_CHECK = "page_quality"
page_check_spec = dg.AssetCheckSpec(
    PAGE_CHECK, asset="book_pages", blocking=True, partitions_def=book_pages_partitions,
    description="Style distance to the style dataset, character similarity to the sprite sheet, artifacts, size. "
                "Evaluated per page inside the book_pages step, after up to max_attempts regenerations.")


_DEFAULTS = Thresholds()  # the quality package's calibration is the single source of the defaults


class QualityThresholds(dg.Config):
    """quality.Thresholds as run config; defaults calibrated there and checked here against preview
    renders (must pass) and planted bad images (must fail). See README, "Quality gates"."""

    min_blur: float = Field(_DEFAULTS.min_blur, description="Laplacian variance at 512 px; below = blurred.")
    max_grid: float = Field(_DEFAULTS.max_grid, description="Spectral peak at 8/16/32-px periods; above = grid.")
    max_uniformity: float = Field(_DEFAULTS.max_uniformity, description="Share of one colour; above = blank.")
    max_clipping: float = Field(_DEFAULTS.max_clipping, description="Share of coloured pixels pinned at 0/255.")
    aspect_tol: float = Field(_DEFAULTS.aspect_tol, description="Relative aspect error vs the request.")
    max_style_distance: float = Field(_DEFAULTS.max_style_distance,
                                      description="0 = the style dataset's colours, 1 = nothing in common.")
    min_character_similarity: float = Field(_DEFAULTS.min_character_similarity,
                                            description="Best-matching region vs the sprite sheet, 0-1.")
    gate_character_on_previews: bool = Field(False, description="Previews draw tokens; their similarity is "
                                                                "reported, not gated, unless this is set.")

    def gate(self) -> Thresholds:
        return Thresholds(**{f.name: getattr(self, f.name) for f in fields(Thresholds)})


class Assessment(BaseModel):
    passed: bool
    scores: dict[str, float] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class QualityReference:
    """What a book's images are judged against, computed once per book per step."""

    style: StyleProfile
    character: CharacterModel | None  # None when the sprite sheet looks blank
    sheet_is_preview: bool = False  # a preview sheet holds tokens: nothing to compare a character with


def style_quality_profile(store: ArtifactStore, storage: BookbugStorage, style: str) -> StyleProfile:
    """The style dataset's colour profile, cached in the store under the dataset's hash."""
    style_dir = storage.styles_path / style
    items = dataset_items(style_dir)
    key = f"styles/{style}/quality_profile-{dataset_hash(items, load_style_config(style_dir))[:16]}.json"
    if store.exists(key):
        return StyleProfile.from_dict(store.read_json(key))
    images = [Image.open(style_dir / "images" / item.image) for item in items]
    profile = style_profile(images)
    store.write_json(key, profile.to_dict())
    return profile


def quality_reference(store: ArtifactStore, storage: BookbugStorage, story: Story) -> QualityReference:
    sheet = load_record(store, story.book_id, "sprite_sheet")
    return QualityReference(style_quality_profile(store, storage, story.style),
                            _character_model(store.read_bytes(sheet.image_key)), sheet.is_preview)


def _character_model(data: bytes) -> CharacterModel | None:
    try:
        return character_model(Image.open(io.BytesIO(data)))
    except ValueError:  # a blank sheet: its own check fails it; pages cannot be compared to it
        return None


def assess_image(data: bytes, ref: QualityReference, thresholds: QualityThresholds, *, kind: str,
                 is_preview: bool, has_characters: bool, size: tuple[int, int] | None = None) -> Assessment:
    """quality.assess with what applies to this image gated, and the rest reported with a note why.

    `kind` is sprite_sheet, hero_page or page. A sprite sheet is not judged for style (it is mostly
    plain background) or character (it is the reference); a preview, or any page drawn against a
    preview sheet, is not gated on character similarity (storyboard tokens, not characters).
    """
    image = Image.open(io.BytesIO(data)).convert("RGB")
    gate_style = kind != "sprite_sheet"
    wants_character = kind != "sprite_sheet" and has_characters
    preview = is_preview or ref.sheet_is_preview
    gate_character = (wants_character and ref.character is not None
                      and (not preview or thresholds.gate_character_on_previews))
    report = assess(image, size, thresholds.gate(), style=ref.style if gate_style else None,
                    reference=ref.character if gate_character else None)
    scores = dict(report.metrics)
    notes = []
    if not gate_style:
        scores["style_distance"] = style_distance(image, ref.style)
        notes.append("style distance reported, not gated: a reference sheet is mostly plain background")
    if wants_character and not gate_character:
        if ref.character is None:
            notes.append("character similarity not measured: the sprite sheet looks blank")
        else:
            scores["character_similarity"] = character_similarity(image, ref.character)
            notes.append("character similarity reported, not gated: preview renders draw storyboard tokens, "
                          "not characters")
    return Assessment(passed=report.passed, scores={k: round(float(v), 4) for k, v in scores.items()},
                      failures=list(report.reasons), notes=notes)


class AttemptSummary(BaseModel):
    attempt: int
    seed: int
    image_sha256: str
    cost_usd: float = 0.0
    cache_hit: bool = False
    passed: bool
    failures: list[str] = Field(default_factory=list)


class QualityVerdict(BaseModel):
    """The gate's decision on the image a target has now, with the attempts that led to it."""

    book_id: str
    target: str  # sprite_sheet | hero_page | page-NNN
    passed: bool  # the automatic checks
    accepted: bool  # passed, or a reviewer approved these exact bytes
    image_sha256: str
    image_key: str
    provider: str
    model: str
    seed: int
    scores: dict[str, float] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    attempts: list[AttemptSummary] = Field(default_factory=list)
    winner: int = 1
    stopped: str = ""  # why regeneration stopped early (budget), if it did
    assessed_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def description(self) -> str:
        state = "passed" if self.passed else ("approved by a reviewer over failed checks" if self.accepted
                                             else "failed")
        tried = f" (attempt {self.winner} of {len(self.attempts)})" if len(self.attempts) > 1 else ""
        why = "; ".join(self.failures)
        return f"{self.target} {state}{tried}" + (f": {why}" if why else "") + \
            (f"; regeneration stopped: {self.stopped}" if self.stopped else "")

    def metadata(self) -> dict:
        md = {f"score/{k}": dg.MetadataValue.float(float(v)) for k, v in self.scores.items()}
        return {**md, "accepted": self.accepted, "failures": "; ".join(self.failures) or "none",
                "notes": "; ".join(self.notes) or "none", "winning_attempt": self.winner,
                "attempts": len(self.attempts), "image_sha256": self.image_sha256, "seed": self.seed,
                "stopped": self.stopped or "no"}


def verdict_key(book_id: str, target: str) -> str:
    return book_key(book_id, f"quality/{target}.json")


def save_verdict(store: ArtifactStore, verdict: QualityVerdict) -> None:
    store.write_json(verdict_key(verdict.book_id, verdict.target), verdict.model_dump(mode="json"))


def load_verdicts(store: ArtifactStore, book_id: str) -> dict[str, QualityVerdict]:
    prefix = book_key(book_id, "quality")
    return {k.rsplit("/", 1)[-1].removesuffix(".json"): QualityVerdict.model_validate(store.read_json(k))
            for k in store.list(prefix) if k.endswith(".json")}


def check_evaluation(verdict: QualityVerdict, spec: dg.AssetCheckSpec,
                     partition: str | None) -> dg.AssetCheckEvaluation:
    """One evaluation for one partition: what a step that materializes many partitions can emit."""
    return dg.AssetCheckEvaluation(asset_key=spec.asset_key, check_name=spec.name, passed=verdict.accepted,
                                   metadata=verdict.metadata(), severity=dg.AssetCheckSeverity.ERROR,
                                   description=verdict.description(), blocking=spec.blocking, partition=partition)


class ReferenceCheckConfig(dg.Config):
    thresholds: QualityThresholds = QualityThresholds()


def _reference_check(context, storage: BookbugStorage, config: ReferenceCheckConfig, target: str):
    from bookbug_assets.review import load_state  # review imports this module for verdict_key

    book_id = context.partition_key
    store = storage.store()
    story = load_story(store, book_id)
    record = load_record(store, book_id, target)
    ref = quality_reference(store, storage, story)
    result = assess_image(store.read_bytes(record.image_key), ref, config.thresholds, kind=target,
                          is_preview=record.is_preview, has_characters=True, size=(record.width, record.height))
    review = load_state(store, book_id).targets.get(target)
    approved = bool(review and review.decision == "approve" and review.image_sha256 == record.image_sha256)
    # The asset's own gate may have drawn several attempts for this image: keep that history, with the kept
    # image's entry judged by this check's thresholds (they may differ from the asset's).
    earlier = load_verdicts(store, book_id).get(target)
    kept = earlier is not None and earlier.image_sha256 == record.image_sha256
    winner = earlier.winner if kept else 1
    judged = AttemptSummary(attempt=winner, seed=record.seed, image_sha256=record.image_sha256,
                            cost_usd=record.cost_usd, cache_hit=record.cache_hit, passed=result.passed,
                            failures=result.failures)
    attempts = [judged if a.attempt == winner else a for a in earlier.attempts] if kept else [judged]
    verdict = QualityVerdict(
        book_id=book_id, target=target, passed=result.passed, accepted=result.passed or approved,
        image_sha256=record.image_sha256, image_key=record.image_key, provider=record.provider, model=record.model,
        seed=record.seed, scores=result.scores, failures=result.failures, notes=result.notes,
        attempts=attempts, winner=winner, stopped=earlier.stopped if kept else "")
    save_verdict(store, verdict)
    return dg.AssetCheckResult(passed=verdict.accepted, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=verdict.metadata(), description=verdict.description())


@dg.asset_check(asset="sprite_sheet", partitions_def=books_partitions, blocking=True,
                description="Artifacts (blank, blur, grid, clipping) and size of the character reference sheet; "
                            "style distance reported. Blocking: pages drawn against a broken sheet are wasted.")
def sprite_sheet_quality(context: dg.AssetCheckExecutionContext, storage: BookbugStorage,
                         config: ReferenceCheckConfig) -> dg.AssetCheckResult:
    return _reference_check(context, storage, config, "sprite_sheet")


@dg.asset_check(asset="hero_page", partitions_def=books_partitions, blocking=True,
                description="Style distance, character similarity to the sprite sheet, artifacts and size of the "
                            "cover. Blocking: every page uses it as a reference.")
def hero_page_quality(context: dg.AssetCheckExecutionContext, storage: BookbugStorage,
                      config: ReferenceCheckConfig) -> dg.AssetCheckResult:
    return _reference_check(context, storage, config, "hero_page")


@dg.asset_check(asset="book_pdf", partitions_def=books_partitions, blocking=False,
                description="Print preflight: page, trim and bleed boxes; every image >= 300 ppi at its printed "
                            "size; fonts embedded; text inside the safe area. Says which pages were upscaled.")
def book_pdf_preflight(context: dg.AssetCheckExecutionContext, storage: BookbugStorage) -> dg.AssetCheckResult:
    book_id = context.partition_key
    store = storage.store()
    story = load_story(store, book_id)
    spec = PdfSpec.of(story.format)
    labels = ["cover"] + [f"page {int(k)}" for k in story.page_keys]
    report = preflight_pdf(store.local_path(book_key(book_id, f"{book_id}.pdf")), spec, labels)
    upscaled = upscaled_images(store, story)
    description = "print-ready" if report.passed else "; ".join(report.problems[:10])
    if report.passed and report.watermarks:
        # The layout is what the printer gets; the watermark says this copy is not the one to send.
        description = f"print-ready layout, watermarked {' and '.join(report.watermarks)}: not for print"
    return dg.AssetCheckResult(
        passed=report.passed, severity=dg.AssetCheckSeverity.ERROR, description=description,
        metadata={"pages": len(report.pages), "min_ppi": dg.MetadataValue.float(report.min_ppi or 0.0),
                  "watermarks": ", ".join(report.watermarks) or "none",
                  "fonts_embedded": ", ".join(f"{n}: {'yes' if e else 'NO'}" for n, e in report.fonts.items()),
                  "upscaled": dg.MetadataValue.md("\n".join(f"- {u}" for u in upscaled) or "none"),
                  "report": dg.MetadataValue.md(report.markdown())})


def upscaled_images(store: ArtifactStore, story: Story) -> list[str]:
    """Which images were enlarged to reach print resolution, by how much and how (pdf.py: Lanczos)."""
    need_w, need_h = story.format.page_pixels
    out = []
    targets = [("cover", "hero_page.json")] + [(f"page {int(k)}", f"pages/{k}.json") for k in story.page_keys]
    for label, name in targets:
        key = book_key(story.book_id, name)
        if not store.exists(key):
            continue
        record = store.read_json(key)
        factor = max(need_w / record["width"], need_h / record["height"])
        if factor > 1:
            out.append(f"{label}: {record['width']}x{record['height']} px upscaled x{factor:.2f} (Lanczos)")
    return out
