"""Rigid registration of two images on one grid: the pose that carries the reference onto the moved image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter
from scipy.optimize import least_squares

from hw.motion import Pose, rotation
from recon.grid import Grid
from recon.threads import parallel_map

#: Smoothing (mm FWHM) of both images before they are compared, coarse to fine: the first
#: finds the basin, the last the pose.
SMOOTH_MM = (12.0, 6.0)
#: The search stops when a step changes the pose by less than this share of it.
XTOL = 1e-4


def moved_image(reference: np.ndarray, grid: Grid, pose: Pose) -> np.ndarray:
    """``reference`` carried by ``pose`` (a point p at rest to ``R p + t``), sampled on its own
    grid (linear interpolation, zero outside)."""
    v = np.asarray(grid.voxel_mm, np.float64)
    o = np.asarray(grid.origin_mm, np.float64)
    back = pose.rotation.T                       # y -> R^T (y - t): where y came from
    matrix = (back * v[None, :]) / v[:, None]
    offset = (back @ (o - pose.shift_mm) - o) / v
    return affine_transform(reference, matrix, offset, order=1, mode="constant", cval=0.0)


def _prepared(image: np.ndarray, grid: Grid, smooth_mm: float) -> np.ndarray:
    sigma = smooth_mm / 2.3548 / np.asarray(grid.voxel_mm, np.float64)
    smooth = gaussian_filter(np.asarray(image, np.float64), sigma)
    total = smooth.sum()
    return smooth / total if total > 0 else smooth


def register(reference: np.ndarray, moved: np.ndarray, grid: Grid,
             start: np.ndarray | None = None) -> np.ndarray:
    """The six numbers (tx, ty, tz mm, rx, ry, rz deg) of the pose that carries ``reference``
    onto ``moved`` (least squares of the two, each smoothed and scaled to unit sum, coarse to
    fine: :data:`SMOOTH_MM`, by a trust-region Gauss-Newton search on the voxels' residuals
    with their Jacobian by the chain rule, :func:`_jacobian`;
    ``start``: the turn where the search starts, default none, the shift then the one that
    carries the reference's centroid onto the moved one's)."""
    params = np.zeros(6) if start is None else np.asarray(start, np.float64).copy()
    a0, b0 = _prepared(reference, grid, SMOOTH_MM[-1]), _prepared(moved, grid, SMOOTH_MM[-1])
    params[:3] = _centroid(b0, grid) - rotation(*params[3:]) @ _centroid(a0, grid)
    for smooth in SMOOTH_MM:
        a, b = _prepared(reference, grid, smooth), _prepared(moved, grid, smooth)
        scale = float(np.sqrt(np.sum(b * b))) or 1.0

        def residuals(p: np.ndarray, a: np.ndarray = a, b: np.ndarray = b,
                      scale: float = scale) -> np.ndarray:
            pose = Pose(rotation(*p[3:]), p[:3])
            return ((moved_image(a, grid, pose) - b) / scale).ravel()

        params = np.asarray(least_squares(residuals, params, jac=_jacobian(a, grid, scale),
                                          method="trf", xtol=XTOL, ftol=1e-10).x, np.float64)
    return params


def _jacobian(a: np.ndarray, grid: Grid, scale: float
              ) -> Callable[[np.ndarray], np.ndarray]:
    """The Jacobian of the residuals ``(moved_image(a, pose) - b) / scale`` over the six numbers,
    by the chain rule: ``a`` moved by the pose reads ``a`` at ``x = R^T (y - t)``, so its change
    is the gradient of ``a`` there (central differences, read as ``a`` is) times ``-R`` for the
    shift and times ``dR/d angle^T (y - t)`` for each angle (degrees). scipy's finite
    differences step a number that is 0 by 1.5e-8, which the voxels at the grid's edge,
    jumping in or out of it, outweigh."""
    v = np.asarray(grid.voxel_mm, np.float64)
    gradient = [g / v[k] for k, g in enumerate(np.gradient(a))]
    y = np.stack(np.meshgrid(*_axes(grid), indexing="ij"), -1).reshape(-1, 3)

    def jac(p: np.ndarray) -> np.ndarray:
        r = rotation(*p[3:])
        pose = Pose(r, p[:3])
        g = np.stack([m.ravel() for m in parallel_map(lambda gk: moved_image(gk, grid, pose),
                                                      gradient)], 1)
        out = np.empty((g.shape[0], 6))
        out[:, :3] = -(g @ r.T)
        d = y - p[:3]
        for k in range(3):
            out[:, 3 + k] = np.einsum("ij,ij->i", g @ _turn_derivative(p[3:], k).T, d)
        return out / scale

    return jac


def _turn_derivative(angles_deg: np.ndarray, k: int, h_deg: float = 1e-4) -> np.ndarray:
    """d rotation / d angle k (per degree), by a central difference of the 3 x 3 matrix."""
    up, down = np.array(angles_deg, np.float64), np.array(angles_deg, np.float64)
    up[k] += h_deg
    down[k] -= h_deg
    return (rotation(*up) - rotation(*down)) / (2 * h_deg)


def _centroid(image: np.ndarray, grid: Grid) -> np.ndarray:
    total = image.sum()
    if total <= 0:
        return np.zeros(3)
    axes = _axes(grid)
    return np.array([float((image.sum(axis=tuple(b for b in range(3) if b != k)) * axes[k]
                            ).sum() / total) for k in range(3)])


def _axes(grid: Grid) -> list[np.ndarray]:
    """The voxels' centres (mm) along each axis."""
    return [o + v * np.arange(n) for o, v, n in zip(grid.origin_mm, grid.voxel_mm, grid.shape,
                                                     strict=True)]
