"""Where on a page is the character? A sliding-window search over palette labels.

Each window is split into GRID x GRID cells and compared, cell by cell and
colour by colour, with the reference sheet's layout (and its mirror image).
Cell sums come from one integral image per colour, so the search over 11
scales x 3 aspect ratios of a 160-px page takes tens of milliseconds in numpy.
"""

from __future__ import annotations

from typing import NamedTuple

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


class _Oriented(NamedTuple):
    """One way round of a template, arranged so that a scale compares only the colours each cell holds.

    Most (colour, cell) entries of a template are empty, and min(window, 0) adds exactly 0, so leaving them
    out changes no bit of any sum. ``order`` lists the cells holding template colour, most colours first:
    the r-th colour of every cell that has one is then the contiguous run ``bounds[r]:bounds[r + 1]`` of the
    entries, and each cell's sum over its colours, in the ascending colour order a dense sum adds them, is
    a few in-place adds of runs.
    """

    entries: slice  # this way round's run of _Template.kk / ci / cj / t
    bounds: tuple[int, ...]
    order: np.ndarray  # flat indices (i * GRID + j) of the cells holding template colour
    weight: np.ndarray  # (len(order), 1, 1) BG_PENALTY weight of each cell in `order`
    ascending: np.ndarray  # positions in `order` of its cells in ascending cell order
    rows: np.ndarray  # cell row, column and weight of each, in ascending cell order
    cols: np.ndarray
    weight_ascending: np.ndarray


class _Template(NamedTuple):
    mass: float
    kk: np.ndarray  # colour, cell row and cell column of every entry, both ways round
    ci: np.ndarray
    cj: np.ndarray
    t: np.ndarray  # (entries, 1, 1) template fill of each entry, float32
    ways: tuple[_Oriented, _Oriented]  # as drawn, mirrored


