"""Where on a page is the character? A sliding-window search over palette labels.

Each window is split into GRID x GRID cells and compared, cell by cell and
colour by colour, with the reference sheet's layout (and its mirror image).
Cell sums come from one integral image per colour, so the search over 11
scales x 3 aspect ratios of a 160-px page takes tens of milliseconds in numpy.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]

GRID = 5  # cells per side; 4 loses the head/body/legs split, 6 is too pose-sensitive
# Window colour the template does not explain is most likely page background
# that shares the book's palette: it costs BG_PENALTY x the template cell's
# fill, so nothing where the sheet shows paper.
BG_PENALTY = 0.25
SCALES = np.geomspace(0.14, 1.0, 11)  # window height / page height
ASPECTS = (0.75, 1.0, 1.33)  # poses widen or narrow the silhouette
TOP_K = 4
STEP_DIV = 6  # coarse search moves by 1/6 of the window; _refine then looks around each hit


def _integral(labels: np.ndarray, k: int) -> np.ndarray:
    onehot = (labels[None] == np.arange(k)[:, None, None]).astype(np.int32)
    ii = np.zeros((k, labels.shape[0] + 1, labels.shape[1] + 1), dtype=np.int32)
    ii[:, 1:, 1:] = onehot.cumsum(1).cumsum(2)
    return ii


def _window_scores(ii: np.ndarray, grid: np.ndarray, h: int, w: int, step: int,
                   ylo: int = 0, yhi: int | None = None, xlo: int = 0, xhi: int | None = None):
    """Layout overlap 2I / (T + I + excess) in [0, 1] of every window of size ~h x w.

    I is the per-cell, per-colour intersection with the template over a
    GRID x GRID grid, T the template's colour mass, excess the window colour
    that I does not explain, discounted as BG_PENALTY describes.

    Cell sums come from the integral image once per cell size; the
    (k, g, g, ny, nx) block of all cells of all windows is a strided view, not
    a copy, so a whole scale costs a handful of vectorised operations.
    """
    g = GRID
    ch, cw = max(1, h // g), max(1, w // g)
    H, W = ii.shape[1] - 1, ii.shape[2] - 1
    ylo, xlo = max(0, ylo), max(0, xlo)
    yhi = H - g * ch if yhi is None else min(yhi, H - g * ch)
    xhi = W - g * cw if xhi is None else min(xhi, W - g * cw)
    if yhi < ylo or xhi < xlo:
        return None
    # Only the part of the integral image these windows touch: the refinement
    # searches a few pixels, and converting the whole page each time dominated.
    sub = ii[:, ylo: yhi + g * ch + 1, xlo: xhi + g * cw + 1]
    c = (sub[:, ch:, cw:] - sub[:, :-ch, cw:] - sub[:, ch:, :-cw] + sub[:, :-ch, :-cw]).astype(np.float32)
    c *= 1.0 / (ch * cw)
    ny, nx = (yhi - ylo) // step + 1, (xhi - xlo) // step + 1
    sk, sy, sx = c.strides
    cells = np.lib.stride_tricks.as_strided(
        c, (c.shape[0], g, g, ny, nx), (sk, ch * sy, cw * sx, step * sy, step * sx), writeable=False
    )
    cell_mass = cells.sum(axis=0)
    tpl_mass = float(grid.sum())
    best = None
    for t in (grid, grid[..., ::-1]):  # as drawn and mirrored
        t = t.astype(np.float32)
        inter_cell = np.minimum(cells, t[..., None, None]).sum(axis=0)
        inter = inter_cell.sum(axis=(0, 1))
        weight = np.minimum(1.0, BG_PENALTY * t.sum(0))
        excess = ((cell_mass - inter_cell) * weight[..., None, None]).sum(axis=(0, 1))
        dice = 2 * inter / (tpl_mass + inter + excess + 1e-9)
        best = dice if best is None else np.maximum(best, dice)
    return best, ylo + np.arange(ny) * step, xlo + np.arange(nx) * step, g * ch, g * cw


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union else 0.0


def _refine(ii: np.ndarray, grid: np.ndarray, score: float, box: Box) -> tuple[float, Box]:
    """Pixel-step search around a coarse hit, a little larger and smaller."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    best = (score, box)
    r = max(2, min(h, w) // STEP_DIV)  # the coarse search's step
    step = max(1, r // 3)
    for f in (0.9, 1.0, 1.1):
        hh, ww = int(round(h * f)), int(round(w * f))
        cy, cx = y0 + (h - hh) // 2, x0 + (w - ww) // 2
        res = _window_scores(ii, grid, hh, ww, step, cy - r, cy + r, cx - r, cx + r)
        if res is None:
            continue
        sc, ys, xs, h2, w2 = res
        i, j = np.unravel_index(int(sc.argmax()), sc.shape)
        if sc[i, j] > best[0]:
            best = (float(sc[i, j]), (int(xs[j]), int(ys[i]), int(xs[j]) + w2, int(ys[i]) + h2))
    return best


def find_windows(labels: np.ndarray, k: int, grid: np.ndarray, aspect: float) -> list[tuple[float, Box]]:
    """Best non-overlapping windows over all scales and aspect ratios.

    A whole-window colour histogram is not enough to localise: page
    backgrounds reuse the book's palette and a patch of grass in the body
    colour then wins; per-cell overlap keeps "yellow above teal above pink
    legs" while staying coarse enough for a different pose.
    """
    H, W = labels.shape
    ii = _integral(labels, k)
    found = []
    for s in SCALES:
        for a in ASPECTS:
            h = int(round(s * H))
            w = int(round(h * aspect * a))
            if h > H or w > W or min(h, w) < 2 * GRID:
                continue
            res = _window_scores(ii, grid, h, w, max(1, min(h, w) // STEP_DIV))
            if res is None:
                continue
            score, ys, xs, hh, ww = res
            flat = score.ravel()
            for f in np.argpartition(-flat, min(TOP_K, flat.size - 1))[:TOP_K]:
                i, j = divmod(int(f), score.shape[1])
                found.append((float(score[i, j]), (int(xs[j]), int(ys[i]), int(xs[j]) + ww, int(ys[i]) + hh)))
    found.sort(key=lambda t: -t[0])
    kept: list[tuple[float, Box]] = []
    for sc, box in found:
        if all(_iou(box, b) < 0.5 for _, b in kept):
            kept.append(_refine(ii, grid, sc, box))
            if len(kept) == TOP_K:
                break
    return kept
