"""The `quality:` section of a style's style.yaml or of a story: the quality gate's limits for its books.

Every field is optional: one left out falls through to the next source. For each limit the gate uses the first
that sets it of: the run's config (launchpad, `bookbug book --thresholds`) > the story > the style > the
calibrated default (quality.Thresholds, with the style's own off-style limit from its dataset). A leaf module
(pydantic only), so stories/ and styles.py can both use it without pulling in the image code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualitySection(BaseModel):
    """quality.Thresholds' fields (plus gate_character_on_previews), each optional."""

    model_config = ConfigDict(extra="forbid")

    min_blur: float | None = Field(None, ge=0, description="Laplacian variance at 512 px; below = blurred.")
    max_grid: float | None = Field(None, gt=0, description="Spectral peak at 8/16/32-px periods; above = grid.")
    max_uniformity: float | None = Field(None, gt=0, le=1, description="Share of one colour; above = blank.")
    max_clipping: float | None = Field(None, ge=0, le=1,
                                       description="Share of pixels whose colour lost detail at 0/255.")
    aspect_tol: float | None = Field(None, ge=0, le=1, description="Relative aspect error vs the request.")
    max_style_distance: float | None = Field(None, gt=0, le=1,
                                             description="0 = the style dataset's colours, 1 = nothing in common. "
                                                         "Unset: calibrated from the style's own images.")
    min_character_similarity: float | None = Field(None, ge=0, le=1,
                                                   description="Best-matching region vs the sprite sheet, 0-1.")
    gate_character_on_previews: bool | None = Field(None, description="Gate character similarity on previews "
                                                                      "(which draw tokens, not characters).")

    # The quality judge's limits (quality.judge_models.JudgeThresholds); they apply only when a judge is configured.
    min_identity: int | None = Field(None, ge=0, le=4, description="Judge: least identity score (0-4) of each "
                                                                   "character against its card and the sheet.")
    min_style_match: int | None = Field(None, ge=0, le=4, description="Judge: least style match (0-4).")
    min_scene_match: int | None = Field(None, ge=0, le=4, description="Judge: least scene match (0-4).")
    require_features: bool | None = Field(None, description="Judge: a card feature judged absent fails the image.")
    allow_lettering: bool | None = Field(None, description="Judge: accept lettering drawn in the art.")
    allow_artifacts: bool | None = Field(None, description="Judge: accept anatomy errors, melted faces, "
                                                           "duplicated limbs.")

    def values(self) -> dict[str, float | bool]:
        """The fields this section sets."""
        return self.model_dump(exclude_none=True)
