"""A phantom: regions of activity and attenuation painted in order, plus point and line sources.

Regions are painted in order: at a point, the activity concentration (relative, per mm3) is that
of the last region containing it that defines an activity, and the density (relative to water)
that of the last containing region defining a density; outside every region it is air (zero). A
region's ``None`` activity or density inherits what lies under it, so that (for example) hot rods
do not change the attenuation and an attenuating shell does not change the activity.

Point and line sources have zero volume; each carries a ``fraction`` of the phantom's total
activity, the regions share the rest in proportion to concentration x volume.

A voxel phantom holds a :class:`emulator.phantoms.volume.VoxelVolume` instead of regions: its
activity, density and labels per voxel (its labels are its named regions).

Coordinates are scanner mm (LPS patient frame: +x patient left, +y posterior, +z superior).
Grids follow ``recon.grid.Grid``: arrays indexed ``[x, y, z]``, ``origin_mm`` is voxel [0, 0, 0]'s
centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from emulator.phantoms.compartments import Kinetics
from emulator.phantoms.shapes import ROW, Shape, pack_row
from emulator.phantoms.truth import PhantomTruth
from emulator.phantoms.volume import VoxelVolume
from emulator.phantoms.voxelpack import (
    VoxelDensity,
    VoxelSource,
    no_density,
    no_source,
    voxel_density,
    voxel_source,
)
from emulator.phantoms.voxels import ActivityGrid, activity_grid
from emulator.physics.media import mu_water
from infra.errors import UserError


@dataclass(frozen=True, eq=False)
class Region:
    """A named shape with a relative activity concentration and/or a density (water = 1)."""

    name: str
    shape: Shape
    activity: float | None = None
    density: float | None = None


@dataclass(frozen=True)
class LabelRegion:
    """A named region of a voxel phantom: the voxels of one label."""

    name: str
    label: int


@dataclass(frozen=True)
class PointSource:
    name: str
    position_mm: tuple[float, float, float]
    fraction: float = 1.0


@dataclass(frozen=True)
class LineSource:
    name: str
    start_mm: tuple[float, float, float]
    stop_mm: tuple[float, float, float]
    fraction: float = 1.0


class PackedPhantom(NamedTuple):
    """The phantom as arrays for the numba kernels (see :func:`Phantom.packed`)."""

    shapes: np.ndarray        # (R, ROW) every region's packed shape (shapes.pack_row)
    layers: np.ndarray        # (L, ROW + 1) attenuating regions in painter's order: packed
    #                           shape rows (shapes.pack_row) with the density in the last column
    layer_boxes: np.ndarray   # (L, 2, 3) mm, low and high corners of a box around each layer
    grid: ActivityGrid        # the regions' activity for drawing positions (voxels.py)
    src_kind: np.ndarray      # (S + 1,) 0 point, 1 line, 2 the regions
    src_a: np.ndarray         # (S + 1, 3)
    src_b: np.ndarray         # (S + 1, 3)
    src_cdf: np.ndarray       # (S + 1,) cumulative activity fractions
    vox: VoxelSource          # a voxel phantom's activity (src_kind 3)
    density: VoxelDensity     # a voxel phantom's density, for the photons


@dataclass(frozen=True, eq=False)
class Phantom:
    """Activity and attenuation of an object in the scanner."""

    name: str
    description: str
    parts: tuple[Region, ...] = ()
    sources: tuple[PointSource | LineSource, ...] = ()
    kinetics: Kinetics | None = None
    """A kinetic phantom's tissue classes and input (:mod:`emulator.phantoms.compartments`; emulated by
    :mod:`emulator.phantoms.kinetic`): the regions' activity then follows them in time; their
    ``activity`` is only the picture of a late moment, for displays."""

    blank: bool = False
    """Nothing in the scanner (a blank scan): no activity, no attenuation; the crystals' own
    Lu-176 alone is detected."""
    body_part: str | None = None
    """What a technologist scanning it would enter as the exam's body part (DICOM Body Part
    Examined: ``HEAD`` for a head); None for test objects."""
    volume: VoxelVolume | None = None
    """A voxel phantom's activity, density and labels (then it has no regions)."""
    activity_mbq: float | None = None
    """The phantom's own total activity (MBq) when its concentrations are absolute (Bq/mL):
    a scan given no activity takes it. None: relative concentrations."""
    source: str | None = None
    """The file the phantom was read from (None: built in)."""
    truth: PhantomTruth | None = None
    """What its maker knows (the heart's axis, a defect, the drawn parameters): for
    validation only."""

    def __post_init__(self) -> None:
        total = sum(s.fraction for s in self.sources)
        volumetric = any((r.activity or 0.0) > 0 for r in self.parts) or (
            self.volume is not None and bool(np.any(self.volume.activity > 0)))
        if self.blank and (self.parts or self.sources or self.volume is not None):
            raise UserError(f"phantom '{self.name}': a blank phantom holds nothing")
        if self.volume is not None and self.parts:
            raise UserError(f"phantom '{self.name}': a voxel phantom has no shaped regions")
        if any(s.fraction < 0 for s in self.sources) or total > 1.0 + 1e-9 or (
                not volumetric and not self.sources and not self.blank):
            raise UserError(f"phantom '{self.name}': source fractions must be >= 0 and sum to at "
                            "most 1, and the phantom needs some activity")

    def regions(self) -> dict[str, Region | LabelRegion | PointSource | LineSource]:
        """Every named part (regions, a voxel phantom's labels, and sources) by name, for
        figures of merit."""
        labels = ({n: LabelRegion(n, k) for k, n in self.volume.label_names.items()}
                  if self.volume is not None else {})
        return {**labels, **{p.name: p for p in (*self.parts, *self.sources)}}

    def moved(self, angle_deg: float = 0.0, shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
              ) -> Phantom:
        """The phantom turned by ``angle_deg`` about the scanner's z axis (x towards y), then
        shifted by ``shift_mm``: every region's shape and every point and line source moves with
        it (its names, activities and kinetics stay)."""
        a = math.radians(angle_deg)
        turn = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                         [0.0, 0.0, 1.0]])
        shift = np.asarray(shift_mm, dtype=np.float64)

        def at(p: tuple[float, float, float]) -> tuple[float, float, float]:
            return tuple(float(v) for v in turn @ np.asarray(p) + shift)

        sources = tuple(replace(s, start_mm=at(s.start_mm), stop_mm=at(s.stop_mm))
                        if isinstance(s, LineSource) else replace(s, position_mm=at(s.position_mm))
                        for s in self.sources)
        parts = tuple(replace(r, shape=r.shape.moved(turn, tuple(shift))) for r in self.parts)
        volume = self.volume
        if volume is not None:
            motion = np.eye(4)
            motion[:3, :3], motion[:3, 3] = turn, shift
            volume = replace(volume, affine=motion @ volume.affine)
        pose = f"turned {angle_deg:g} deg about z, shifted {tuple(float(v) for v in shift)} mm"
        return replace(self, description=f"{self.description} ({pose})", parts=parts,
                       sources=sources, volume=volume)

    # ------------------------------------------------------------------ maps

    def _paint(self, attribute: str, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        points = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
        flat = points.reshape(-1, 3)
        out = np.zeros(flat.shape[0])
        for region in self.parts:
            value = getattr(region, attribute)
            if value is not None:
                near = _in_box(flat, region.shape)
                out[near[region.shape.contains(flat[near])]] = value
        return out.reshape(points.shape[:-1])

    def density_at(self, points_mm: np.ndarray) -> np.ndarray:
        """Density relative to water at points (N, 3)."""
        p = np.atleast_2d(points_mm)
        if self.volume is not None:
            return self.volume.values_at(self.volume.density, p)
        return self._paint("density", p[:, 0], p[:, 1], p[:, 2])

    def activity_at(self, points_mm: np.ndarray) -> np.ndarray:
        """Relative activity concentration of the regions at points (N, 3)."""
        p = np.atleast_2d(points_mm)
        if self.volume is not None:
            return self.volume.values_at(self.volume.activity, p)
        return self._paint("activity", p[:, 0], p[:, 1], p[:, 2])

    def label_map(self, grid: Any) -> tuple[np.ndarray, dict[int, str]]:
        """(labels, names): each voxel centre of ``grid`` labelled by the region that holds it
        (int32, 0 none; a shaped phantom's regions that define an activity, hot or cold,
        numbered from 1 in order, the last painted winning) and each label's name."""
        x, y, z = _centres(grid, None, None, None)
        if self.volume is not None:
            v = self.volume
            if v.labels is None:
                return np.zeros(grid.shape, np.int32), {}
            labels = v.on_grid(v.labels, grid.shape, grid.voxel_mm, grid.origin_mm, mean=False)
            return np.rint(labels).astype(np.int32), dict(v.label_names)
        named = [r for r in self.parts if r.activity is not None]
        if not named:                       # point and line sources alone: no regions
            return np.zeros(grid.shape, np.int32), {}
        index = {r.name: k + 1 for k, r in enumerate(named)}
        painted = replace(self, kinetics=None, sources=(), parts=tuple(
            replace(r, activity=float(index.get(r.name, 0)) if r.activity is not None else None)
            for r in self.parts))
        labels = np.rint(painted._paint("activity", x, y, z)).astype(np.int32)
        return labels, {k: n for n, k in index.items()}

    def mu_map(self, grid: Any = None, energy_kev: float = 511.0, *,
               shape: tuple[int, int, int] | None = None,
               voxel_mm: float | tuple[float, float, float] | None = None,
               origin_mm: tuple[float, float, float] | None = None) -> np.ndarray:
        """Linear attenuation (1/mm, float32, indexed [x, y, z]) at the voxel centres of ``grid``
        (anything with ``shape``, ``voxel_mm``, ``origin_mm``) or of the grid given by ``shape``
        and ``voxel_mm`` (``origin_mm`` defaults to a grid centred on the scanner)."""
        if self.volume is not None:
            return (self._resampled(self.volume.density, grid, shape, voxel_mm, origin_mm)
                    * float(mu_water(energy_kev))).astype(np.float32)
        x, y, z = _centres(grid, shape, voxel_mm, origin_mm)
        return (self._paint("density", x, y, z) * float(mu_water(energy_kev))).astype(np.float32)

    def activity_map(self, grid: Any = None, *, shape: tuple[int, int, int] | None = None,
                     voxel_mm: float | tuple[float, float, float] | None = None,
                     origin_mm: tuple[float, float, float] | None = None) -> np.ndarray:
        """Relative activity concentration of the regions (float32, [x, y, z]) at the voxel
        centres, on the same grid conventions as :meth:`mu_map` (point and line sources are not
        drawn)."""
        if self.volume is not None:
            return self._resampled(self.volume.activity, grid, shape, voxel_mm,
                                   origin_mm).astype(np.float32)
        x, y, z = _centres(grid, shape, voxel_mm, origin_mm)
        return self._paint("activity", x, y, z).astype(np.float32)

    def _resampled(self, values: np.ndarray, grid: Any, shape: tuple[int, int, int] | None,
                   voxel_mm: float | tuple[float, float, float] | None,
                   origin_mm: tuple[float, float, float] | None) -> np.ndarray:
        """A voxel phantom's ``values`` averaged over each voxel of the grid."""
        n, v, o = _grid_of(grid, shape, voxel_mm, origin_mm)
        return self.volume.on_grid(values, tuple(int(k) for k in n), v, o)

    # ------------------------------------------------------------------ kernels

    def packed(self) -> PackedPhantom:
        """The phantom as flat arrays for the transport and sampling kernels."""
        parts = self.parts
        n = len(parts)
        volume = self.volume
        shapes = np.array([pack_row(r.shape) for r in parts], dtype=np.float64).reshape(n, ROW)
        layers = np.array([np.append(shapes[i], r.density) for i, r in enumerate(parts)
                           if r.density is not None], dtype=np.float64).reshape(-1, ROW + 1)
        boxes = np.array([r.shape.bounding_box() for r in parts]).reshape(n, 2, 3)
        attenuating = [i for i, r in enumerate(parts) if r.density is not None]
        volumetric = any((r.activity or 0.0) > 0 for r in parts)
        grid = activity_grid(shapes, [r.activity for r in parts], boxes,
                             np.array([min(r.shape.semi_axes_mm) for r in parts]))
        kinds, a, b, frac = [], [], [], []
        for s in self.sources:
            line = isinstance(s, LineSource)
            kinds.append(1 if line else 0)
            a.append(s.start_mm if line else s.position_mm)
            b.append(s.stop_mm if line else s.position_mm)
            frac.append(s.fraction)
        if volumetric or (volume is not None and np.any(volume.activity > 0)):
            kinds.append(2 if volumetric else 3)
            a.append((0.0, 0.0, 0.0))
            b.append((0.0, 0.0, 0.0))
            frac.append(max(0.0, 1.0 - sum(frac)))
        src_cdf = np.cumsum(frac) / np.sum(frac)
        return PackedPhantom(
            shapes=shapes, layers=layers, layer_boxes=boxes[attenuating].reshape(-1, 2, 3),
            grid=grid,
            src_kind=np.array(kinds, dtype=np.int64),
            src_a=np.array(a, dtype=np.float64).reshape(-1, 3),
            src_b=np.array(b, dtype=np.float64).reshape(-1, 3), src_cdf=src_cdf,
            vox=voxel_source(volume) if volume is not None else no_source(),
            density=voxel_density(volume) if volume is not None else no_density(),
        )


def _in_box(points_mm: np.ndarray, shape: Shape) -> np.ndarray:
    """Indices of the points (N, 3) in a box around ``shape`` (a little larger than its
    bounding box), the only ones it may contain: a fine grid's map tests only those."""
    low, high = shape.bounding_box()
    pad = 1e-6 * (1.0 + np.abs(low) + np.abs(high))
    inside = np.ones(points_mm.shape[0], dtype=bool)
    for k in range(3):
        inside &= (points_mm[:, k] >= low[k] - pad[k]) & (points_mm[:, k] <= high[k] + pad[k])
    return np.flatnonzero(inside)


def _grid_of(grid: Any, shape: tuple[int, int, int] | None,
             voxel_mm: float | tuple[float, float, float] | None,
             origin_mm: tuple[float, float, float] | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shape, voxel mm, origin mm) of a grid given as one or by its parts."""
    if grid is not None:
        shape, voxel_mm, origin_mm = grid.shape, grid.voxel_mm, grid.origin_mm
    if shape is None or voxel_mm is None:
        raise UserError("a map needs a grid, or shape and voxel_mm")
    n = np.asarray(shape, dtype=np.int64)
    v = np.broadcast_to(np.asarray(voxel_mm, dtype=np.float64), (3,))
    o = -(n - 1) / 2.0 * v if origin_mm is None else np.asarray(origin_mm, dtype=np.float64)
    return n, v, o


def _centres(grid: Any, shape: tuple[int, int, int] | None,
             voxel_mm: float | tuple[float, float, float] | None,
             origin_mm: tuple[float, float, float] | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, v, o = _grid_of(grid, shape, voxel_mm, origin_mm)
    axes = [o[k] + v[k] * np.arange(n[k]) for k in range(3)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
