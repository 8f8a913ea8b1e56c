"""The regions' activity as a voxel grid of majorants, for drawing decay positions exactly.

The regions' bounding box is cut into voxels (at most :data:`MAX_VOXELS`). A voxel that no region
boundary crosses has one concentration; a voxel that boundaries may cross (*mixed*) keeps the
concentration of the last region covering all of it (``base``), the regions painted after that
which may cover part of it, and the largest concentration any of them gives (the majorant). A
decay position is drawn by picking a voxel with probability majorant x volume (Walker's alias
table), a point uniform in it, and, in a mixed voxel, keeping the point with probability
concentration / majorant (rejection): the positions follow the painted concentration exactly, at
one table lookup and one or two containment tests a point.

Whether a boundary may cross a voxel is decided conservatively: a shape's unit coordinates move
by at most ||M|| x (the voxel's half diagonal) inside the voxel, M the shape's scanner-to-unit map.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from emulator.jit import inline, kernel
from emulator.phantoms.shapes import BOX, CYLINDER, to_unit

#: The grid's voxel count is kept below this (32 bytes a voxel: the table stays cache-sized).
MAX_VOXELS = 1 << 16
#: Smallest voxel edge (mm).
MIN_VOXEL_MM = 1.0


#: One voxel with activity, one cache line's half: its alias-table entry (``prob``, ``alias``),
#: low corner (mm), largest concentration, the concentration where no listed region covers, and
#: where its list of regions that may cover part of it starts in ``ActivityGrid.regions`` (-1: a
#: pure voxel).
VOXEL_DTYPE = np.dtype([("prob", np.float32), ("alias", np.int32), ("x", np.float32),
                        ("y", np.float32), ("z", np.float32), ("majorant", np.float32),
                        ("base", np.float32), ("first", np.int32)], align=True)


class ActivityGrid(NamedTuple):
    """Voxels with activity, as arrays for the sampling kernel."""

    voxels: np.ndarray      # (V,) VOXEL_DTYPE
    size: np.ndarray        # (3,) float64 mm, voxel edges
    regions: np.ndarray     # int64 rows of the regions that may cover part of a voxel, the last
    #                         painted first, each voxel's list ended by -1
    activity: np.ndarray    # (R,) float64 concentration of each region (0 where undefined)


@kernel
def _classify(shapes, q, cx, cy, cz, reach):
    """0: the voxel centred at c lies outside shape q, 1: inside, 2: a boundary may cross it;
    ``reach`` bounds how far (in unit coordinates) the voxel extends from its centre."""
    ux, uy, uz = to_unit(shapes, q, cx, cy, cz)
    if shapes[q, 0] == BOX:
        m = max(abs(ux), max(abs(uy), abs(uz)))
        if m + reach <= 1.0:
            return 1
        if abs(ux) - reach > 1.0 or abs(uy) - reach > 1.0 or abs(uz) - reach > 1.0:
            return 0
        return 2
    if shapes[q, 0] == CYLINDER:
        rr, rz = math.sqrt(ux * ux + uy * uy), abs(uz)
        if rr + reach <= 1.0 and rz + reach <= 1.0:
            return 1
        if rr - reach > 1.0 or rz - reach > 1.0:
            return 0
        return 2
    r = math.sqrt(ux * ux + uy * uy + uz * uz)
    if r + reach <= 1.0:
        return 1
    if r - reach > 1.0:
        return 0
    return 2


@inline
def _cells(a, b, lo, size, n):
    """First and last index of the n cells of ``size`` from ``lo`` that [a, b] touches."""
    return max(math.floor((a - lo) / size), 0), min(math.floor((b - lo) / size), n - 1)


@kernel
def _paint(shapes, activity, defines, reach, box_lo, box_hi, lo, size, n, base, majorant,
           head, node_region, node_next):
    """Paint the regions in order onto the grid: ``base`` and ``majorant`` per voxel, and per
    voxel a linked list (``head``, newest first) of regions that may cover part of it."""
    n_nodes = 0
    for q in range(shapes.shape[0]):
        if not defines[q]:
            continue
        i0, i1 = _cells(box_lo[q, 0], box_hi[q, 0], lo[0], size[0], n[0])
        j0, j1 = _cells(box_lo[q, 1], box_hi[q, 1], lo[1], size[1], n[1])
        k0, k1 = _cells(box_lo[q, 2], box_hi[q, 2], lo[2], size[2], n[2])
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                for k in range(k0, k1 + 1):
                    v = (i * n[1] + j) * n[2] + k
                    status = _classify(shapes, q, lo[0] + (i + 0.5) * size[0],
                                       lo[1] + (j + 0.5) * size[1], lo[2] + (k + 0.5) * size[2],
                                       reach[q])
                    if status == 1:          # covers the whole voxel: what lay under is gone
                        base[v] = activity[q]
                        majorant[v] = activity[q]
                        head[v] = -1
                    elif status == 2:
                        majorant[v] = max(majorant[v], activity[q])
                        if n_nodes == node_region.size:
                            return -1
                        node_region[n_nodes] = q
                        node_next[n_nodes] = head[v]
                        head[v] = n_nodes
                        n_nodes += 1
    return n_nodes


@kernel
def _alias(weights, prob, alias):
    """Walker's alias table (Vose's construction) of ``weights`` (> 0)."""
    n = weights.size
    scaled = weights * (n / weights.sum())
    small = np.empty(n, np.int64)
    large = np.empty(n, np.int64)
    ns = nl = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    for i in range(nl):
        prob[large[i]] = 1.0
        alias[large[i]] = large[i]
    for i in range(ns):
        prob[small[i]] = 1.0
        alias[small[i]] = small[i]


@kernel
def _flatten(head, node_region, node_next, keep, first, flat):
    """The lists of the voxels ``keep`` one after the other in ``flat`` (newest region first,
    each ended by -1; ``first``: where each starts, -1 for an empty list); returns the length."""
    n = 0
    for i in range(keep.size):
        node = head[keep[i]]
        if node < 0:
            first[i] = -1
            continue
        first[i] = n
        while node >= 0:
            flat[n] = node_region[node]
            n += 1
            node = node_next[node]
        flat[n] = -1
        n += 1
    return n


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability, alias) of Walker's alias table of ``weights`` (> 0, float64)."""
    prob = np.empty(weights.size)
    alias = np.empty(weights.size, np.int64)
    _alias(weights, prob, alias)
    return prob, alias


