"""Cheap, weight-free artifact checks for generated pages, and a pass/fail gate.

Each metric downsamples or crops internally so that a 1024-px page costs a few
milliseconds; the thresholds are starting points calibrated on the synthetic
scenes in ``synthetic.py`` (flat cartoon art), not on real model output, and
should be re-tuned once real accepted/rejected pages exist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ._color import downsample, rgb_to_lab, to_rgb
from .character import CharacterModel, character_similarity
from .style import StyleProfile, style_distance

BLUR_SIDE = 512  # Laplacian variance is scale-dependent, so it is always taken at this size
GRID_SIDE = 512  # native-resolution crop for the grid check
UNIFORM_SIDE = 64  # area-averaging to 64 px erases grain, so noisy grey mush counts as blank
UNIFORM_DE = 8.0
CLIP_SAMPLES = 512  # clipping is per pixel: subsample by stride, never by averaging
CHROMA_SPAN = 48  # max-min channel spread above which a pixel is "coloured"


def _luma(image: Image.Image) -> Image.Image:
    return to_rgb(image).convert("L")


def blur_score(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the luma at a fixed 512-px long side.

    Resampling to one size (up or down) makes the number comparable between a
    512-px thumbnail and a 2048-px print page; it also halves sensor-like
    grain on a 1024-px input, which would otherwise pass for sharpness.
    """
    g = _luma(image)
    w, h = g.size
    s = BLUR_SIDE / max(w, h)
    if s != 1.0:
        g = g.resize((max(3, round(w * s)), max(3, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    a = np.asarray(g, dtype=np.float32)
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def grid_peaks(image: Image.Image, periods: tuple[int, ...] = (8, 16, 32)) -> dict[int, float]:
    """Spectral peak ratio at each period (pixels), the worse of the two axes.

    Latent-diffusion patch grids (FLUX: 16-px packed patches, 8x VAE) and JPEG
    blocks put edges every P pixels, aligned with the image origin. Averaging
    |d/dx| over all rows adds those edges coherently while content edges fall
    at random columns, so the column profile's spectrum shows a spike at
    frequency 1/P. The ratio is the spike over the median of its neighbours:
    ~1 for clean images, tens to hundreds for visible grids. The crop is
    native resolution because resampling would smear an 8-px period.
    """
    g = np.asarray(_luma(image), dtype=np.float32)
    n = (min(g.shape[0], g.shape[1], GRID_SIDE) // max(periods)) * max(periods)
    if n < 4 * max(periods):
        return {p: 0.0 for p in periods}
    y0, x0 = (g.shape[0] - n) // 2, (g.shape[1] - n) // 2
    y0 -= y0 % max(periods)  # keep the crop on the image's own grid phase
    x0 -= x0 % max(periods)
    c = g[y0: y0 + n, x0: x0 + n]
    out = {p: 0.0 for p in periods}
    for profile in (np.abs(np.diff(c, axis=1)).mean(0), np.abs(np.diff(c, axis=0)).mean(1)):
        m = len(profile)
        power = np.abs(np.fft.rfft(profile - profile.mean())) ** 2
        for p in periods:
            b = int(round(m / p))
            lo, hi = max(1, b - 8), min(len(power), b + 9)
            neigh = np.concatenate([power[lo: max(lo, b - 1)], power[b + 2: hi]])
            if len(neigh) == 0:
                continue
            out[p] = max(out[p], float(power[b] / (np.median(neigh) + 1e-9)))
    return out


def grid_periodicity(image: Image.Image) -> float:
    """Largest of :func:`grid_peaks` over 8/16/32-px periods (~1 clean, >> 10 gridded)."""
    return max(grid_peaks(image).values())


def uniformity(image: Image.Image) -> float:
    """Share of the image within 8 dE of its median colour: 1.0 = blank page.

    Safety-filtered and failed generations come back black, white or flat grey.
    """
    lab = rgb_to_lab(np.asarray(downsample(image, UNIFORM_SIDE))).reshape(-1, 3)
    med = np.median(lab, axis=0)
    return float((((lab - med) ** 2).sum(1) <= UNIFORM_DE**2).mean())


def clipping(image: Image.Image, include_neutral: bool = False) -> float:
    """Fraction of pixels with a colour channel pinned at 0 or 255.

    Only coloured pixels count by default: paper white and ink black are
    legitimate in picture books, whereas a red at (255, 0, 0) is what
    over-saturated or over-contrasted output looks like.
    """
    rgb = to_rgb(image)
    step = max(1, max(rgb.size) // CLIP_SAMPLES)
    if step > 1:  # nearest-neighbour picks pixels; any averaging filter would hide pinned ones
        rgb = rgb.resize((max(1, rgb.width // step), max(1, rgb.height // step)), Image.Resampling.NEAREST)
    a = np.asarray(rgb).astype(np.int16)
    pinned = ((a <= 1) | (a >= 254)).any(-1)
    if not include_neutral:
        pinned &= (a.max(-1) - a.min(-1)) >= CHROMA_SPAN
    return float(pinned.mean())


@dataclass(frozen=True)
class SizeCheck:
    ok: bool
    width: int
    height: int
    aspect_error: float  # relative difference of width/height ratios
    reasons: list[str] = field(default_factory=list)


def size_check(image: Image.Image | tuple[int, int], width: int, height: int, aspect_tol: float = 0.02) -> SizeCheck:
    """Right aspect ratio (within ``aspect_tol``) and at least the requested pixels.

    Larger is fine (it downsamples losslessly for print); smaller is not,
    because upscaling a page is visible at 300 dpi.
    """
    w, h = image.size if isinstance(image, Image.Image) else image
    err = abs((w / h) / (width / height) - 1.0)
    reasons = []
    if err > aspect_tol:
        reasons.append(f"wrong aspect: {w}x{h} is {w / h:.3f}, expected {width / height:.3f} (tol {aspect_tol:.0%})")
    if w < width or h < height:
        reasons.append(f"too small: {w}x{h} < {width}x{height}")
    return SizeCheck(not reasons, w, h, float(err), reasons)


@dataclass(frozen=True)
class Thresholds:
    """Gate limits. Defaults from synthetic flat-colour scenes (see module doc):

    * blur: sharp pages 76-480, Gaussian blur r=2 12-36, r=4 1-6;
    * grid: clean pages 1.1-10.5, planted 8/16-px grids 13-1000, JPEG q20 up to 26;
    * clipping: clean < 0.3 %, saturation x3 49-98 %;
    * style distance: same-palette pages 0.10-0.25, other palette 0.34-0.96;
    * character similarity: same character >= 0.70 in 99 % of pairs, while
      18 % of look-alike siblings also reach it. It is a drift alarm, not proof.
    """

    min_blur: float = 40.0
    max_grid: float = 15.0
    max_uniformity: float = 0.95
    max_clipping: float = 0.05
    aspect_tol: float = 0.02
    max_style_distance: float = 0.30
    min_character_similarity: float = 0.70


@dataclass
class QualityReport:
    passed: bool
    reasons: list[str]
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for Dagster metadata / JSON."""
        return asdict(self)


def assess(
    image: Image.Image,
    expected_size: tuple[int, int] | None = None,
    thresholds: Thresholds = Thresholds(),
    *,
    style: StyleProfile | None = None,
    reference: Image.Image | CharacterModel | None = None,
) -> QualityReport:
    """Run every check and collect human-readable reasons for each failure.

    ``style`` and ``reference`` add the consistency checks; pass a
    ``CharacterModel`` rather than the sheet image when assessing many pages,
    so the sheet is analysed once.
    """
    t = thresholds
    reasons: list[str] = []
    metrics: dict[str, float] = {}

    metrics["blur"] = blur = blur_score(image)
    if blur < t.min_blur:
        reasons.append(f"blurred: laplacian variance {blur:.1f} < {t.min_blur:g}")
    peaks = grid_peaks(image)
    period = max(peaks, key=peaks.get)
    metrics["grid"] = peaks[period]
    if peaks[period] > t.max_grid:
        reasons.append(f"grid artifacts: {period}-px period peak {peaks[period]:.1f} > {t.max_grid:g}")
    metrics["uniformity"] = uni = uniformity(image)
    if uni > t.max_uniformity:
        reasons.append(f"blank: {uni:.0%} of the image is one colour (> {t.max_uniformity:.0%})")
    metrics["clipping"] = clip = clipping(image)
    if clip > t.max_clipping:
        reasons.append(f"clipped: {clip:.1%} of pixels have pinned colour channels (> {t.max_clipping:.0%})")
    if expected_size is not None:
        sc = size_check(image, expected_size[0], expected_size[1], t.aspect_tol)
        metrics["aspect_error"] = sc.aspect_error
        reasons.extend(sc.reasons)
    if style is not None:
        metrics["style_distance"] = d = style_distance(image, style)
        if d > t.max_style_distance:
            reasons.append(f"off-style: style distance {d:.2f} > {t.max_style_distance:.2f}")
    if reference is not None:
        metrics["character_similarity"] = s = character_similarity(image, reference)
        if s < t.min_character_similarity:
            reasons.append(f"wrong character: similarity {s:.2f} < {t.min_character_similarity:.2f}")
    return QualityReport(passed=not reasons, reasons=reasons, metrics=metrics)
