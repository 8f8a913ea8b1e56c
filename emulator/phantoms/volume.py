"""A voxelized phantom: activity, density and labels on a grid that an affine places in the scanner.

``affine`` maps a voxel index (i, j, k, 1), voxel centres at integers, to scanner mm (LPS: +x the
patient's left, +y posterior, +z superior), any rotation or flip allowed; the product's NIfTI
files hold ``LPS_TO_RAS @ affine`` (:mod:`recon.grid`). A voxel is the parallelepiped of indices
within 0.5 of its own. Activity is a concentration (Bq/mL, or relative), density the
water-equivalent density of the emulator's medium (water 1, air 0.0012, lung about 0.3, bone up to
1.9), labels integers (0: none) named by ``label_names``. Arrays are indexed ``[i, j, k]``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Scanner (LPS) -> NIfTI's RAS: the product's image files flip x and y (recon.grid).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Below this density a voxel is air for the medium's box: the photons' box is that of denser
#: voxels (air around a body is crossed without tentative interactions, as around the shapes).
AIR_CUT = 0.01
#: Most sub-samples per axis when a volume is averaged onto a coarser grid.
MAX_SUBSAMPLES = 3


@dataclass(frozen=True, eq=False)
class VoxelVolume:
    """Activity, density and labels on one grid, placed by ``affine`` (voxel index -> mm)."""

    activity: np.ndarray
    density: np.ndarray
    affine: np.ndarray
    labels: np.ndarray | None = None
    label_names: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "activity", np.ascontiguousarray(self.activity, np.float32))
        object.__setattr__(self, "density", np.ascontiguousarray(self.density, np.float32))
        object.__setattr__(self, "affine", np.asarray(self.affine, np.float64).reshape(4, 4))
        if self.labels is not None:
            object.__setattr__(self, "labels", np.ascontiguousarray(self.labels, np.int32))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.activity.shape)

    @property
    def voxel_mm(self) -> np.ndarray:
        """The edges (mm) of a voxel along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @cached_property
    def to_index(self) -> np.ndarray:
        """(3, 4): scanner mm -> continuous voxel index (voxel centres at integers)."""
        return np.linalg.inv(self.affine)[:3]

    @cached_property
    def digest(self) -> str:
        """What the volume is: its arrays, affine and label names (hex)."""
        h = hashlib.sha256()
        for a in (self.activity, self.density, self.affine,
                  self.labels if self.labels is not None else np.zeros(0)):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(sorted(self.label_names.items())).encode())
        return h.hexdigest()[:16]

    def corners_mm(self, low: np.ndarray | None = None, high: np.ndarray | None = None
                   ) -> np.ndarray:
        """(8, 3) scanner mm of the outer corners of the voxels ``low`` .. ``high`` (index
        triples, inclusive; default the whole volume)."""
        lo = np.zeros(3) if low is None else np.asarray(low, np.float64)
        hi = np.asarray(self.shape, np.float64) - 1 if high is None else np.asarray(high,
                                                                                   np.float64)
        idx = np.array([[a, b, c] for a in (lo[0] - 0.5, hi[0] + 0.5)
                        for b in (lo[1] - 0.5, hi[1] + 0.5) for c in (lo[2] - 0.5, hi[2] + 0.5)])
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def box_mm(self, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corners (mm) of the axis-aligned box around the voxels whose density is
        above ``threshold`` (None: every voxel); an empty box (low > high) when none is."""
        if threshold is None:
            c = self.corners_mm()
            return c.min(axis=0), c.max(axis=0)
        low, high = dense_index_box(self.density, threshold)
        if np.any(low > high):
            return np.full(3, np.inf), np.full(3, -np.inf)
        c = self.corners_mm(low, high)
        return c.min(axis=0), c.max(axis=0)

    def total_activity(self) -> float:
        """Sum of concentration x volume (Bq when the activity is in Bq/mL)."""
        return float(self.activity.sum(dtype=np.float64)) * self.voxel_ml

    def centre_of_activity_mm(self) -> np.ndarray:
        """The activity's centre of mass (scanner mm)."""
        a = self.activity.astype(np.float64)
        total = a.sum()
        idx = [np.tensordot(a, np.arange(n), axes=([k], [0])).sum() / total
               for k, n in enumerate(a.shape)]
        return self.affine[:3, :3] @ np.array(idx) + self.affine[:3, 3]

    # ------------------------------------------------------------------ lookups

    def voxel_of(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat index, inside) of the voxel holding each point (N, 3) mm."""
        p = np.asarray(points_mm, np.float64).reshape(-1, 3)
        idx = np.floor(p @ self.to_index[:, :3].T + self.to_index[:, 3] + 0.5).astype(np.int64)
        n = np.asarray(self.shape)
        inside = np.all((idx >= 0) & (idx < n), axis=1)
        idx = np.clip(idx, 0, n - 1)
        return np.ravel_multi_index(idx.T, self.shape), inside

    def values_at(self, values: np.ndarray, points_mm: np.ndarray, outside: float = 0.0
                  ) -> np.ndarray:
        """``values`` (an array of the volume's shape) at points (N, 3) mm: their voxel's,
        ``outside`` beyond the volume."""
        flat, inside = self.voxel_of(points_mm)
        return np.where(inside, values.reshape(-1)[flat], outside)

    def on_grid(self, values: np.ndarray, grid_shape: tuple[int, int, int],
                voxel_mm: np.ndarray, origin_mm: np.ndarray, mean: bool = True) -> np.ndarray:
        """``values`` on a regular axis-aligned grid (indexed [x, y, z], voxel [0, 0, 0]'s centre
        at ``origin_mm``): the mean over sub-samples of each grid voxel (up to
        :data:`MAX_SUBSAMPLES` per axis, as many as the volume's voxels across it) with
        ``mean``, else the value at its centre; 0 beyond the volume."""
        voxel_mm = np.broadcast_to(np.asarray(voxel_mm, np.float64), (3,))
        origin_mm = np.asarray(origin_mm, np.float64)
        n_sub = (np.clip(np.ceil(voxel_mm / self.voxel_mm.min()), 1, MAX_SUBSAMPLES).astype(int)
                 if mean else np.ones(3, int))
        offsets = [((np.arange(m) + 0.5) / m - 0.5) * v for m, v in zip(n_sub, voxel_mm,
                                                                           strict=True)]
        out = np.zeros(grid_shape, np.float64)
        flat = values.reshape(-1)
        xs = origin_mm[0] + voxel_mm[0] * np.arange(grid_shape[0])
        ys = origin_mm[1] + voxel_mm[1] * np.arange(grid_shape[1])
        for k in range(grid_shape[2]):
            z = origin_mm[2] + voxel_mm[2] * k
            acc = np.zeros(grid_shape[:2])
            for dx in offsets[0]:
                for dy in offsets[1]:
                    for dz in offsets[2]:
                        pts = np.stack(np.broadcast_arrays(
                            (xs + dx)[:, None], (ys + dy)[None, :], np.float64(z + dz)), -1)
                        f, inside = self.voxel_of(pts)
                        acc += np.where(inside, flat[f], 0.0).reshape(grid_shape[:2])
            out[:, :, k] = acc / math.prod(n_sub)
        return out


def dense_index_box(density: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) voxel indices (inclusive) of the box around the voxels denser than
    ``threshold``; low > high when none is."""
    dense = density > threshold
    low, high = np.zeros(3, np.int64), np.full(3, -1, np.int64)
    for k in range(3):
        other = tuple(a for a in range(3) if a != k)
        hit = np.flatnonzero(dense.any(axis=other))
        if hit.size == 0:
            return np.ones(3, np.int64), np.zeros(3, np.int64)
        low[k], high[k] = hit[0], hit[-1]
    return low, high
