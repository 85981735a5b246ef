"""The quality gates as run config (launchpad, `bookbug book --thresholds`): thresholds and redraw attempts.

A threshold left unset here is the book's: its story's `quality:` section, else its style's style.yaml
`quality:` section, else the calibrated default (quality.Thresholds, with the off-style limit calibrated from
the style's own images); one set here wins over all of them for this run (quality.book_limits). Sensor-started
runs set none, so a style's or story's settings are what tune them. README "Tuning a style's gate".
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.book_limits import JUDGE_FIELDS, LIMIT_FIELDS
from bookbug_assets.quality.gate import GateSettings
from bookbug_assets.quality.judge import JudgeBackend
from bookbug_assets.quality.judge_models import JudgeThresholds

_DEFAULTS = Thresholds()
_JUDGE_DEFAULTS = JudgeThresholds()
_UNSET = " Unset: the story's, else the style's quality: setting, else {default}."


def _describe(text: str, name: str) -> str:
    default = "the limit calibrated from the style's images" if name == "max_style_distance" else \
        f"{getattr(_DEFAULTS, name):g}"
    return text + _UNSET.format(default=default)


def _judge(text: str, name: str) -> str:
    return ("Quality judge (only with BOOKBUG_JUDGE set): " + text +
            _UNSET.format(default=str(getattr(_JUDGE_DEFAULTS, name)).lower()))


class QualityThresholds(dg.Config):
    """quality.Thresholds as run config: a field set here wins over the book's story and style settings."""

    min_blur: Optional[float] = Field(None, description=_describe("Laplacian variance at 512 px; below = blurred.",
                                                                  "min_blur"))
    max_grid: Optional[float] = Field(None, description=_describe("Spectral peak at 8/16/32-px periods; above = "
                                                                  "grid.", "max_grid"))
    max_uniformity: Optional[float] = Field(None, description=_describe("Share of one colour; above = blank.",
                                                                        "max_uniformity"))
    max_clipping: Optional[float] = Field(None, description=_describe("Share of pixels whose colour lost detail at "
                                                                      "0/255.", "max_clipping"))
    aspect_tol: Optional[float] = Field(None, description=_describe("Relative aspect error vs the request.",
                                                                    "aspect_tol"))
    max_style_distance: Optional[float] = Field(None, description=_describe(
        "0 = the style dataset's colours, 1 = nothing in common.", "max_style_distance"))
    min_character_similarity: Optional[float] = Field(None, description=_describe(
        "Best-matching region vs the sprite sheet, 0-1.", "min_character_similarity"))
    gate_character_on_previews: Optional[bool] = Field(None, description="Previews draw tokens; their similarity "
                                                                         "is reported, not gated, unless this is "
                                                                         "set (unset: the story's or style's "
                                                                         "setting, else false).")

    min_identity: Optional[int] = Field(None, ge=0, le=4, description=_judge(
        "least identity score 0-4 of each character against its card and the sprite sheet.", "min_identity"))
    min_style_match: Optional[int] = Field(None, ge=0, le=4, description=_judge("least style match 0-4.",
                                                                                "min_style_match"))
    min_scene_match: Optional[int] = Field(None, ge=0, le=4, description=_judge("least scene match 0-4.",
                                                                                "min_scene_match"))
    require_features: Optional[bool] = Field(None, description=_judge("a card feature judged absent fails.",
                                                                      "require_features"))
    allow_lettering: Optional[bool] = Field(None, description=_judge("accept lettering drawn in the art.",
                                                                     "allow_lettering"))
    allow_artifacts: Optional[bool] = Field(None, description=_judge("accept anatomy errors, melted faces, "
                                                                     "duplicated limbs.", "allow_artifacts"))

    def judge_overrides(self) -> dict:
        """The judge limits set for this run (the book's fill in the rest)."""
        return {name: getattr(self, name) for name in JUDGE_FIELDS if getattr(self, name) is not None}

    def gate(self) -> Thresholds:
        """The set fields, marked explicit, over the defaults (the book's limits fill in the rest)."""
        chosen = {name: getattr(self, name) for name in LIMIT_FIELDS if getattr(self, name) is not None}
        return Thresholds(**chosen, explicit=frozenset(chosen))


class ImageGateConfig(dg.Config):
    """Run config of an asset that draws through the gate; unset thresholds are the book's (see module doc)."""

    max_attempts: int = Field(3, ge=1, le=10, description="Renders per image, counting the first, while it "
                                                          "fails its quality gate and the budget allows.")
    quality_gate: bool = Field(True, description="Off: every rendered image is accepted (no regeneration).")
    thresholds: QualityThresholds = QualityThresholds()

    def settings(self, judge: JudgeBackend | None = None) -> GateSettings:
        """`judge`: the quality judge resource's backend, None for none (the weight-free gates alone)."""
        # gate_character_on_previews None = not set for this run: assess_image takes the book's setting.
        return GateSettings(max_attempts=self.max_attempts, quality_gate=self.quality_gate,
                            thresholds=self.thresholds.gate(),
                            gate_character_on_previews=self.thresholds.gate_character_on_previews,
                            judge=judge, judge_overrides=self.thresholds.judge_overrides())


class ReferenceCheckConfig(dg.Config):
    thresholds: QualityThresholds = QualityThresholds()
