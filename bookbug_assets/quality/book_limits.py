"""Which limit each quality check uses for one book, and where that limit came from.

Per limit, the first source that sets it wins: the run's config (launchpad, `bookbug book --thresholds`) >
the story's `quality:` section > the style's style.yaml `quality:` section > the calibrated default
(quality.Thresholds; for max_style_distance, the limit calibrated from the style's own images,
style.calibrate_style_limit; for min_blur, lowered for a style whose own images are soft). The verdict's notes name the source of every limit that is not the shipped
default, and always of the style limit, so a failure can be traced to the number that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.judge_models import JudgeThresholds
from bookbug_assets.quality.style import StyleProfile
from bookbug_assets.quality_section import QualitySection

LIMIT_FIELDS = tuple(f.name for f in fields(Thresholds) if f.name != "explicit")
JUDGE_FIELDS = tuple(JudgeThresholds.model_fields)  # the judge's limits, from the same sources
PREVIEW_CHARACTER = "gate_character_on_previews"
RUN_CONFIG = "run config"
# A soft watercolour style's own images score blur 6-7 (soft-meadow), far under the default 40 that sharp pages
# (76-480) pass: a model that paints the style well would be redrawn as "blurred". The blur limit is lowered
# to half the 5th percentile of the dataset's own scores, never raised above the default, and never under 2
# (planted Gaussian blur r=10 scores 0.5-0.7, a blank page 0).
BLUR_FACTOR = 0.5
BLUR_FLOOR = 2.0


@dataclass(frozen=True)
class BookLimits:
    """A book's limits before the run's config: calibrated default < style.yaml < story."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    sources: dict[str, str] = field(default_factory=dict)  # limit -> where it came from; absent: shipped default
    gate_character_on_previews: bool = False
    judge: JudgeThresholds = field(default_factory=JudgeThresholds)  # used only when a judge is configured


def book_limits(style: str, profile: StyleProfile | None, style_quality: QualitySection | None,
                book_id: str = "", story_quality: QualitySection | None = None) -> BookLimits:
    values: dict[str, float | bool] = {}
    sources: dict[str, str] = {}
    cal = profile.calibration if profile is not None else None
    if cal is not None:
        values["max_style_distance"] = cal.limit
        sources["max_style_distance"] = f"calibrated for style {style!r}: {cal.describe()}"
        if cal.blur_p5 is not None and BLUR_FACTOR * cal.blur_p5 < Thresholds().min_blur:
            values["min_blur"] = max(BLUR_FLOOR, BLUR_FACTOR * cal.blur_p5)
            sources["min_blur"] = (f"calibrated for style {style!r}: its own images are soft, 5th percentile blur "
                                   f"{cal.blur_p5:.1f} x {BLUR_FACTOR:g}" +
                                   (f", raised to the floor {BLUR_FLOOR:g}" if values["min_blur"] == BLUR_FLOOR else ""))
    for section, source in ((style_quality, f"style {style!r} style.yaml quality:"),
                            (story_quality, f"story {book_id!r} quality:")):
        for name, value in (section.values() if section else {}).items():
            values[name] = value
            sources[name] = source
    preview_character = bool(values.pop(PREVIEW_CHARACTER, False))
    judge = JudgeThresholds(**{name: values.pop(name) for name in JUDGE_FIELDS if name in values})
    # explicit=frozenset(): these are the book's settings, not a run's; run config still wins over them.
    return BookLimits(replace(Thresholds(), explicit=frozenset(), **values), sources, preview_character, judge)


def judge_run_limits(limits: BookLimits, run: dict[str, int | bool]) -> tuple[JudgeThresholds, str]:
    """The judge's limits for one image: `run`'s set fields (run config) over the book's; and a note naming each
    limit that is not the shipped default, with its source."""
    chosen = limits.judge.model_copy(update=run)
    sources = {**{n: s for n, s in limits.sources.items() if n in JUDGE_FIELDS}, **{n: RUN_CONFIG for n in run}}
    default = JudgeThresholds()
    parts = [f"{n} {getattr(chosen, n)} ({sources.get(n, 'default')})" for n in JUDGE_FIELDS
             if n in sources or getattr(chosen, n) != getattr(default, n)]
    return chosen, ("judge limits: " + "; ".join(parts)) if parts else ""


def run_limits(limits: BookLimits, run: Thresholds,
               gate_character_on_previews: bool | None) -> tuple[Thresholds, bool, dict[str, str]]:
    """The limits an image is judged with: `run`'s explicitly set fields over the book's.

    `gate_character_on_previews` None: not set for the run (the book's setting applies)."""
    chosen = {name: getattr(limits.thresholds, name) for name in LIMIT_FIELDS}
    sources = dict(limits.sources)
    for name in run.set_fields():
        chosen[name] = getattr(run, name)
        sources[name] = RUN_CONFIG
    preview_character = limits.gate_character_on_previews
    if gate_character_on_previews is not None:
        preview_character = gate_character_on_previews
        sources[PREVIEW_CHARACTER] = RUN_CONFIG
    return Thresholds(**chosen), preview_character, sources


def limits_note(thresholds: Thresholds, preview_character: bool, sources: dict[str, str], *,
                style_gated: bool) -> str:
    """One note line: each limit not at the shipped default (and the style limit when gated), with its source."""
    parts = []
    for name in LIMIT_FIELDS:
        if name == "max_style_distance" and not style_gated:
            continue
        if name in sources or name == "max_style_distance":
            value = getattr(thresholds, name)
            parts.append(f"{name} {value:.3g} ({sources.get(name, 'default')})")
    if PREVIEW_CHARACTER in sources:
        parts.append(f"{PREVIEW_CHARACTER} {str(preview_character).lower()} ({sources[PREVIEW_CHARACTER]})")
    return "limits: " + "; ".join(parts) if parts else ""
