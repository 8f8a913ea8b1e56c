"""NEMA NU 4-2008 image quality from the image alone: the image-quality phantom's regions found
in the image (uniform chamber, rod region, five rods, two cold inserts), the standard's figures
measured in them.

The phantom lies along the scanner's axis. The axial profile (the sum of each slice) finds the
fillable chamber (its slices hold the most activity, about 30 mm long), the rod region (the
20 mm beside it that still hold activity: the rods) and the lid end (the other side, where the
two cold inserts fill the chamber's last 15 mm). The rods are the five local maxima of the rod
region's central 10 mm, their diameters told by the activity around each (it grows as the
diameter squared); the inserts are the two coldest disks of the lid half of the chamber. Which
is the air-filled one an image does not say for sure (published spill-over ratios put air above
water on some systems, below on others): a hint (the emulated phantom's air insert) names it;
without one the colder is called air, and the report says so. The figures follow the
standard: uniformity in a 22.5 mm x 10 mm VOI centred in the insert-free part of the chamber;
recovery coefficients from the 10 mm central slices of the rod region averaged, each rod's
maximum in a circle of twice its diameter, the axial profile through it over the uniform mean;
spill-over ratios in 4 mm x 7.5 mm VOIs centred in the inserts; each with the standard's %STD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infra.errors import UserError
from recon.grid import Image
from recon.metrics import figures
from recon.outputs.png import magnified, to_grey, write_png

ROD_DIAMETERS_MM = (1.0, 2.0, 3.0, 4.0, 5.0)
ROD_CIRCLE_MM = 7.0
CHAMBER_MM = (30.0, 30.0)
"""The fillable chamber's diameter and length."""
ROD_REGION_MM = 20.0
INSERT_LENGTH_MM = 15.0
INSERT_DIAMETER_MM = 8.0
UNIFORM_VOI_MM = (22.5, 10.0)
INSERT_VOI_MM = (4.0, 7.5)
ROD_SLICES_MM = 10.0
#: The coarsest voxel the report takes: the 1 mm rod needs voxels of half its size.
MAX_VOXEL_MM = 0.5


@dataclass(frozen=True)
class Nu4Layout:
    """Where the phantom lies and its inserts are, in scanner mm, as found in an image."""

    centre_xy_mm: tuple[float, float]
    chamber_z_mm: tuple[float, float]
    rods_z_mm: tuple[float, float]
    inserts_z_mm: tuple[float, float]
    free_z_mm: tuple[float, float]
    """The chamber's part without inserts."""
    water_xy_mm: tuple[float, float]
    air_xy_mm: tuple[float, float]
    inserts_named_by: str
    """``hint`` (the air insert's known place) or ``colder is air`` (assumed)."""


@dataclass(frozen=True)
class Nu4Regions(Nu4Layout):
    """Where the phantom's parts are, in scanner mm, as found in the image: its layout, the
    uniformity VOI and the rods."""

    uniform_z_mm: float
    """The centre of the uniformity VOI."""
    rods: tuple[tuple[float, float, float], ...]
    """(x, y, diameter) of each rod, 1 to 5 mm."""

    def to_json(self) -> dict[str, Any]:
        return {"centre_xy_mm": list(self.centre_xy_mm), "chamber_z_mm": list(self.chamber_z_mm),
                "rods_z_mm": list(self.rods_z_mm), "inserts_z_mm": list(self.inserts_z_mm),
                "uniform_voi_z_mm": self.uniform_z_mm,
                "rods": [{"diameter_mm": d, "xy_mm": [x, y]} for x, y, d in self.rods],
                "water_xy_mm": list(self.water_xy_mm), "air_xy_mm": list(self.air_xy_mm),
                "inserts_named_by": self.inserts_named_by}


def _not_found(what: str) -> UserError:
    return UserError(f"no NEMA NU 4 image-quality phantom in the image: {what} (is it a scan of "
                     "the nu4-iq phantom, along the scanner's axis?)")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2] - 1, strict=True))