def _orient(t: np.ndarray, start: int) -> tuple[_Oriented, list[tuple[int, int]]]:
    g = GRID
    weight = np.minimum(1.0, BG_PENALTY * t.sum(0)).reshape(-1)
    colours = [np.flatnonzero(t[:, q // g, q % g] > 0) for q in range(g * g)]
    order = sorted((q for q in range(g * g) if len(colours[q])), key=lambda q: -len(colours[q]))
    entries, bounds = [], [0]
    for r in range(max(1, *map(len, colours))):
        entries += [(int(colours[q][r]), q) for q in order if len(colours[q]) > r]
        bounds.append(len(entries))
    order = np.array(order, dtype=np.intp)
    ascending = np.argsort(order)
    return _Oriented(slice(start, start + len(entries)), tuple(bounds), order, weight[order].reshape(-1, 1, 1),
                     ascending, order[ascending] // g, order[ascending] % g,
                     weight[order[ascending]].reshape(-1, 1, 1)), entries


def _template(grid: np.ndarray) -> _Template:
    """The template both ways round, prepared once per search rather than once per scale."""
    g = GRID
    t = grid.astype(np.float32)
    drawn, first = _orient(t, 0)
    mirrored, second = _orient(t[..., ::-1], len(first))
    kk = np.array([k for k, _ in first] + [k for k, _ in second], dtype=np.intp)
    cell = np.array([q for _, q in first + second], dtype=np.intp)  # the window's cell
    fill = t[kk, cell // g, cell % g]
    # a mirrored entry compares the window's cell with the template's cell across the middle
    fill[len(first):] = t[kk[len(first):], cell[len(first):] // g, g - 1 - cell[len(first):] % g]
    return _Template(float(grid.sum()), kk, cell // g, cell % g, fill.reshape(-1, 1, 1), (drawn, mirrored))


def _integral(labels: np.ndarray, k: int) -> np.ndarray:
    onehot = labels[None] == np.arange(k)[:, None, None]
    ii = np.zeros((k, labels.shape[0] + 1, labels.shape[1] + 1), dtype=np.int32)
    # int32 all the way (it holds any page's counts): numpy's cumsum would otherwise widen to int64
    np.cumsum(onehot, axis=1, dtype=np.int32, out=ii[:, 1:, 1:])
    np.cumsum(ii[:, 1:, 1:], axis=2, dtype=np.int32, out=ii[:, 1:, 1:])
    return ii


def _corners(a: np.ndarray, lo: int, n: int, step: int, size: int, axis: int):
    """Differences of ``a`` along ``axis`` between the far and near edge of the GRID cells of n windows
    ``step`` apart: (differences, None) with that axis replaced by (GRID, n) axes, or, where the cells cover
    most of their span anyway, (differences over the whole span, (size, step)) for :func:`_spread`.

    A coarse scale touches a few rows of the page, so only those are differenced; a fine one touches most,
    and differencing the span once is cheaper than gathering it.
    """
    g = GRID
    span = (n - 1) * step + (g - 1) * size + 1
    if g * n < span:
        idx = lo + size * np.arange(g)[:, None] + step * np.arange(n)[None, :]
        return a.take(idx + size, axis=axis) - a.take(idx, axis=axis), None
    near, far = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    near[axis], far[axis] = slice(lo, lo + span), slice(lo + size, lo + size + span)
    return a[tuple(far)] - a[tuple(near)], (size, step)


def _spread(a: np.ndarray, rows, ny: int, cols, nx: int) -> np.ndarray:
    """(..., GRID, GRID, ny, nx) cells as a view of what :func:`_corners` made of the rows and columns."""
    g = GRID
    shape, strides = list(a.shape), list(a.strides)
    if cols is not None:
        shape[-1:], strides[-1:] = [g, nx], [cols[0] * strides[-1], cols[1] * strides[-1]]
    at = len(shape) - 3 - (rows is None)  # the row span to spread, or the (GRID, ny) row axes
    if rows is not None:
        shape[at: at + 1], strides[at: at + 1] = [g, ny], [rows[0] * strides[at], rows[1] * strides[at]]
    shape[-3], shape[-2], strides[-3], strides[-2] = shape[-2], shape[-3], strides[-2], strides[-3]
    # the ndarray constructor: as_strided and moveaxis cost more than the smaller scales' arithmetic
    return np.ndarray(shape, a.dtype, buffer=a, strides=strides)


def _sum_cells(a: np.ndarray) -> np.ndarray:
    """Sum over the cells of a C-ordered (GRID * GRID, ny, nx) array.

    In the order the dense formulation this replaced added them (row-major; a one-column search summed each
    row of cells first), so every score keeps its last bit: windows tie often on flat pages, and a tie broken
    the other way would move the match.
    """
    if a.shape[2] > 1 or a.shape[1] == 1:
        return a.sum(axis=0)
    g = GRID
    rows = np.ascontiguousarray(a.reshape(g, g, a.shape[1]).transpose(0, 2, 1)).sum(axis=2)
    return rows.sum(axis=0)[:, None]


def _window_scores(ii: np.ndarray, grid, h: int, w: int, step: int,
                   ylo: int = 0, yhi: int | None = None, xlo: int = 0, xhi: int | None = None):
    """Layout overlap 2I / (T + I + excess) in [0, 1] of every window of size ~h x w.

    I is the per-cell, per-colour intersection with the template over a
    GRID x GRID grid, T the template's colour mass, excess the window colour
    that I does not explain, discounted as BG_PENALTY describes. ``grid`` is
    the (k, GRID, GRID) template or :func:`_template` of it.

    Cell sums come from the integral image at the cells' corners, and only
    the (colour, cell) pairs the template holds are compared (_Oriented).
    """
    tpl = _template(grid) if isinstance(grid, np.ndarray) else grid
    g = GRID
    ch, cw = max(1, h // g), max(1, w // g)
    H, W = ii.shape[1] - 1, ii.shape[2] - 1
    ylo, xlo = max(0, ylo), max(0, xlo)
    yhi = H - g * ch if yhi is None else min(yhi, H - g * ch)
    xhi = W - g * cw if xhi is None else min(xhi, W - g * cw)
    if yhi < ylo or xhi < xlo:
        return None
    ny, nx = (yhi - ylo) // step + 1, (xhi - xlo) // step + 1
    # Only the columns these windows touch: the refinement searches a few pixels of the page.
    rows, row_span = _corners(ii[:, :, xlo: xhi + g * cw + 1], ylo, ny, step, ch, axis=1)
    c, col_span = _corners(rows, 0, nx, step, cw, axis=rows.ndim - 1)
    c = c.astype(np.float32)
    c *= 1.0 / (ch * cw)
    cells = _spread(c, row_span, ny, col_span, nx)  # (k, g, g, ny, nx)
    cell_mass = _spread(c.sum(axis=0), row_span, ny, col_span, nx)  # colour by colour, in order
    every = cells[tpl.kk, tpl.ci, tpl.cj]  # (entries, ny, nx): both ways round, one copy
    np.minimum(every, tpl.t, out=every)
    best = None
    for o in tpl.ways:
        acc, b = every[o.entries], o.bounds
        inter_cell = acc[: b[1]]
        for r in range(1, len(b) - 1):
            inter_cell[: b[r + 1] - b[r]] += acc[b[r]: b[r + 1]]
        if nx > 1:  # cells add row-major (see _sum_cells), and the empty ones add exact zeros: skip them
            inter_cell = inter_cell[o.ascending]
            excess_cell = cell_mass[o.rows, o.cols]
            excess_cell -= inter_cell
            excess_cell *= o.weight_ascending
            inter, excess = inter_cell.sum(axis=0), excess_cell.sum(axis=0)
        else:
            # the excess of a cell the template leaves empty is 0 (weight 0): only the template's cells count
            excess_cell = cell_mass[o.order // g, o.order % g]
            excess_cell -= inter_cell
            excess_cell *= o.weight
            inter, excess = (_sum_cells(_scatter(v, o.order, ny, nx)) for v in (inter_cell, excess_cell))
        dice = 2 * inter / (tpl.mass + inter + excess + 1e-9)
        best = dice if best is None else np.maximum(best, dice)
    return best, ylo + np.arange(ny) * step, xlo + np.arange(nx) * step, g * ch, g * cw


def _scatter(values: np.ndarray, order: np.ndarray, ny: int, nx: int) -> np.ndarray:
    out = np.zeros((GRID * GRID, ny, nx), dtype=np.float32)
    out[order] = values
    return out


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union else 0.0


def _refine(ii: np.ndarray, grid, score: float, box: Box) -> tuple[float, Box]:
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
    grid = _template(grid)
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
