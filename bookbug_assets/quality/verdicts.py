"""What the gates decide about a book's images: the assessment of one image, the verdict a target keeps.

The measures are the weight-free ones of this package (style distance to the style dataset's Lab
palette, character similarity to the sprite sheet, artifact heuristics) plus size and aspect.
This module decides what they mean for a book: which apply to which image, and the verdict record
each image leaves in the store (layout.verdict_key) for the cost report, the review sensor, golden
runs and book_pdf.

Preview renders are storyboard tokens, not characters: on them the character measure is reported
but not gated, and the notes say so. Nor is their style distance gated: the preview renderer paints its sky
and ground from the style's palette by construction and adds tokens and white caption cards that belong to
no style, so the distance measures the proof's layout (a flat chibi style's previews sit at 0.38-0.62 while
its own images sit at 0.03-0.10 from its profile), and a redraw with a new seed cannot bring it closer.
A real render is gated against the style's own calibrated limit (book_limits).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field, replace

import numpy as np
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, Field

from bookbug_assets.layout import (
    assessment_cache_key, load_record, style_quality_profile_key, verdict_key, verdicts_prefix,
)
from bookbug_assets.quality.artifacts import Thresholds, assess, blur_score
from bookbug_assets.quality.book_limits import BookLimits, book_limits, limits_note, run_limits
from bookbug_assets.quality.character import CharacterModel, character_model, character_similarity
from bookbug_assets.quality.style import StyleProfile, calibrated_style_profile, style_distance
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story
from bookbug_assets.styles import dataset_hash, dataset_items, load_style_config


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
    limits: BookLimits = field(default_factory=BookLimits)  # the book's limits before the run's config
    identity: str = ""  # hash of everything above (assessments of an image against it are cached); "": not cached


def style_quality_profile(store: ArtifactStore, styles_dir: Path, style: str) -> StyleProfile:
    """The style dataset's colour profile with its calibrated off-style limit, cached in the store under the
    dataset's hash (a profile cached before calibration existed is computed again)."""
    style_dir = styles_dir / style
    items = dataset_items(style_dir)
    key = style_quality_profile_key(style, dataset_hash(items, load_style_config(style_dir)))
    if store.exists(key):
        cached = StyleProfile.from_dict(store.read_json(key))
        if cached.calibration is not None and cached.calibration.blur_p5 is not None:
            return cached
    images = [Image.open(style_dir / "images" / item.image) for item in items]
    profile = calibrated_style_profile(images)
    if profile.calibration is not None:
        blur_p5 = float(np.percentile([blur_score(im) for im in images], 5))
        profile = replace(profile, calibration=replace(profile.calibration, blur_p5=blur_p5))
    store.write_json(key, profile.to_dict())
    return profile


def style_limits(store: ArtifactStore, styles_dir: Path, story: Story) -> tuple[StyleProfile, BookLimits]:
    """The book's style profile and its limits: calibrated default < style.yaml quality: < story quality:."""
    profile = style_quality_profile(store, styles_dir, story.style)
    style_quality = load_style_config(styles_dir / story.style).quality
    return profile, book_limits(story.style, profile, style_quality, story.book_id, story.quality)


def quality_reference(store: ArtifactStore, styles_dir: Path, story: Story) -> QualityReference:
    sheet = load_record(store, story.book_id, "sprite_sheet")
    profile, limits = style_limits(store, styles_dir, story)
    return QualityReference(profile, _character_model(store.read_bytes(sheet.image_key)), sheet.is_preview, limits,
                            identity=_reference_identity(profile, limits, sheet.image_sha256, sheet.is_preview))


def sheet_reference(store: ArtifactStore, styles_dir: Path, story: Story) -> QualityReference:
    """What the sprite sheet itself is judged against: the style only (it is the character reference)."""
    profile, limits = style_limits(store, styles_dir, story)
    return QualityReference(profile, None, limits=limits, identity=_reference_identity(profile, limits, None, False))


@functools.cache
def _quality_code() -> str:
    """The measures' own source: a change to any of them assesses every image again, with no version to bump."""
    folder = Path(__file__).parent
    digest = hashlib.sha256()
    for module in sorted(folder.glob("*.py")):
        if not module.name.startswith("judge"):  # the judge caches its verdicts itself (layout.judge_cache_key)
            digest.update(module.name.encode() + module.read_bytes())
    return digest.hexdigest()


