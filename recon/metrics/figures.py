"""NEMA figures of merit from an image and plain phantom geometry (centres and sizes in scanner mm).

NU 2 image quality: hot contrast ``Q_H = (C_H/C_B - 1)/(a_H/a_B - 1)``, cold contrast
``Q_C = 1 - C_C/C_B`` and background variability ``N = SD/C_B``, with spherical ROIs of each
sphere's (inner) diameter, and background ROIs of the same diameter at the given background
centres (C_B and SD: mean and standard deviation over those ROIs' means). NU 2 spatial resolution:
FWHM/FWTM of the profiles through a point source's maximum, the maximum refined by a parabola
through the peak and its two neighbours and the crossings found by linear interpolation. NU 4:
uniformity (%STD in a cylinder), rod recovery coefficients and spill-over ratios.

ROIs take the voxels whose centres lie inside the shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError
from recon.grid import Image

Point = Sequence[float]


def sphere_mask(image: Image, centre: Point, diameter_mm: float) -> np.ndarray:
    """[x, y, z] bool: voxels whose centres are inside the sphere."""
    x, y, z = image.grid.centres_mm()
    c = np.asarray(centre, float)
    mask = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (diameter_mm / 2) ** 2
    if not mask.any():
        raise UserError(f"sphere ROI at {tuple(c)} mm, {diameter_mm} mm across, holds no voxel "
                        "of the image")
    return mask


def cylinder_mask(image: Image, centre: Point, diameter_mm: float, length_mm: float
                  ) -> np.ndarray:
    """[x, y, z] bool: voxels inside a z-aligned cylinder centred at ``centre``."""
    x, y, z = image.grid.centres_mm()
    c = np.asarray(centre, float)
    mask = (((x - c[0]) ** 2 + (y - c[1]) ** 2 <= (diameter_mm / 2) ** 2)
            & (np.abs(z - c[2]) <= length_mm / 2))
    if not mask.any():
        raise UserError(f"cylinder ROI at {tuple(c)} mm holds no voxel of the image")
    return mask


def sphere_mean(image: Image, centre: Point, diameter_mm: float) -> float:
    """Mean image value in a spherical ROI."""
    return float(image.array[sphere_mask(image, centre, diameter_mm)].mean(dtype=np.float64))


def hot_contrast(c_hot: float, c_background: float, activity_ratio: float) -> float:
    """NEMA NU 2 percent-free hot contrast Q_H (1 = full recovery)."""
    if activity_ratio == 1:
        raise UserError("hot contrast needs an activity ratio other than 1")
    return (c_hot / c_background - 1.0) / (activity_ratio - 1.0)


def cold_contrast(c_cold: float, c_background: float) -> float:
    """NEMA NU 2 cold contrast Q_C (1 = no activity seen in the cold sphere)."""
    return 1.0 - c_cold / c_background


@dataclass(frozen=True)
class SphereFigures:
    """Figures of one sphere: its contrast (Q_H or Q_C), background mean and variability N."""

    diameter_mm: float
    hot: bool
    contrast: float
    c_sphere: float
    c_background: float
    variability: float


def image_quality(image: Image, hot: Sequence[tuple[Point, float]],
                  cold: Sequence[tuple[Point, float]], background: Sequence[Point],
                  activity_ratio: float) -> list[SphereFigures]:
    """NEMA NU 2 image quality: per sphere ((centre, diameter) pairs), with background ROIs of
    the sphere's diameter at every ``background`` centre; ``activity_ratio`` = a_H / a_B."""
    if len(background) < 2:
        raise UserError("image quality needs at least two background ROI centres")
    out = []
    for spheres, is_hot in ((hot, True), (cold, False)):
        for centre, diameter in spheres:
            bkg = np.array([sphere_mean(image, c, diameter) for c in background])
            c_b = float(bkg.mean())
            c_s = sphere_mean(image, centre, diameter)
            q = hot_contrast(c_s, c_b, activity_ratio) if is_hot else cold_contrast(c_s, c_b)
            out.append(SphereFigures(float(diameter), is_hot, q, c_s, c_b,
                                     float(bkg.std(ddof=1) / c_b)))
    return out


def background_ring(radius_mm: float, count: int, z_mm: Sequence[float],
                    centre: Point = (0.0, 0.0)) -> list[tuple[float, float, float]]:
    """Background ROI centres: ``count`` points on a circle of ``radius_mm`` at each z."""
    phi = 2 * np.pi * (np.arange(count) + 0.5) / count
    return [(centre[0] + radius_mm * np.cos(p), centre[1] + radius_mm * np.sin(p), float(z))
            for z in z_mm for p in phi]


# --------------------------------------------------------------------------- spatial resolution


