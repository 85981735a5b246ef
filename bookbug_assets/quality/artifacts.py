"""Cheap, weight-free artifact checks for generated pages, and a pass/fail gate.

Each metric downsamples or crops internally so that a 1024-px page costs a few
milliseconds; the thresholds are starting points calibrated on the synthetic
scenes in ``synthetic.py`` (flat cartoon art), not on real model output, and
should be re-tuned once real accepted/rejected pages exist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
CLIP_LEVEL = 1  # a channel at <= 1 or >= 254 sits at the limit (one level of slack for encoders' rounding)
# Std (levels) of a channel over a 3x3 window above which it carries texture: the planted over-saturated pages
# (colour x3, contrast x1.5) carry 3-15 in their unpinned channels. Grain on a colour at the limit does not
# count (it takes the channel off the limit), and the area test in `clipping` drops isolated noisy pixels.
CLIP_TEXTURE_SD = 3.0


def _luma(image: Image.Image) -> Image.Image:
    return to_rgb(image).convert("L")


def blur_score(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the luma at a fixed 512-px long side.

    Resampling to one size (up or down) makes the number comparable between a
    512-px thumbnail and a 2048-px print page; it also halves sensor-like
    grain on a 1024-px input, which would otherwise pass for sharpness.
    """
    return _blur(_luma(image))


def _blur(g: Image.Image) -> float:
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
    frequency 1/P. The ratio is the spike over the mean of its neighbours:
    ~1 for clean images, tens to hundreds for visible grids. The crop is
    native resolution because resampling would smear an 8-px period.
    """
    return _grid_peaks(_luma(image), periods)


def _grid_peaks(luma: Image.Image, periods: tuple[int, ...] = (8, 16, 32)) -> dict[int, float]:
    g = np.asarray(luma)
    n = (min(g.shape[0], g.shape[1], GRID_SIDE) // max(periods)) * max(periods)
    if n < 4 * max(periods):
        return {p: 0.0 for p in periods}
    y0, x0 = (g.shape[0] - n) // 2, (g.shape[1] - n) // 2
    y0 -= y0 % max(periods)  # keep the crop on the image's own grid phase
    x0 -= x0 % max(periods)
    c = g[y0: y0 + n, x0: x0 + n].astype(np.float32)  # the crop only: a 2048-px page is 16x its pixels
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
            # The mean, not the median, of the neighbours: on a sparse flat picture (a few edges in one place,
            # as flat styles and preview proofs are) the spectrum ripples down to nulls, the median sinks into
            # them and an ordinary bin reads as a spike (preview proofs reached 16; with the mean <= 4.2).
            out[p] = max(out[p], float(power[b] / (np.mean(neigh) + 1e-9)))
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


def _spread3(m: np.ndarray, op) -> np.ndarray:
    """``op`` (bitwise and / or) over each pixel's 3x3 neighbourhood of a bool or bit-plane image, edges
    repeated (for these ops the same as cutting the window at the border); separable, so 4 ops, not 8."""
    for axis in (0, 1):
        out = m.copy()
        lo, hi = [slice(None)] * m.ndim, [slice(None)] * m.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        op(out[hi], m[lo], out=out[hi])
        op(out[lo], m[hi], out=out[lo])
        m = out
    return m


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood with edges repeated, as rows of 3 then columns of 3 (exact in
    integers, and 4 adds where summing the 9 shifted copies took 8 full-size ones)."""
    p = np.pad(a, ((1, 1), (1, 1)) + ((0, 0),) * (a.ndim - 2), mode="edge")
    v = p[:-2] + p[1:-1] + p[2:]
    return v[:, :-2] + v[:, 1:-1] + v[:, 2:]