def _reference_identity(profile: StyleProfile, limits: BookLimits, sheet_sha256: str | None,
                        sheet_is_preview: bool) -> str:
    # the character model is a function of the sheet's bytes, so the sheet's hash stands for it
    facts = {"code": _quality_code(), "style": profile.to_dict(), "limits": repr(limits), "sheet": sheet_sha256,
             "sheet_is_preview": sheet_is_preview}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def assess_stored_image(store: ArtifactStore, data: bytes, image_sha256: str, ref: QualityReference,
                        thresholds: Thresholds, **how) -> Assessment:
    """assess_image, kept in the store under everything it depends on: the image's bytes (by hash), the
    reference, the run's limits and how the image is judged. An unchanged rerun, and a check after its asset's
    gate, read the assessment instead of measuring the image again (issue: 13 % of a book's time went there)."""
    if not ref.identity:
        return assess_image(data, ref, thresholds, **how)
    question = {"image": image_sha256, "ref": ref.identity, "thresholds": repr(thresholds),
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in how.items()}}
    key = assessment_cache_key(hashlib.sha256(json.dumps(question, sort_keys=True).encode()).hexdigest())
    if store.exists(key):
        return Assessment.model_validate(store.read_json(key))
    result = assess_image(data, ref, thresholds, **how)
    store.write_json(key, result.model_dump(mode="json"))
    return result


def _character_model(data: bytes) -> CharacterModel | None:
    try:
        return character_model(Image.open(io.BytesIO(data)))
    except ValueError:  # a blank sheet: its own check fails it; pages cannot be compared to it
        return None


def assess_image(data: bytes, ref: QualityReference, thresholds: Thresholds, *, kind: str, is_preview: bool,
                 has_characters: bool, size: tuple[int, int] | None = None,
                 gate_character_on_previews: bool | None = None) -> Assessment:
    """quality.assess with what applies to this image gated, and the rest reported with a note why.

    `kind` is sprite_sheet, hero_page or page. A sprite sheet is not judged for style (it is mostly
    plain background) or character (it is the reference); a preview is not judged for style (module doc),
    and a preview, or any page drawn against a preview sheet, not for character similarity (storyboard tokens,
    not characters). `thresholds`' explicitly set fields (run config) win over the book's limits in `ref`;
    `gate_character_on_previews` None: the book's setting applies. The notes name the limits used.
    """
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode != "RGB":  # convert() of an RGB image only copies it: 6 MB for a 2048-px page
        image = image.convert("RGB")
    t, preview_character, sources = run_limits(ref.limits, thresholds, gate_character_on_previews)
    gate_style = kind != "sprite_sheet" and not is_preview
    wants_character = kind != "sprite_sheet" and has_characters
    preview = is_preview or ref.sheet_is_preview
    gate_character = wants_character and ref.character is not None and (not preview or preview_character)
    report = assess(image, size, t, style=ref.style if gate_style else None,
                    reference=ref.character if gate_character else None)
    scores = dict(report.metrics)
    notes = []
    if not gate_style:
        scores["style_distance"] = style_distance(image, ref.style)
        notes.append("style distance reported, not gated: " + (
            "a reference sheet is mostly plain background" if kind == "sprite_sheet" else
            "a preview paints its background from the style's palette and adds tokens and caption cards, so "
            "the distance measures the proof's layout, not the style"))
    if wants_character and not gate_character:
        if ref.character is None:
            notes.append("character similarity not measured: the sprite sheet looks blank")
        else:
            scores["character_similarity"] = character_similarity(image, ref.character)
            notes.append("character similarity reported, not gated: preview renders draw storyboard tokens, "
                          "not characters")
    if note := limits_note(t, preview_character, sources, style_gated=gate_style):
        notes.append(note)
    return Assessment(passed=report.passed, scores={k: round(float(v), 4) for k, v in scores.items()},
                      failures=list(report.reasons), notes=notes)


JUDGE_FAILURE_PREFIXES = ("judge", "not judged")  # failures the quality judge's verdict gave (quality/judge.py)


class AttemptSummary(BaseModel):
    attempt: int
    seed: int
    image_sha256: str
    cost_usd: float = 0.0
    cache_hit: bool = False
    passed: bool
    failures: list[str] = Field(default_factory=list)
    change: str = ""  # what this attempt sent differently from the first (a new seed, a repair by edit)
    judge_reason: str = ""  # the quality judge's one-line reason ("" when it was not asked)
    judge_cost_usd: float = 0.0


