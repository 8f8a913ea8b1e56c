"""Each voxel's Euclidean distance (mm) to the nearest voxel of a mask (Felzenszwalb &
Huttenlocher's exact transform, one pass per axis, anisotropic voxels)."""

from __future__ import annotations

import numba
import numpy as np

#: A distance larger than any in a scanner's field of view (squared mm), for "no mask voxel".
_FAR_MM2 = 1e20


def distance_mm(mask: np.ndarray, voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """The distance (mm, float64) from each voxel's centre to the nearest centre where ``mask``
    holds (0 there; about 1e10 everywhere when the mask is empty)."""
    d2 = np.where(np.asarray(mask, np.bool_), 0.0, _FAR_MM2)
    for axis in range(3):
        moved = np.ascontiguousarray(np.moveaxis(d2, axis, -1))
        lines = moved.reshape(-1, moved.shape[-1])
        _lower_envelope(lines, float(voxel_mm[axis]))
        d2 = np.moveaxis(lines.reshape(moved.shape), -1, axis)
    return np.sqrt(d2)


@numba.njit(cache=True)
def _lower_envelope(lines, spacing_mm):
    """Each row f of ``lines`` replaced, in place, by min_q (f[q] + ((p - q) spacing)^2): the
    lower envelope of the parabolas rooted at each q."""
    n = lines.shape[1]
    root = np.empty(n, np.int64)
    bound = np.empty(n + 1)
    out = np.empty(n)
    for row in range(lines.shape[0]):
        f = lines[row]
        k = 0
        root[0], bound[0], bound[1] = 0, -np.inf, np.inf
        for q in range(1, n):
            s = _meet(f, q, root[k], spacing_mm)
            while s <= bound[k]:
                k -= 1
                s = _meet(f, q, root[k], spacing_mm)
            k += 1
            root[k], bound[k], bound[k + 1] = q, s, np.inf
        k = 0
        for q in range(n):
            while bound[k + 1] < q * spacing_mm:
                k += 1
            gap = (q - root[k]) * spacing_mm
            out[q] = f[root[k]] + gap * gap
        f[:] = out


@numba.njit(cache=True, inline="always")
def _meet(f, q, p, spacing_mm):
    """Where (mm along the line) the parabolas rooted at q and p (p < q) cross."""
    xq, xp = q * spacing_mm, p * spacing_mm
    return ((f[q] + xq * xq) - (f[p] + xp * xp)) / (2.0 * (xq - xp))
