"""The quality gates as run config (launchpad, `bookbug book --thresholds`): thresholds and redraw attempts.

The defaults are the quality package's calibration (quality.Thresholds), the single source of the
numbers; README "Quality gates" says how they were measured.
"""

from dataclasses import fields

import dagster as dg
from pydantic import Field

from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.gate import GateSettings

_DEFAULTS = Thresholds()


class QualityThresholds(dg.Config):
    """quality.Thresholds as run config; defaults calibrated there and checked against preview renders
    (must pass) and planted bad images (must fail)."""

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


class ImageGateConfig(dg.Config):
    """Run config of an asset that draws through the gate; its thresholds default to the calibrated ones."""

    max_attempts: int = Field(3, ge=1, le=10, description="Renders per image, counting the first, while it "
                                                          "fails its quality gate and the budget allows.")
    quality_gate: bool = Field(True, description="Off: every rendered image is accepted (no regeneration).")
    thresholds: QualityThresholds = QualityThresholds()

    def settings(self) -> GateSettings:
        return GateSettings(max_attempts=self.max_attempts, quality_gate=self.quality_gate,
                            thresholds=self.thresholds.gate(),
                            gate_character_on_previews=self.thresholds.gate_character_on_previews)


class ReferenceCheckConfig(dg.Config):
    thresholds: QualityThresholds = QualityThresholds()