class QualityVerdict(BaseModel):
    """The gate's decision on the image a target has now, with the attempts that led to it."""

    book_id: str
    target: str  # sprite_sheet | hero_page | page-NNN (layout's target names)
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
    judge: str = ""  # <family>:<model> of the quality judge, "not asked", or "" with no judge configured
    judge_reason: str = ""
    judge_table: list[dict] = Field(default_factory=list)  # JudgeVerdict.table(): one row per character
    assessed_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def description(self) -> str:
        state = "passed" if self.passed else ("approved by a reviewer over failed checks" if self.accepted
                                             else "failed")
        tried = f" (attempt {self.winner} of {len(self.attempts)})" if len(self.attempts) > 1 else ""
        why = "; ".join(self.failures)
        return f"{self.target} {state}{tried}" + (f": {why}" if why else "") + \
            (f"; regeneration stopped: {self.stopped}" if self.stopped else "")

    def summary(self) -> dict:
        """Plain values for the check's metadata (the Dagster layer types the scores as floats)."""
        return {"accepted": self.accepted, "failures": "; ".join(self.failures) or "none",
                "notes": "; ".join(self.notes) or "none", "winning_attempt": self.winner,
                "attempts": len(self.attempts), "image_sha256": self.image_sha256, "seed": self.seed,
                "stopped": self.stopped or "no", "judge": self.judge or "none configured",
                "judge_reason": self.judge_reason or "none"}


def save_verdict(store: ArtifactStore, verdict: QualityVerdict) -> None:
    store.write_json(verdict_key(verdict.book_id, verdict.target), verdict.model_dump(mode="json"))


def load_verdicts(store: ArtifactStore, book_id: str) -> dict[str, QualityVerdict]:
    return {k.rsplit("/", 1)[-1].removesuffix(".json"): QualityVerdict.model_validate(store.read_json(k))
            for k in store.list(verdicts_prefix(book_id)) if k.endswith(".json")}


def gate_refused(store: ArtifactStore, book_id: str, target: str, image_sha256: str) -> QualityVerdict | None:
    """The verdict that refused exactly these bytes of `target` (failed, not approved over the gate), if any."""
    key = verdict_key(book_id, target)
    if not store.exists(key):
        return None
    verdict = QualityVerdict.model_validate(store.read_json(key))
    return verdict if not verdict.accepted and verdict.image_sha256 == image_sha256 else None


def recheck_reference(store: ArtifactStore, styles_dir: Path, story: Story, target: str, thresholds: Thresholds,
                      *, gate_character_on_previews: bool | None, approved_sha: str | None) -> QualityVerdict:
    """The sprite sheet's or hero page's kept image judged again with a check's own thresholds.

    The asset's own gate may have drawn several attempts for this image: that history is kept, with the kept
    image's entry judged by these thresholds (they may differ from the asset's). `approved_sha`: the bytes a
    reviewer approved for this target, if any.
    """
    record = load_record(store, story.book_id, target)
    # as the asset's own gate judged it: the sheet against the style alone, the hero against the sheet too
    ref = sheet_reference(store, styles_dir, story) if target == "sprite_sheet" else \
        quality_reference(store, styles_dir, story)
    result = assess_stored_image(store, store.read_bytes(record.image_key), record.image_sha256, ref, thresholds,
                                 kind=target, is_preview=record.is_preview, has_characters=True,
                                 size=(record.width, record.height),
                                 gate_character_on_previews=gate_character_on_previews)
    earlier = load_verdicts(store, story.book_id).get(target)
    kept = earlier is not None and earlier.image_sha256 == record.image_sha256
    winner = earlier.winner if kept else 1
    # The quality judge's verdict on these bytes stands (the check has no judge of its own; it is cached anyway).
    judge_lines = [f for f in earlier.failures if f.startswith(JUDGE_FAILURE_PREFIXES)] if kept else []
    failures = result.failures + judge_lines
    passed = result.passed and not judge_lines
    judged = AttemptSummary(attempt=winner, seed=record.seed, image_sha256=record.image_sha256,
                            cost_usd=record.cost_usd, cache_hit=record.cache_hit, passed=passed,
                            failures=failures)
    attempts = [judged.model_copy(update={"change": a.change, "judge_reason": a.judge_reason,
                                          "judge_cost_usd": a.judge_cost_usd}) if a.attempt == winner else a
                for a in earlier.attempts] if kept else [judged]
    verdict = QualityVerdict(
        book_id=story.book_id, target=target, passed=passed,
        accepted=passed or approved_sha == record.image_sha256,
        image_sha256=record.image_sha256, image_key=record.image_key, provider=record.provider, model=record.model,
        seed=record.seed, scores={**result.scores, **({k: v for k, v in earlier.scores.items()
                                                       if k.startswith("judge_")} if kept else {})},
        failures=failures, notes=result.notes, attempts=attempts, winner=winner,
        stopped=earlier.stopped if kept else "",
        **({"judge": earlier.judge, "judge_reason": earlier.judge_reason, "judge_table": earlier.judge_table}
           if kept else {}))
    save_verdict(store, verdict)
    return verdict