@dataclass(frozen=True)
class Resolution:
    """Point-source resolution: ``peak_mm`` and FWHM/FWTM (mm) along x, y, z."""

    peak_mm: tuple[float, float, float]
    fwhm_mm: tuple[float, float, float]
    fwtm_mm: tuple[float, float, float]


def profile_width(profile: np.ndarray, spacing_mm: float, fraction: float) -> float:
    """Width (mm) of a 1-D profile at ``fraction`` of its maximum (NEMA: parabolic peak, linear
    interpolation of the crossings). Raises UserError if the profile does not fall below it."""
    p = np.asarray(profile, np.float64)
    i = int(np.argmax(p))
    peak = p[i]
    if 0 < i < p.size - 1:
        a, b, c = p[i - 1], p[i], p[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            peak = b - (a - c) ** 2 / (8 * denom)
    level = fraction * peak
    left, right = i, i
    while left > 0 and p[left] >= level:
        left -= 1
    while right < p.size - 1 and p[right] >= level:
        right += 1
    if p[left] >= level or p[right] >= level:
        raise UserError("the point-source profile does not fall to "
                        f"{fraction:.0%} of its maximum inside the image")
    x_left = left + (level - p[left]) / (p[left + 1] - p[left])
    x_right = right - (level - p[right]) / (p[right - 1] - p[right])
    return float((x_right - x_left) * spacing_mm)


def point_resolution(image: Image, centre: Point | None = None, search_mm: float = 10.0
                     ) -> Resolution:
    """FWHM/FWTM of a point source: profiles through the maximum (within ``search_mm`` of
    ``centre`` when given) along each axis."""
    a = image.array
    if centre is not None:
        x, y, z = image.grid.centres_mm()
        c = np.asarray(centre, float)
        near = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= search_mm ** 2
        a = np.where(near, a, -np.inf)
    idx = np.unravel_index(int(np.argmax(a)), a.shape)
    data = image.array
    profiles = (data[:, idx[1], idx[2]], data[idx[0], :, idx[2]], data[idx[0], idx[1], :])
    fwhm = tuple(profile_width(p, v, 0.5) for p, v in zip(profiles, image.voxel_mm, strict=True))
    fwtm = tuple(profile_width(p, v, 0.1) for p, v in zip(profiles, image.voxel_mm, strict=True))
    peak = tuple(float(o + i * v) for o, i, v in zip(image.origin_mm, idx, image.voxel_mm,
                                                     strict=True))
    return Resolution(peak, fwhm, fwtm)


# ------------------------------------------------------------------------------------- NEMA NU 4


def uniformity(image: Image, centre: Point, diameter_mm: float, length_mm: float
               ) -> dict[str, float]:
    """NU 4 uniformity in a cylinder VOI: mean, max, min and %STD (100 SD / mean)."""
    v = image.array[cylinder_mask(image, centre, diameter_mm, length_mm)].astype(np.float64)
    mean = float(v.mean())
    return {"mean": mean, "max": float(v.max()), "min": float(v.min()),
            "percent_std": float(100 * v.std(ddof=1) / mean)}


def rod_recovery(image: Image, rods: Sequence[tuple[Point, float]], z_range_mm: tuple[float,
                 float], uniform_mean: float) -> list[float]:
    """NU 4 recovery coefficients: slices over ``z_range_mm`` averaged; the maximum inside a
    circle twice each rod's diameter (``(centre_xy, diameter)``) locates the rod; the mean of the
    axial profile there over the same range, divided by ``uniform_mean``."""
    z = image.grid.axis_mm(2)
    zs = (z >= z_range_mm[0]) & (z <= z_range_mm[1])
    if not zs.any():
        raise UserError(f"rod z range {z_range_mm} mm holds no slice of the image")
    mean_slice = image.array[:, :, zs].mean(axis=2)
    x, y = image.grid.axis_mm(0)[:, None], image.grid.axis_mm(1)[None, :]
    out = []
    for centre, diameter in rods:
        roi = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= diameter ** 2
        if not roi.any():
            raise UserError(f"rod at {tuple(centre)} mm is outside the image")
        i, j = np.unravel_index(int(np.argmax(np.where(roi, mean_slice, -np.inf))), roi.shape)
        out.append(float(image.array[i, j, zs].mean() / uniform_mean))
    return out


def spill_over_ratio(image: Image, centre: Point, diameter_mm: float, length_mm: float,
                     uniform_mean: float) -> float:
    """NU 4 spill-over ratio: mean in a cold insert's cylinder VOI over the uniform mean."""
    v = image.array[cylinder_mask(image, centre, diameter_mm, length_mm)]
    return float(v.mean(dtype=np.float64) / uniform_mean)