def _chamber(image: Image) -> tuple[float, float, int]:
    """The chamber's z extent (mm) and the side (+1: towards +z) its rods lie on."""
    z = image.grid.axis_mm(2)
    dz = image.voxel_mm[2]
    profile = image.array.sum(axis=(0, 1), dtype=np.float64)
    if not profile.max() > 0:
        raise _not_found("the image is empty")
    runs = _runs(profile > 0.5 * profile.max())
    lo, hi = max(runs, key=lambda r: profile[r[0]:r[1] + 1].sum())
    length = (hi - lo + 1) * dz
    if not 0.6 * CHAMBER_MM[1] <= length <= 1.4 * CHAMBER_MM[1]:
        raise _not_found(f"its brightest part is {length:.0f} mm long, the chamber 30 mm")
    n = max(1, round(0.5 * ROD_REGION_MM / dz))
    below = profile[max(0, lo - n):lo].mean() if lo > 0 else 0.0
    above = profile[hi + 1:hi + 1 + n].mean() if hi + 1 < z.size else 0.0
    return float(z[lo] - dz / 2), float(z[hi] + dz / 2), (1 if above > below else -1)


def _summed(image: Image, z_range: tuple[float, float]) -> np.ndarray:
    z = image.grid.axis_mm(2)
    zs = (z >= min(z_range)) & (z <= max(z_range))
    if not zs.any():
        raise _not_found(f"z {z_range} mm is outside the image")
    return image.array[:, :, zs].mean(axis=2, dtype=np.float64)


def _xy(image: Image) -> tuple[np.ndarray, np.ndarray]:
    return image.grid.axis_mm(0)[:, None], image.grid.axis_mm(1)[None, :]


def _centroid(image: Image, picture: np.ndarray) -> tuple[float, float]:
    x, y = _xy(image)
    w = np.where(picture > 0.5 * picture.max(), picture, 0.0)
    return float((w * x).sum() / w.sum()), float((w * y).sum() / w.sum())


def _disk_mean(image: Image, picture: np.ndarray, radius_mm: float) -> np.ndarray:
    """``picture`` averaged over a disk of ``radius_mm`` around every pixel (FFT, zero
    outside)."""
    vx, vy = image.voxel_mm[:2]
    rx, ry = int(radius_mm / vx), int(radius_mm / vy)
    i, j = np.mgrid[-rx:rx + 1, -ry:ry + 1]
    kernel = ((i * vx) ** 2 + (j * vy) ** 2 <= radius_mm ** 2).astype(np.float64)
    shape = [a + b - 1 for a, b in zip(picture.shape, kernel.shape, strict=True)]
    full = np.fft.irfft2(np.fft.rfft2(picture, shape) * np.fft.rfft2(kernel, shape), shape)
    return full[rx:rx + picture.shape[0], ry:ry + picture.shape[1]] / kernel.sum()


def _extrema(image: Image, picture: np.ndarray, centre: tuple[float, float], count: int,
             within_mm: tuple[float, float], apart_mm: float, sign: float,
             refine: bool = True) -> list[tuple[float, float]]:
    """``count`` local maxima (``sign`` -1: minima) of ``picture`` between ``within_mm`` (an
    annulus about ``centre``), each at least ``apart_mm`` from the others."""
    x, y = _xy(image)
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
    inside = (r2 >= within_mm[0] ** 2) & (r2 <= within_mm[1] ** 2)
    values = np.where(inside, sign * picture, -np.inf)
    found = []
    for _ in range(count):
        i, j = np.unravel_index(int(np.argmax(values)), values.shape)
        if not np.isfinite(values[i, j]):
            raise _not_found(f"fewer than {count} distinct spots")
        px, py = float(x[i, 0]), float(y[0, j])
        found.append(_refined(image, sign * picture, px, py, apart_mm / 2) if refine
                     else (px, py))
        values[(x - px) ** 2 + (y - py) ** 2 < apart_mm ** 2] = -np.inf
    return found


