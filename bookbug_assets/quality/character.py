"""Weight-free character consistency: is the character on this page the one on the model sheet?

No CLIP/DINO weights can be installed offline, so this is
colour-indexing machinery from before deep features:

1. The reference sheet's background is the colour of its border; what differs
   from it is the character. Sheets with several views (turnarounds) are split
   on empty columns/rows and every view becomes a template.
2. The character's own palette (k-means in Lab) labels every pixel of the page;
   colours far from every swatch become "other".
3. A sliding window over the page, scored by per-cell colour overlap with the
   template (integral images), finds where the character is, at any scale.
4. The best windows are compared with the template by that layout overlap,
   colour adjacency (which colours touch which, so pose-invariant) and
   HOG-style gradient histograms (silhouette); mirror images count as the same.

It measures colour design and coarse shape, not identity the way a person sees
it: two characters with the same colours in the same arrangement score high,
and a character recoloured by lighting scores low. Weights and constants were
tuned on ``synthetic.make_pairs`` seeds 0-2 and 10-12 and checked on 20-25;
recalibrate on real pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ._color import downsample, image_lab, kmeans, nearest, rgb_to_lab, sq_dist, to_rgb
from ._windows import GRID, Box, find_windows

REF_SIDE = 192  # reference analysis resolution
LOC_SIDE = 160  # page resolution for the window search: 1024-px pages stay < 150 ms
CANVAS = 48  # descriptor canvas; coarse on purpose so pose changes blur out
PALETTE_K = 7
OTHER_DE = 18.0  # farther than this from every swatch = not the character's colour
BG_DE = 12.0  # sheet pixels this close to the border colour are paper
MIN_SWATCH = 0.015  # swatches rarer than this are anti-aliasing, not design
SUPPORT_DILATE = 3  # canvas pixels of slack around the sheet's silhouette for pose changes
HOG_CELLS, HOG_BINS = 4, 9
OFFSETS = ((1, 0), (0, 1), (3, 0), (0, 3), (2, 2), (2, -2))
# Layout overlap is the strongest single cue (AUC ~0.94 alone on the synthetic
# set); adjacency and gradients are weaker but fail on different pairs.
WEIGHTS = {"localisation": 0.5, "adjacency": 0.25, "shape": 0.25}


@dataclass(frozen=True)
class _Descriptor:
    colour: np.ndarray  # (k,) palette-label fractions
    adjacency: np.ndarray  # (k+1, k+1) symmetric co-occurrence
    hogs: tuple[np.ndarray, np.ndarray]  # as drawn, mirrored
    grid: np.ndarray  # (k, GRID, GRID) palette fractions per cell
    aspect: float  # width / height
    support: np.ndarray  # (CANVAS, CANVAS) bool: where the character may be, either way round


@dataclass(frozen=True)
class CharacterModel:
    """Everything needed from a reference sheet, computed once per sheet."""

    palette: np.ndarray  # (k, 3) Lab
    templates: tuple[_Descriptor, ...]  # one per view on the sheet


@dataclass(frozen=True)
class CharacterMatch:
    score: float  # [0, 1], higher = more like the reference
    box: Box  # best region in page pixels (x0, y0, x1, y1)
    components: dict[str, float] = field(default_factory=dict)


def _label(lab: np.ndarray, palette: np.ndarray) -> np.ndarray:
    idx, d = nearest(lab.reshape(-1, 3), palette)
    idx[d > OTHER_DE**2] = len(palette)
    return idx.reshape(lab.shape[:2])


def _runs(profile: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Spans of True separated by more than ``min_gap`` False entries."""
    idx = np.flatnonzero(profile)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > min_gap)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist()))


