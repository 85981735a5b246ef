"""Colour-space and clustering helpers shared by the quality metrics.

Everything here is numpy + Pillow on purpose: the metrics must run in CI and on
workers that have no model weights and no OpenCV/scikit-image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# sRGB decoding is a pure function of the byte value, so a 256-entry table is
# both exact and far cheaper than evaluating the piecewise power per pixel.
_v = np.arange(256, dtype=np.float64) / 255.0
_SRGB_TO_LINEAR = np.where(_v <= 0.04045, _v / 12.92, ((_v + 0.055) / 1.055) ** 2.4).astype(np.float32)

_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float32,
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ.astype(np.float64))
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow image; transparency is flattened onto white.

    Sprites and reference sheets often arrive as RGBA; on the printed page a
    transparent pixel is paper, so white is the honest colour to judge.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def downsample(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the long side is at most ``max_side`` (never enlarges).

    ``reducing_gap`` lets Pillow do an integer box-reduce first, which keeps a
    1024-px input well under a few milliseconds.
    """
    image = to_rgb(image)
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    scale = max_side / float(max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> float32 CIE Lab (D65)."""
    lin = _SRGB_TO_LINEAR[np.asarray(rgb, dtype=np.uint8)]
    xyz = _mix3(lin, _RGB_TO_XYZ / _WHITE_D65[:, None])
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16.0) / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float Lab (..., 3) -> uint8 sRGB, clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116.0 * f - 16.0) / _KAPPA) * _WHITE_D65
    lin = np.clip(_mix3(xyz, _XYZ_TO_RGB), 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)


def lab_to_hex(lab: np.ndarray) -> str:
    r, g, b = (int(c) for c in lab_to_rgb(lab))
    return f"#{r:02x}{g:02x}{b:02x}"


def image_lab(image: Image.Image, max_side: int) -> np.ndarray:
    """Downsampled Lab array (H, W, 3) of an image."""
    return rgb_to_lab(np.asarray(downsample(image, max_side)))


def _mix3(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``v @ m.T`` for (..., 3) arrays without BLAS.

    BLAS spins up threads even for a 3x3 product; on a busy 2-core worker that
    thread contention made the metrics 2-3x slower than plain elementwise maths.
    """
    m = m.astype(v.dtype)
    return np.stack([v[..., 0] * m[i, 0] + v[..., 1] * m[i, 1] + v[..., 2] * m[i, 2] for i in range(3)], axis=-1)


def sq_dist(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean (= CIE76 dE squared in Lab) from each row of x to each centre.

    CIE76 rather than CIEDE2000: ranking colours and gating at ~10-20 dE does
    not need the perceptual corrections, and it is ~20x cheaper. Computed per
    channel rather than as a matrix product for the BLAS reason in ``_mix3``.
    """
    x = np.asarray(x, dtype=np.float32)
    c = np.asarray(centers, dtype=np.float32)
    d = np.zeros(x.shape[:-1] + (c.shape[0],), dtype=np.float32)
    for j in range(x.shape[-1]):
        d += (x[..., j, None] - c[:, j]) ** 2
    return d


def _sq_to(planes: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Squared distance of every row (given as channel planes) to one centre, channel by channel in order:
    what ``sq_dist`` accumulates, and what numpy's sum over a last axis of fewer than 8 channels adds."""
    d = (planes[0] - centre[0]) ** 2
    for j in range(1, len(planes)):
        d += (planes[j] - centre[j]) ** 2
    return d


def _nearest(planes: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.zeros(planes.shape[1], dtype=np.intp)
    best = _sq_to(planes, c[0])
    for i in range(1, len(c)):
        d = _sq_to(planes, c[i])
        idx[d < best] = i  # strictly closer: a tie keeps the first centre, as argmin does
        np.minimum(best, d, out=best)
    return idx, best


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, squared distance) of the nearest centre to each row of x: ``sq_dist(x, centers)``'s argmin and
    min over centres, bit for bit.

    Centre by centre over channel planes: numpy reduces a short last axis (and argmin any axis) element by
    element, several times slower than whole-plane arithmetic.
    """
    x = np.asarray(x, dtype=np.float32)
    return _nearest(np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T), np.asarray(centers, dtype=np.float32))


def kmeans(
    x: np.ndarray, k: int, iters: int = 15, seed: int = 0, max_samples: int = 6000
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ in numpy; returns (centres, weights) sorted by weight, descending.

    The seed is fixed so a style profile computed twice on the same book is
    identical, which keeps Dagster materialisations reproducible.
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        # Clustering cost is linear in samples; a few thousand pixels already
        # pin down the centres of an illustration's palette.
        x = x[rng.choice(len(x), max_samples, replace=False)]
    n = len(x)
    k = max(1, min(k, n))
    planes = np.ascontiguousarray(x.T)

    def dist(centre: np.ndarray) -> np.ndarray:
        # numpy sums fewer than 8 channels in order, so the planes give its distances bit for bit
        return _sq_to(planes, centre) if len(planes) < 8 else ((x - centre) ** 2).sum(1)

    centers = [x[rng.integers(n)]]
    d2 = dist(centers[0])
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 1e-9:
            break  # fewer distinct colours than k
        idx = rng.choice(n, p=d2 / total)
        centers.append(x[idx])
        d2 = np.minimum(d2, dist(x[idx]))
    c = np.stack(centers)
    weights64 = planes.astype(np.float64)  # what bincount would convert the weights to on every call
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        labels = _nearest(planes, c)[0]
        # bincount per channel is ~10x faster than np.add.at for this.
        sums = np.stack([np.bincount(labels, weights=w, minlength=len(c)) for w in weights64], axis=1)
        sums = sums.astype(np.float32)
        counts = np.bincount(labels, minlength=len(c)).astype(np.float32)
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
        moved = float(np.abs(new - c).max())
        c = new
        if moved < 0.05:
            break
    labels = _nearest(planes, c)[0]
    weights = np.bincount(labels, minlength=len(c)).astype(np.float64) / n
    keep = weights > 0
    c, weights = c[keep], weights[keep]
    order = np.argsort(-weights, kind="stable")
    return c[order], weights[order]