def _refined(image: Image, picture: np.ndarray, px: float, py: float, radius_mm: float
             ) -> tuple[float, float]:
    """The centroid of the spot at (px, py): its pixels within ``radius_mm`` above half way
    from the surroundings' level to its peak (a noisy plateau's maximum is off its centre)."""
    x, y = _xy(image)
    near = (x - px) ** 2 + (y - py) ** 2 <= radius_mm ** 2
    v = picture[near]
    w = np.where(near, picture - 0.5 * (v.max() + v.min()), 0.0).clip(min=0.0)
    return float((w * x).sum() / w.sum()), float((w * y).sum() / w.sum())


def find_layout(image: Image, air_hint_xy_mm: tuple[float, float] | None = None) -> Nu4Layout:
    """The phantom's axis, chamber, rod region and inserts, found in ``image`` (see the module's
    docstring); the insert nearer ``air_hint_xy_mm`` is the air-filled one, else the colder."""
    z_lo, z_hi, rod_side = _chamber(image)
    if rod_side > 0:
        rods_z = (z_hi, z_hi + ROD_REGION_MM)
        inserts_z = (z_lo, z_lo + INSERT_LENGTH_MM)
        free = (z_lo + INSERT_LENGTH_MM, z_hi)
    else:
        rods_z = (z_lo - ROD_REGION_MM, z_lo)
        inserts_z = (z_hi - INSERT_LENGTH_MM, z_hi)
        free = (z_lo, z_hi - INSERT_LENGTH_MM)
    centre = _centroid(image, _summed(image, free))
    water, air, named = _inserts(image, centre, inserts_z, air_hint_xy_mm)
    return Nu4Layout(centre, (z_lo, z_hi), rods_z, inserts_z, free, water, air, named)


def _inserts(image: Image, centre: tuple[float, float], inserts_z: tuple[float, float],
             air_hint_xy_mm: tuple[float, float] | None
             ) -> tuple[tuple[float, float], tuple[float, float], str]:
    """(water insert's xy, air insert's xy, how they were told apart): the two coldest disks of
    the lid half of the chamber."""
    x, y = _xy(image)
    mid = sum(inserts_z) / 2
    lid = _disk_mean(image, _summed(image, (mid - 3.75, mid + 3.75)), INSERT_DIAMETER_MM / 4)
    cold = _extrema(image, lid, centre, 2, (0.0, CHAMBER_MM[0] / 2 - 3.0), INSERT_DIAMETER_MM,
                    -1.0)
    values = [float(lid[np.argmin(np.abs(x[:, 0] - px)), np.argmin(np.abs(y[0] - py))])
              for px, py in cold]
    if air_hint_xy_mm is not None:
        near = [math.dist(c, air_hint_xy_mm) for c in cold]
        first_is_air, named = near[0] <= near[1], "hint"
    else:
        first_is_air, named = values[0] <= values[1], "colder is air"
    air, water = (cold[0], cold[1]) if first_is_air else (cold[1], cold[0])
    return water, air, named


def find_regions(image: Image, air_hint_xy_mm: tuple[float, float] | None = None
                 ) -> Nu4Regions:
    """The phantom's parts, found in ``image`` (see the module's docstring); the insert nearer
    ``air_hint_xy_mm`` is the air-filled one, else the colder."""
    layout = find_layout(image, air_hint_xy_mm)
    centre, rods_z = layout.centre_xy_mm, layout.rods_z_mm
    mid = sum(rods_z) / 2
    rod_slice = _summed(image, (mid - ROD_SLICES_MM / 2, mid + ROD_SLICES_MM / 2))
    # rods 8.2 mm apart on their circle: a spot suppresses 6 mm around it (the 5 mm rod whole,
    # blur included), the search is the circle's annulus
    spots = _extrema(image, _disk_mean(image, rod_slice, 1.0), centre, 5,
                     (ROD_CIRCLE_MM - 3.0, ROD_CIRCLE_MM + 3.0), 6.0, 1.0, refine=False)
    totals = _disk_mean(image, rod_slice, 3.0)
    x, y = _xy(image)
    weight = [float(totals[np.argmin(np.abs(x[:, 0] - px)), np.argmin(np.abs(y[0] - py))])
              for px, py in spots]
    sharp = _disk_mean(image, rod_slice, 0.5)
    rods = tuple((*_refined(image, sharp, px, py, d / 2 + 1.0), d) for (px, py), d in
                 zip([spots[k] for k in np.argsort(weight)], ROD_DIAMETERS_MM, strict=True))
    radii = [math.hypot(px - centre[0], py - centre[1]) for px, py, _ in rods]
    if max(abs(r - ROD_CIRCLE_MM) for r in radii) > 2.0:
        raise _not_found(f"the rods are {min(radii):.1f}-{max(radii):.1f} mm from the axis, "
                         f"not {ROD_CIRCLE_MM:g}")
    return Nu4Regions(**vars(layout), uniform_z_mm=sum(layout.free_z_mm) / 2, rods=rods)


