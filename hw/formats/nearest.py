"""The nearest crystal to a point: a grid of cells over the crystals' centres, searched around it."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class CrystalGrid:
    """Crystal centres hashed into cubic cells of ``cell_mm``."""

    centres: np.ndarray
    origin: np.ndarray
    cell_mm: float
    shape: np.ndarray
    first: np.ndarray
    """Start of each cell's crystals in ``order`` (one more entry than cells)."""
    order: np.ndarray

    @classmethod
    def of(cls, centres_mm: np.ndarray, cell_mm: float = 8.0) -> CrystalGrid:
        c = np.ascontiguousarray(centres_mm, np.float64)
        origin = c.min(axis=0) - cell_mm
        shape = (np.ceil((c.max(axis=0) - origin) / cell_mm).astype(np.int64) + 2)
        cell = _cells(c, origin, cell_mm, shape)
        order = np.argsort(cell, kind="stable")
        first = np.searchsorted(cell[order], np.arange(int(np.prod(shape)) + 1))
        return cls(c, origin, float(cell_mm), shape, first.astype(np.int64), order)

    def nearest(self, points_mm: np.ndarray, max_mm: float) -> np.ndarray:
        """The nearest crystal of each point (N, 3), -1 where none is within ``max_mm`` (the
        search reaches at least ``cell_mm``)."""
        p = np.ascontiguousarray(points_mm, np.float64)
        return _nearest(p, self.centres, self.origin, self.cell_mm, self.shape, self.first,
                        self.order, max_mm)


def _cells(points: np.ndarray, origin: np.ndarray, cell_mm: float, shape: np.ndarray
           ) -> np.ndarray:
    ijk = np.clip(((points - origin) // cell_mm).astype(np.int64), 0, shape - 1)
    return (ijk[:, 0] * shape[1] + ijk[:, 1]) * shape[2] + ijk[:, 2]


@numba.njit(cache=True, nogil=True)
def _nearest(p, centres, origin, cell, shape, first, order, max_mm):
    out = np.full(p.shape[0], -1, np.int32)
    for n in range(p.shape[0]):
        best = max_mm * max_mm
        ijk = np.empty(3, np.int64)
        for a in range(3):
            ijk[a] = min(max(int((p[n, a] - origin[a]) // cell), 0), shape[a] - 1)
        for i in range(max(ijk[0] - 1, 0), min(ijk[0] + 2, shape[0])):
            for j in range(max(ijk[1] - 1, 0), min(ijk[1] + 2, shape[1])):
                for k in range(max(ijk[2] - 1, 0), min(ijk[2] + 2, shape[2])):
                    c = (i * shape[1] + j) * shape[2] + k
                    for q in range(first[c], first[c + 1]):
                        m = order[q]
                        d = 0.0
                        for a in range(3):
                            d += (p[n, a] - centres[m, a]) ** 2
                        if d < best:
                            best = d
                            out[n] = m
    return out
