"""Rigid registration of two images on one grid: the pose that carries the reference onto the moved image."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter
from scipy.optimize import minimize

from hw.motion import Pose, rotation
from recon.grid import Grid

#: Smoothing (mm FWHM) of both images before they are compared: noise off, shape kept.
SMOOTH_MM = 6.0
#: The optimiser's stopping tolerances: mm and degrees.
XTOL = 0.01


def moved_image(reference: np.ndarray, grid: Grid, pose: Pose) -> np.ndarray:
    """``reference`` carried by ``pose`` (a point p at rest to ``R p + t``), sampled on its own
    grid (linear interpolation, zero outside)."""
    v = np.asarray(grid.voxel_mm, np.float64)
    o = np.asarray(grid.origin_mm, np.float64)
    back = pose.rotation.T                       # y -> R^T (y - t): where y came from
    matrix = (back * v[None, :]) / v[:, None]
    offset = (back @ (o - pose.shift_mm) - o) / v
    return affine_transform(reference, matrix, offset, order=1, mode="constant", cval=0.0)


def _prepared(image: np.ndarray, grid: Grid) -> np.ndarray:
    sigma = SMOOTH_MM / 2.3548 / np.asarray(grid.voxel_mm, np.float64)
    smooth = gaussian_filter(np.asarray(image, np.float64), sigma)
    total = smooth.sum()
    return smooth / total if total > 0 else smooth


def register(reference: np.ndarray, moved: np.ndarray, grid: Grid,
             start: np.ndarray | None = None) -> np.ndarray:
    """The six numbers (tx, ty, tz mm, rx, ry, rz deg) of the pose that carries ``reference``
    onto ``moved`` (least squares of the two, each smoothed and scaled to unit sum; ``start``:
    where the search starts, default the centroids' difference)."""
    a, b = _prepared(reference, grid), _prepared(moved, grid)
    if start is None:
        start = np.zeros(6)
        start[:3] = _centroid(b, grid) - _centroid(a, grid)
    scale = float(np.sum(b * b)) or 1.0

    def cost(params: np.ndarray) -> float:
        pose = Pose(rotation(*params[3:]), params[:3])
        return float(np.sum((moved_image(a, grid, pose) - b) ** 2)) / scale

    found = minimize(cost, np.asarray(start, np.float64), method="Powell",
                     options={"xtol": XTOL, "ftol": 1e-9, "maxfev": 3000})
    return np.asarray(found.x, np.float64)


def _centroid(image: np.ndarray, grid: Grid) -> np.ndarray:
    total = image.sum()
    if total <= 0:
        return np.zeros(3)
    axes = [o + v * np.arange(n) for o, v, n in zip(grid.origin_mm, grid.voxel_mm, grid.shape,
                                                     strict=True)]
    return np.array([float((image.sum(axis=tuple(b for b in range(3) if b != k)) * axes[k]
                            ).sum() / total) for k in range(3)])
