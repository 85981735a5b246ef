"""Weight-free style consistency: does a page use the book's colour scheme?

Research notes found that Lab palettes and Lab
histograms track the colour scheme of an illustration (warm vs cool palettes
separate by ~33 dE) while structure measures do not, so a style profile here is
a palette plus a histogram, built from pages or reference art already accepted.
It cannot see brushwork or line style; a VLM judge is the tool for that.

How far is "off-style" depends on the style: a dataset of near-identical flat drawings sits tight around its
profile, a varied one does not. :func:`calibrate_style_limit` derives a style's limit from its own images
(held out one fold at a time), so a user's own style gets a limit measured on it, not on the sample style.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from ._color import image_lab, kmeans, lab_to_hex, nearest, sq_dist

ANALYSIS_SIDE = 128  # 16k pixels: plenty for colour statistics, ~2 ms to get
HIST_BINS = 8
_L_RANGE = (0.0, 100.0)
# Illustration chroma rarely exceeds |64|; wider a/b bins would waste resolution
# on colours nobody paints, so out-of-range values land in the edge bins.
_AB_RANGE = (-64.0, 64.0)
COVER_DE = 20.0  # a pixel "belongs" to the palette when this close to a swatch
SHIFT_SCALE_DE = 40.0  # palette shift at which the shift term saturates
WEIGHTS = {"histogram": 0.4, "coverage": 0.3, "palette_shift": 0.3}
# Calibration (see calibrate_style_limit). Measured on four synthetic palette families (12-image datasets, 10
# new pages each, 384 px): new same-style pages landed at up to 1.44x the 95th percentile of the datasets'
# held-out distances, so 1.5x keeps a new page of the style inside; pages of another family landed at >= 0.32.
CALIBRATION_PERCENTILE = 95.0
CALIBRATION_FACTOR = 1.5
# Never stricter than the shipped limit, which same-palette new pages (0.10-0.25) pass: a tight dataset of
# near-identical drawings says little about how far a new composition lands.
CALIBRATION_FLOOR = 0.30
# Never looser than this: past it the profile no longer separates the style from a hue-rotated copy of it
# (0.55-0.68 on the flat chibi test style) and the gate would pass nearly anything.
CALIBRATION_CEILING = 0.60
CALIBRATION_FOLDS = 20  # leave-one-out up to 20 images; larger datasets hold out 20 interleaved folds


def _as_list(images: Image.Image | Iterable[Image.Image]) -> list[Image.Image]:
    if isinstance(images, Image.Image):
        return [images]
    out = list(images)
    if not out:
        raise ValueError("need at least one image")
    return out


def _histogram(lab: np.ndarray) -> np.ndarray:
    lab = lab.reshape(-1, 3)
    edges_l = np.linspace(*_L_RANGE, HIST_BINS + 1)[1:-1]
    edges_ab = np.linspace(*_AB_RANGE, HIST_BINS + 1)[1:-1]
    il = np.searchsorted(edges_l, lab[:, 0])
    ia = np.searchsorted(edges_ab, lab[:, 1])
    ib = np.searchsorted(edges_ab, lab[:, 2])
    flat = (il * HIST_BINS + ia) * HIST_BINS + ib
    h = np.bincount(flat, minlength=HIST_BINS**3).astype(np.float64).reshape((HIST_BINS,) * 3)
    # A [1,2,1] blur along each axis: a colour sitting on a bin edge should not
    # flip the distance between "same" and "completely different".
    for axis in range(3):
        padded = np.pad(h, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        lo = np.take(padded, range(0, HIST_BINS), axis=axis)
        mid = np.take(padded, range(1, HIST_BINS + 1), axis=axis)
        hi = np.take(padded, range(2, HIST_BINS + 2), axis=axis)
        h = 0.25 * lo + 0.5 * mid + 0.25 * hi
    return h / h.sum()


def _chi2(p: np.ndarray, q: np.ndarray) -> float:
    """Symmetric chi-square in [0, 1] (0 identical, 1 disjoint supports)."""
    s = p + q
    m = s > 0
    return float(0.5 * (((p - q) ** 2)[m] / s[m]).sum())


def _coverage(lab: np.ndarray, palette: np.ndarray) -> float:
    d = nearest(lab.reshape(-1, 3), palette)[1]
    return float((d <= COVER_DE**2).mean())


@dataclass(frozen=True)
class StyleCalibration:
    """A style's own off-style limit, and how it was derived (for the verdict's notes and the style's assets)."""

    limit: float
    percentile_distance: float  # the CALIBRATION_PERCENTILE of the held-out distances
    max_distance: float
    n_images: int
    folds: int
    bound: str = ""  # "floor" or "ceiling" when one of them set the limit
    # 5th percentile of the dataset's own blur scores (artifacts.blur_score), for the blur limit of a soft
    # style (quality.book_limits); None until measured.
    blur_p5: float | None = None

    def describe(self) -> str:
        raw = self.percentile_distance * CALIBRATION_FACTOR
        held = "leave-one-out" if self.folds == self.n_images else f"{self.folds}-fold held-out"
        how = (f"{CALIBRATION_PERCENTILE:g}th percentile of the {held} distances of the style's {self.n_images} "
               f"images to their profile, {self.percentile_distance:.3f} x {CALIBRATION_FACTOR:g} = {raw:.2f}")
        if self.bound == "floor":
            how += f", raised to the floor {CALIBRATION_FLOOR:.2f}"
        elif self.bound == "ceiling":
            how += (f", capped at {CALIBRATION_CEILING:.2f} (the style's own images are far apart: its colour "
                    "profile separates little)")
        return how

    def to_dict(self) -> dict[str, Any]:
        return {"limit": round(self.limit, 4), "percentile_distance": round(self.percentile_distance, 4),
                "max_distance": round(self.max_distance, 4), "n_images": self.n_images, "folds": self.folds,
                "bound": self.bound, "method": self.describe(),
                "blur_p5": None if self.blur_p5 is None else round(self.blur_p5, 3)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleCalibration:
        blur = d.get("blur_p5")
        return cls(float(d["limit"]), float(d["percentile_distance"]), float(d["max_distance"]), int(d["n_images"]),
                   int(d["folds"]), str(d.get("bound", "")), None if blur is None else float(blur))


@dataclass(frozen=True)
class StyleProfile:
    """Colour fingerprint of a set of accepted images (a book, a style LoRA's data)."""

    palette: np.ndarray  # (k, 3) Lab swatches, most used first
    weights: np.ndarray  # (k,) share of pixels per swatch
    histogram: np.ndarray  # (8, 8, 8) normalised Lab histogram
    baseline_coverage: float  # how well the palette covers its own source images
    n_images: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: StyleCalibration | None = None  # set by calibrated_style_profile

    @property
    def hex_palette(self) -> list[str]:
        return [lab_to_hex(c) for c in self.palette]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, so a profile can be an asset stored by any IO manager."""
        return {
            "palette": self.palette.round(3).tolist(),
            "weights": self.weights.round(6).tolist(),
            "histogram": self.histogram.round(8).ravel().tolist(),
            "baseline_coverage": self.baseline_coverage,
            "n_images": self.n_images,
            "hex_palette": self.hex_palette,
            "meta": dict(self.meta),
            "calibration": self.calibration.to_dict() if self.calibration else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleProfile:
        hist = np.asarray(d["histogram"], dtype=np.float64).reshape((HIST_BINS,) * 3)
        return cls(
            palette=np.asarray(d["palette"], dtype=np.float32),
            weights=np.asarray(d["weights"], dtype=np.float64),
            histogram=hist / hist.sum(),
            baseline_coverage=float(d["baseline_coverage"]),
            n_images=int(d.get("n_images", 1)),
            meta=dict(d.get("meta", {})),
            calibration=StyleCalibration.from_dict(d["calibration"]) if d.get("calibration") else None,
        )


def _image_labs(images: Image.Image | Iterable[Image.Image]) -> list[np.ndarray]:
    return [image_lab(im, ANALYSIS_SIDE).reshape(-1, 3) for im in _as_list(images)]


def _profile_of(labs: list[np.ndarray], k: int, hists: list[np.ndarray] | None = None) -> StyleProfile:
    # Equal pixels per image so one large or busy page cannot own the palette.
    per = max(500, 8000 // len(labs))
    rng = np.random.default_rng(0)
    pooled = np.concatenate(
        [lab if len(lab) <= per else lab[rng.choice(len(lab), per, replace=False)] for lab in labs]
    )
    palette, weights = kmeans(pooled, k)
    hist = np.mean(hists if hists is not None else [_histogram(lab) for lab in labs], axis=0)
    baseline = float(np.mean([_coverage(lab, palette) for lab in labs]))
    return StyleProfile(palette, weights, hist / hist.sum(), baseline, len(labs))


def style_profile(images: Image.Image | Iterable[Image.Image], k: int = 8) -> StyleProfile:
    """Palette (k-means in Lab) and mean Lab histogram of the given images."""
    return _profile_of(_image_labs(images), k)


def calibrate_style_limit(images: Image.Image | Iterable[Image.Image], k: int = 8) -> StyleCalibration:
    """The style's own off-style limit: how far its images land from a profile made without them.

    Each image (or, past CALIBRATION_FOLDS images, each interleaved fold) is held out, a profile is built from
    the rest exactly as :func:`style_profile` builds one, and the held-out image's :func:`style_distance` to it
    is recorded. limit = CALIBRATION_FACTOR x the CALIBRATION_PERCENTILE of those distances, kept within
    [CALIBRATION_FLOOR, CALIBRATION_CEILING] (the constants say why each value). A generated page in the style
    is a new picture, like a held-out one, so this is the spread the gate has to allow.
    """
    labs = _image_labs(images)
    if len(labs) < 2:
        raise ValueError("calibrating a style limit needs at least two images")
    hists = [_histogram(lab) for lab in labs]
    folds = min(len(labs), CALIBRATION_FOLDS)
    distances = []
    for fold in range(folds):
        held = set(range(fold, len(labs), folds))
        rest = [i for i in range(len(labs)) if i not in held]
        profile = _profile_of([labs[i] for i in rest], k, [hists[i] for i in rest])
        distances += [_distance(_components(labs[i], profile, hists[i])) for i in sorted(held)]
    d = np.asarray(distances)
    pct = float(np.percentile(d, CALIBRATION_PERCENTILE))
    raw = pct * CALIBRATION_FACTOR
    limit = float(np.clip(raw, CALIBRATION_FLOOR, CALIBRATION_CEILING))
    bound = "floor" if raw < CALIBRATION_FLOOR else "ceiling" if raw > CALIBRATION_CEILING else ""
    return StyleCalibration(limit, pct, float(d.max()), len(labs), folds, bound)


def calibrated_style_profile(images: Image.Image | Iterable[Image.Image], k: int = 8) -> StyleProfile:
    """:func:`style_profile` with the style's own limit (:func:`calibrate_style_limit`) attached."""
    images = _as_list(images)
    profile = style_profile(images, k)
    if len(images) < 2:
        return profile
    return replace(profile, calibration=calibrate_style_limit(images, k))


def _components(lab: np.ndarray, profile: StyleProfile, hist: np.ndarray | None = None) -> dict[str, float]:
    chi2 = _chi2(_histogram(lab) if hist is None else hist, profile.histogram)
    cov = _coverage(lab, profile.palette)
    # Relative to the profile's own coverage: a painterly style with many
    # gradients never reaches 100 %, and should not be punished for it.
    cov_loss = float(np.clip((profile.baseline_coverage - cov) / max(profile.baseline_coverage, 1e-6), 0, 1))
    own, own_w = kmeans(lab, 6, seed=1)
    shift = float((np.sqrt(sq_dist(own, profile.palette).min(1)) * own_w).sum())
    return {
        "histogram": chi2,
        "coverage": cov,
        "coverage_loss": cov_loss,
        "palette_shift_de": shift,
        "palette_shift": min(shift / SHIFT_SCALE_DE, 1.0),
    }


def _distance(c: dict[str, float]) -> float:
    return float(
        WEIGHTS["histogram"] * c["histogram"]
        + WEIGHTS["coverage"] * c["coverage_loss"]
        + WEIGHTS["palette_shift"] * c["palette_shift"]
    )


def style_components(image: Image.Image, profile: StyleProfile) -> dict[str, float]:
    """The three terms behind :func:`style_distance`, each in [0, 1] except ``palette_shift_de``."""
    return _components(image_lab(image, ANALYSIS_SIDE).reshape(-1, 3), profile)


def style_distance(image: Image.Image, profile: StyleProfile) -> float:
    """0 = same colour style as the profile, 1 = nothing in common."""
    return _distance(style_components(image, profile))


def dominant_palette(images: Image.Image | Iterable[Image.Image], k: int = 6) -> list[str]:
    """The k most used colours as ``#rrggbb``, most used first."""
    return style_profile(images, k=k).hex_palette