def _rod_profile(image: Image, x: float, y: float, diameter: float,
                 z_range: tuple[float, float]) -> np.ndarray:
    """The axial profile through the hottest pixel of the averaged slices within a circle of
    twice the rod's diameter."""
    z = image.grid.axis_mm(2)
    zs = (z >= z_range[0]) & (z <= z_range[1])
    mean_slice = image.array[:, :, zs].mean(axis=2)
    gx, gy = _xy(image)
    roi = (gx - x) ** 2 + (gy - y) ** 2 <= diameter ** 2
    i, j = np.unravel_index(int(np.argmax(np.where(roi, mean_slice, -np.inf))), roi.shape)
    return image.array[i, j, zs].astype(np.float64)


def _voi(image: Image, centre: tuple[float, float, float], diameter: float,
         length: float) -> np.ndarray:
    return image.array[figures.cylinder_mask(image, centre, diameter, length)].astype(np.float64)


def _rsd(values: np.ndarray) -> float:
    """Relative standard deviation."""
    return float(values.std(ddof=1) / values.mean())


def measure(image: Image, regions: Nu4Regions) -> dict[str, Any]:
    """The standard's table: uniformity, recovery coefficients, spill-over ratios, each with
    its %STD."""
    cx, cy = regions.centre_xy_mm
    uniform = _voi(image, (cx, cy, regions.uniform_z_mm), *UNIFORM_VOI_MM)
    u_mean, u_rsd = float(uniform.mean()), _rsd(uniform)
    if not u_mean > 0:
        raise _not_found("the uniform region holds no activity")
    mid = sum(regions.rods_z_mm) / 2
    rod_z = (mid - ROD_SLICES_MM / 2, mid + ROD_SLICES_MM / 2)
    recovery = []
    for x, y, d in regions.rods:
        profile = _rod_profile(image, x, y, d, rod_z)
        recovery.append({"diameter_mm": d, "rc": float(profile.mean() / u_mean),
                         "percent_std": 100 * math.hypot(_rsd(profile), u_rsd)})
    zi = sum(regions.inserts_z_mm) / 2
    spill = {}
    for name, (x, y) in (("water", regions.water_xy_mm), ("air", regions.air_xy_mm)):
        v = _voi(image, (x, y, zi), *INSERT_VOI_MM)
        # the VOI's own relative SD; for a VOI that reads zero or less, its SD over the uniform
        # mean (a relative SD of nothing is undefined)
        own = _rsd(v) if v.mean() > 0 else float(v.std(ddof=1)) / u_mean
        spill[name] = {"sor": float(v.mean() / u_mean), "percent_std": 100 * math.hypot(own, u_rsd)}
    return {"uniformity": {"mean": u_mean, "max": float(uniform.max()),
                           "min": float(uniform.min()), "percent_std": 100 * u_rsd},
            "recovery": recovery, "spill_over": spill, "units": image.units}