def _textured(plane: np.ndarray, where: np.ndarray) -> np.ndarray:
    """std over the 3x3 neighbourhood (edges repeated) > CLIP_TEXTURE_SD, at the pixels ``where`` holds."""
    n = int(np.count_nonzero(where))
    if n == 0:
        return where
    limit = 81 * CLIP_TEXTURE_SD**2
    if n > where.size // 8:  # most of the page: box sums over all of it beat gathering 9 neighbours each
        x = plane.astype(np.int32)
        total = _box3(x)
        # 3x3 variance in exact integers: 81 var = 9 sum(x^2) - sum(x)^2
        return ((9 * _box3(x * x) - total * total) > limit) & where
    p = np.pad(plane, 1, mode="edge").astype(np.int32)
    w = p.shape[1]
    at = np.flatnonzero(where)
    at_padded = at + 2 * (at // plane.shape[1]) + w + 1
    around = np.take(p, at_padded[:, None] + (np.arange(-1, 2)[:, None] * w + np.arange(-1, 2)).ravel())
    total = around.sum(1)
    out = np.zeros_like(where)
    out.reshape(-1)[at] = (9 * (around * around).sum(1) - total * total) > limit
    return out


def clipping(image: Image.Image, include_neutral: bool = False) -> float:
    """Share of pixels whose colour lost detail at the limits of the 8-bit range.

    A channel at 0 or 255 is not by itself a defect: flat and vector styles paint magenta (255, 0, 255), cyan
    and yellow, and a gradient fill can run along a channel at 255. Detail is lost where a channel is pinned
    across a pixel's whole 3x3 neighbourhood while another channel of the same pixels still carries texture
    (std > CLIP_TEXTURE_SD), over an area: the texture was there and the pinned channel cut it off, which is
    what over-saturated or over-contrasted output looks like. Only coloured pixels count that way (a textured
    paper white with red at 255 is still paper). ``include_neutral`` also counts pixels with all three channels
    at the limit, blown white and crushed black, for styles where paper white and ink black are not expected.
    """
    rgb = to_rgb(image)
    step = max(1, max(rgb.size) // CLIP_SAMPLES)
    if step > 1:  # nearest-neighbour picks pixels; any averaging filter would hide pinned ones
        rgb = rgb.resize((max(1, rgb.width // step), max(1, rgb.height // step)), Image.Resampling.NEAREST)
    # Channel planes: numpy reduces a length-3 last axis pixel by pixel, ~50x slower than maxima of planes.
    planes = np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))
    at_limit = [(p <= CLIP_LEVEL) | (p >= 255 - CLIP_LEVEL) for p in planes]
    hi = np.maximum(np.maximum(planes[0], planes[1]), planes[2])
    lo = np.minimum(np.minimum(planes[0], planes[1]), planes[2])
    # The channels' limit flags as bits of one byte: the 3x3 AND of every channel is one pass over one plane.
    bits = at_limit[0].view(np.uint8) | (at_limit[1].view(np.uint8) << 1) | (at_limit[2].view(np.uint8) << 2)
    pinned_around = _spread3(bits, np.bitwise_and) != 0  # a channel at the limit in all 3x3
    lost = ((hi - lo) >= CHROMA_SPAN) & pinned_around  # on a coloured pixel
    if lost.any():  # texture only matters where the rest holds; clean pages stop here
        textured = np.zeros_like(lost)
        for p, pinned in zip(planes, at_limit):
            # A 3x3 window whose values span at most 2 SD cannot have a larger standard deviation (variance
            # <= span^2 / 4), so the flat fills that make up most of a flat page need no variance at all.
            span = _spread3(p, np.maximum) - _spread3(p, np.minimum)
            textured |= _textured(p, lost & ~pinned & (span > 2 * CLIP_TEXTURE_SD))  # in a channel not pinned
        lost &= textured
        # An area, not a line: the anti-aliased edge between two flat colours that share a pinned channel
        # (magenta on cyan) varies too, but only along a 1-3 px line. A morphological opening (3x3 erosion,
        # then dilation) keeps areas of lost detail at their full size and drops lines.
        lost &= _spread3(_spread3(lost, np.bitwise_and), np.bitwise_or)
    if include_neutral:
        lost |= at_limit[0] & at_limit[1] & at_limit[2] & ((hi <= CLIP_LEVEL) | (lo >= 255 - CLIP_LEVEL))
    return float(lost.mean())


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
    * grid: clean pages 1.6-5.6, preview proofs in three palettes 1.4-4.2, planted 8/16-px grids 16-485
      (32-px grids 6.7-41: caught through their 8/16-px harmonics or not at all), JPEG q20 3.6-15;
    * clipping (detail lost at 0/255): clean pages and flat magenta/cyan/yellow drawings (also JPEG q75,
      grain) <= 0.2 %, saturation x3 27-32 %;
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
    # The fields a person set for this run (run config): they win over a book's story and style settings and
    # the style's calibrated limit (quality.book_limits). None: the fields whose values differ from these
    # defaults, so a Thresholds built in code means what it says.
    explicit: frozenset[str] | None = field(default=None, compare=False)

    def set_fields(self) -> frozenset[str]:
        if self.explicit is not None:
            return self.explicit
        return frozenset(f.name for f in fields(self) if f.name != "explicit" and getattr(self, f.name) != f.default)


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

    luma = _luma(image)  # blur and grid both read it
    metrics["blur"] = blur = _blur(luma)
    if blur < t.min_blur:
        reasons.append(f"blurred: laplacian variance {blur:.1f} < {t.min_blur:g}")
    peaks = _grid_peaks(luma)
    period = max(peaks, key=peaks.get)
    metrics["grid"] = peaks[period]
    if peaks[period] > t.max_grid:
        reasons.append(f"grid artifacts: {period}-px period peak {peaks[period]:.1f} > {t.max_grid:g}")
    metrics["uniformity"] = uni = uniformity(image)
    if uni > t.max_uniformity:
        reasons.append(f"blank: {uni:.0%} of the image is one colour (> {t.max_uniformity:.0%})")
    metrics["clipping"] = clip = clipping(image)
    if clip > t.max_clipping:
        reasons.append(f"clipped: {clip:.1%} of pixels lost detail at a pinned colour channel "
                       f"(> {t.max_clipping:.0%})")
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