def _grid(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel edges (mm) and counts covering [lo, hi] with at most MAX_VOXELS cubic voxels."""
    extent = np.maximum(hi - lo, MIN_VOXEL_MM)
    edge = max(MIN_VOXEL_MM, float(np.prod(extent) / MAX_VOXELS) ** (1.0 / 3.0))
    while True:
        n = np.ceil(extent / edge).astype(np.int64)
        if np.prod(n) <= MAX_VOXELS:
            return np.full(3, edge), n
        edge *= 1.05


def activity_grid(shapes: np.ndarray, activity: list[float | None], boxes: np.ndarray,
                  semi_axes: np.ndarray) -> ActivityGrid:
    """The sampling grid of the regions: packed ``shapes`` (R, ROW), their concentrations
    (None: undefined, inherits what lies under), bounding ``boxes`` (R, 2, 3) mm and smallest
    semi-axis (R,) mm."""
    act = np.array([a or 0.0 for a in activity], dtype=np.float64)
    defines = np.array([a is not None for a in activity], dtype=np.bool_)
    hot = act > 0
    if not hot.any():
        return ActivityGrid(np.zeros(0, VOXEL_DTYPE), np.ones(3), np.zeros(0, np.int64), act)
    lo, hi = boxes[hot, 0].min(axis=0), boxes[hot, 1].max(axis=0)
    size, n = _grid(lo, hi)
    reach = np.linalg.norm(size / 2) / semi_axes
    n_vox = int(np.prod(n))
    base = np.zeros(n_vox)
    majorant = np.zeros(n_vox)
    head = np.full(n_vox, -1, np.int64)
    capacity = 4 * n_vox
    while True:
        node_region = np.empty(capacity, np.int64)
        node_next = np.empty(capacity, np.int64)
        base[:], majorant[:], head[:] = 0.0, 0.0, -1
        if _paint(shapes, act, defines, reach, boxes[:, 0], boxes[:, 1], lo, size, n, base,
                  majorant, head, node_region, node_next) >= 0:
            break
        capacity *= 4
    keep = np.flatnonzero(majorant > 0)
    vox = np.zeros(keep.size, VOXEL_DTYPE)
    first = np.empty(keep.size, np.int32)
    flat = np.empty(capacity + keep.size, np.int64)
    flat = flat[:_flatten(head, node_region, node_next, keep, first, flat)]
    i, rest = np.divmod(keep, n[1] * n[2])
    j, k = np.divmod(rest, n[2])
    prob = np.empty(keep.size)
    alias = np.empty(keep.size, np.int32)
    _alias(majorant[keep], prob, alias)
    vox["prob"], vox["alias"], vox["first"] = prob, alias, first
    vox["x"], vox["y"], vox["z"] = (lo[c] + (i, j, k)[c] * size[c] for c in range(3))
    vox["majorant"], vox["base"] = majorant[keep], base[keep]
    return ActivityGrid(voxels=vox, size=size, regions=flat, activity=act)
