"""Weight-free image quality and consistency metrics (numpy + Pillow only).

* ``style``: colour-scheme profile of a book and distance of a page to it.
* ``character``: is the character on a page the one on its reference sheet.
* ``artifacts``: blur, patch-grid, blank, clipping and size checks, and ``assess``.
* ``synthetic``: seeded, labelled test images for calibrating all of the above.
"""

from .artifacts import (
    QualityReport,
    SizeCheck,
    Thresholds,
    assess,
    blur_score,
    clipping,
    grid_peaks,
    grid_periodicity,
    size_check,
    uniformity,
)
from .character import CharacterMatch, CharacterModel, character_match, character_model, character_similarity
from .style import StyleProfile, dominant_palette, style_components, style_distance, style_profile
from .synthetic import auc

__all__ = [
    "CharacterMatch",
    "CharacterModel",
    "QualityReport",
    "SizeCheck",
    "StyleProfile",
    "Thresholds",
    "assess",
    "auc",
    "blur_score",
    "character_match",
    "character_model",
    "character_similarity",
    "clipping",
    "dominant_palette",
    "grid_peaks",
    "grid_periodicity",
    "size_check",
    "style_components",
    "style_distance",
    "style_profile",
    "uniformity",
]