def check_voxels(image: Image) -> None:
    """Refuse voxels too coarse for the 1 mm rod."""
    if max(image.voxel_mm[:2]) > MAX_VOXEL_MM + 1e-9:
        raise UserError(f"the NU 4 image-quality report needs voxels of {MAX_VOXEL_MM:g} mm or "
                        f"less (the 1 mm rod), this image has {max(image.voxel_mm):g} mm: "
                        f"reconstruct with --voxel {MAX_VOXEL_MM:g}")


def report(image: Image, folder: str | Path | None = None,
           air_hint_xy_mm: tuple[float, float] | None = None) -> dict[str, Any]:
    """``nu4_image_quality``: the regions found and the table; with ``folder``, where they were
    put, drawn on the summed slices (``nu4_regions.png``)."""
    check_voxels(image)
    regions = find_regions(image, air_hint_xy_mm)
    out = {**measure(image, regions), "regions": regions.to_json()}
    if folder is not None:
        draw_regions(image, regions, Path(folder) / "nu4_regions.png")
    return out


def table(result: dict[str, Any]) -> list[str]:
    """The standard's table, as lines of text."""
    u = result["uniformity"]
    lines = ["NEMA NU 4-2008 image quality",
             f"  uniformity   mean {u['mean']:.4g}  max {u['max']:.4g}  min {u['min']:.4g}  "
             f"%STD {u['percent_std']:.1f}",
             "  rod (mm)     " + "  ".join(f"{r['diameter_mm']:>6g}" for r in result["recovery"]),
             "  RC           " + "  ".join(f"{r['rc']:6.3f}" for r in result["recovery"]),
             "  %STD         " + "  ".join(f"{r['percent_std']:6.1f}"
                                          for r in result["recovery"])]
    for name in ("water", "air"):
        s = result["spill_over"][name]
        lines.append(f"  SOR {name:<6}   {s['sor']:.3f}  %STD {s['percent_std']:.1f}")
    if result.get("regions", {}).get("inserts_named_by") == "colder is air":
        lines.append("  (the colder insert taken as the air-filled one)")
    return lines


def _circle(picture: np.ndarray, image: Image, x: float, y: float, r: float,
            colour: tuple[int, int, int]) -> None:
    gx, gy = _xy(image)
    ring = np.abs(np.hypot(gx - x, gy - y) - r) <= 0.6 * image.voxel_mm[0]
    picture[ring.T] = colour


def draw_regions(image: Image, regions: Nu4Regions, path: Path) -> Path:
    """The summed slices of the insert-free chamber, the rods and the inserts side by side,
    each region drawn where it was put (uniform VOI green, rods' search circles red, insert
    VOIs blue for water, yellow for air)."""
    cx, cy = regions.centre_xy_mm
    mid_r, mid_i = sum(regions.rods_z_mm) / 2, sum(regions.inserts_z_mm) / 2
    parts = [(_summed(image, (regions.uniform_z_mm - 5, regions.uniform_z_mm + 5)),
              [(cx, cy, UNIFORM_VOI_MM[0] / 2, (0, 200, 0))]),
             (_summed(image, (mid_r - 5, mid_r + 5)),
              [(x, y, d, (220, 0, 0)) for x, y, d in regions.rods]),
             (_summed(image, (mid_i - 3.75, mid_i + 3.75)),
              [(*regions.water_xy_mm, INSERT_VOI_MM[0] / 2, (0, 80, 255)),
               (*regions.air_xy_mm, INSERT_VOI_MM[0] / 2, (255, 220, 0))])]
    gx, gy = _xy(image)
    keep_x = np.abs(gx[:, 0] - cx) <= DRAWN_MM
    keep_y = np.abs(gy[0] - cy) <= DRAWN_MM
    pictures = []
    for summed, circles in parts:
        grey = to_grey(summed.T)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        for x, y, r, colour in circles:
            _circle(rgb, image, x, y, r, colour)
        pictures.append(rgb[keep_y][:, keep_x])
    return write_png(path, magnified(np.concatenate(pictures, axis=1)))


#: The half-width of the drawn pictures about the phantom's axis (mm).
DRAWN_MM = 20.0