def _views(mask: np.ndarray) -> list[Box]:
    h, w = mask.shape
    boxes = []
    for x0, x1 in _runs(mask.sum(0) > 0.004 * h, max(2, w // 40)):
        for y0, y1 in _runs(mask[:, x0:x1].sum(1) > 0.004 * (x1 - x0), max(2, h // 40)):
            if (x1 - x0) * (y1 - y0) > 0.01 * h * w:  # captions and specks are not views
                boxes.append((x0, y0, x1, y1))
    return boxes or [(0, 0, w, h)]


def _hog(lum: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    gy, gx = np.gradient(lum)
    mag = np.hypot(gx, gy)
    if mask is not None:
        mag = mag * mask
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    b = np.minimum((ang / np.pi * HOG_BINS).astype(np.int64), HOG_BINS - 1)
    cell = np.arange(lum.shape[0]) * HOG_CELLS // lum.shape[0]
    idx = ((cell[:, None] * HOG_CELLS + cell[None, :]) * HOG_BINS + b).ravel()
    h = np.bincount(idx, weights=mag.ravel(), minlength=HOG_CELLS * HOG_CELLS * HOG_BINS)
    h /= np.linalg.norm(h) + 1e-9
    # Lowe-style clipping: a few strong outlines must not drown the rest.
    h = np.minimum(h, 0.2)
    return h / (np.linalg.norm(h) + 1e-9)


def _grid(labels: np.ndarray, k: int) -> np.ndarray:
    n = labels.shape[0]
    cell = np.arange(n) * GRID // n
    idx = (labels * GRID + cell[:, None]) * GRID + cell[None, :]
    h = np.bincount(idx.ravel(), minlength=(k + 1) * GRID * GRID).reshape(k + 1, GRID, GRID)[:k]
    return h / (n / GRID) ** 2


def _adjacency(labels: np.ndarray, k: int) -> np.ndarray:
    n = k + 1
    m = np.zeros((n, n))
    H, W = labels.shape
    for dy, dx in OFFSETS:
        a = labels[max(dy, 0): H + min(dy, 0), max(dx, 0): W + min(dx, 0)]
        b = labels[max(-dy, 0): H + min(-dy, 0), max(-dx, 0): W + min(-dx, 0)]
        m += np.bincount((a * n + b).ravel(), minlength=n * n).reshape(n, n)
    m = m + m.T
    m[k, k] = 0  # background next to background says nothing about the character
    return m / max(m.sum(), 1.0)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] |= out[:-1]
        m[:-1] |= out[1:]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        out = m
    return out


def _describe(rgb: Image.Image, palette: np.ndarray, paper: np.ndarray | None = None,
              within: np.ndarray | None = None) -> _Descriptor:
    """Descriptor of a sheet view (``paper`` given) or a page window (``within`` = template support).

    Restricting a page window to the template's dilated silhouette drops most
    page background from the adjacency and gradient statistics; the sheet was
    drawn on plain paper, so without this only the page side would carry
    background.
    """
    small = rgb.resize((CANVAS, CANVAS), Image.Resampling.BILINEAR, reducing_gap=2.0)
    lab = rgb_to_lab(np.asarray(small))
    k = len(palette)
    labels = _label(lab, palette)
    if paper is not None:
        labels[sq_dist(lab.reshape(-1, 3), paper[None]).reshape(labels.shape) <= BG_DE**2] = k
    fg = labels != k
    support = _dilate(fg | fg[:, ::-1], SUPPORT_DILATE)
    if within is not None:
        labels = np.where(within, labels, k)
    lum = lab[..., 0].astype(np.float64)
    return _Descriptor(
        colour=np.bincount(labels.ravel(), minlength=k + 1)[:k] / labels.size,
        adjacency=_adjacency(labels, k),
        hogs=(_hog(lum, within), _hog(lum[:, ::-1], None if within is None else within[:, ::-1])),
        grid=_grid(labels, k),
        aspect=rgb.width / max(rgb.height, 1),
        support=support,
    )


def character_model(reference: Image.Image) -> CharacterModel:
    """Analyse a reference/model sheet once; reuse the result for every page.

    Raises ValueError for a blank sheet: there is no character to look for.
    """
    rgb = to_rgb(reference)
    lab = rgb_to_lab(np.asarray(downsample(rgb, REF_SIDE)))
    h, w = lab.shape[:2]
    ring = max(1, min(h, w) // 30)
    border = np.concatenate([lab[:ring].reshape(-1, 3), lab[-ring:].reshape(-1, 3),
                             lab[:, :ring].reshape(-1, 3), lab[:, -ring:].reshape(-1, 3)])
    paper = np.median(border, axis=0)
    if (sq_dist(border, paper[None])[:, 0] <= BG_DE**2).mean() > 0.6:
        mask = sq_dist(lab.reshape(-1, 3), paper[None]).reshape(h, w) > BG_DE**2
    else:  # no plain backdrop (a crop from a page): the whole image is the character
        mask, paper = np.ones((h, w), dtype=bool), None
    if mask.sum() < 0.005 * h * w:
        raise ValueError("reference sheet looks blank: nothing differs from its background")
    palette, weights = kmeans(lab[mask], PALETTE_K)
    palette = palette[weights >= MIN_SWATCH]
    sx, sy = rgb.width / w, rgb.height / h
    templates = tuple(
        _describe(rgb.crop((int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy)))), palette, paper)
        for x0, y0, x1, y1 in _views(mask)
    )
    return CharacterModel(palette=palette, templates=templates)


def _compare(cand: _Descriptor, tpl: _Descriptor) -> dict[str, float]:
    colour = float(np.minimum(cand.colour, tpl.colour).sum() / max(cand.colour.sum(), tpl.colour.sum(), 1e-6))
    shape = max(float(cand.hogs[0] @ tpl.hogs[m]) for m in (0, 1))  # the page may mirror the sheet
    return {
        "colour": colour,
        "adjacency": float(np.minimum(cand.adjacency, tpl.adjacency).sum()),
        "shape": float(np.clip(shape, 0.0, 1.0)),
    }


def character_match(page: Image.Image, reference: Image.Image | CharacterModel) -> CharacterMatch:
    """Best-matching region of ``page`` for the character on ``reference``, with its score.

    ``components`` holds the terms (localisation, adjacency, shape, and colour
    for diagnosis only), each in [0, 1].
    """
    model = reference if isinstance(reference, CharacterModel) else character_model(reference)
    rgb = to_rgb(page)
    k = len(model.palette)
    labels = _label(image_lab(rgb, LOC_SIDE), model.palette)
    sx, sy = rgb.width / labels.shape[1], rgb.height / labels.shape[0]
    best = CharacterMatch(0.0, (0, 0, rgb.width, rgb.height), {})
    for tpl in model.templates:
        for loc, (x0, y0, x1, y1) in find_windows(labels, k, tpl.grid, tpl.aspect):
            box = (int(x0 * sx), int(y0 * sy), int(round(x1 * sx)), int(round(y1 * sy)))
            comps = {"localisation": loc, **_compare(_describe(rgb.crop(box), model.palette, within=tpl.support), tpl)}
            score = float(sum(WEIGHTS[n] * comps[n] for n in WEIGHTS))
            if score > best.score:
                best = CharacterMatch(score, box, comps)
    return best


def character_similarity(page: Image.Image, reference: Image.Image | CharacterModel) -> float:
    """[0, 1]; higher = the page's best-matching region looks more like the reference character."""
    return character_match(page, reference).score
