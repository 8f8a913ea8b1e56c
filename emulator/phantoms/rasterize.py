"""A shaped phantom drawn on voxels: the same object as a voxel phantom (activity, density, labels).

Each voxel's activity and density are the means over ``sub``^3 points spread evenly in it (the
painted shapes' partial volume), its label the region holding its centre. Point and line sources
stay sources.
"""

from __future__ import annotations

import numpy as np

from emulator.jit import kernel
from emulator.phantoms.model import Phantom, Region
from emulator.phantoms.shapes import ROW, pack_row, row_contains
from emulator.phantoms.volume import VoxelVolume
from infra.errors import UserError

#: Default voxel edge (mm) and points per axis of a voxel's mean.
VOXEL_MM, SUBSAMPLES = 2.0, 3
#: The most voxels a drawn phantom may have.
MAX_VOXELS = 64_000_000


@kernel
def _paint(shapes, values, defined, boxes, origin, voxel, n, sub, out_act, out_dens, out_lab):
    """Paint the regions (rows of ``shapes``; ``values`` (R, K + 2): K activities, density,
    label; ``defined`` (R, K + 2) whether each is set) in order onto the grid: means of
    ``sub``^3 points a voxel for the K activities (``out_act`` (K, ...)) and density, the
    centre's label."""
    n_r, n_k = shapes.shape[0], out_act.shape[0]
    acts = np.zeros(n_k)
    point = np.zeros(n_k)
    for i in range(n[0]):
        x0 = origin[0] + i * voxel
        for j in range(n[1]):
            y0 = origin[1] + j * voxel
            for k in range(n[2]):
                z0 = origin[2] + k * voxel
                acts[:] = 0.0
                dens = 0.0
                for a in range(sub):
                    x = x0 + ((a + 0.5) / sub - 0.5) * voxel
                    for b in range(sub):
                        y = y0 + ((b + 0.5) / sub - 0.5) * voxel
                        for c in range(sub):
                            z = z0 + ((c + 0.5) / sub - 0.5) * voxel
                            point[:] = 0.0
                            pd = 0.0
                            for q in range(n_r):
                                if (x < boxes[q, 0, 0] or x > boxes[q, 1, 0] or y < boxes[q, 0, 1]
                                        or y > boxes[q, 1, 1] or z < boxes[q, 0, 2]
                                        or z > boxes[q, 1, 2]):
                                    continue
                                if row_contains(shapes, q, x, y, z):
                                    for m in range(n_k):
                                        if defined[q, m]:
                                            point[m] = values[q, m]
                                    if defined[q, n_k]:
                                        pd = values[q, n_k]
                            acts += point
                            dens += pd
                label = 0
                for q in range(n_r):
                    if defined[q, n_k + 1] and row_contains(shapes, q, x0, y0, z0):
                        label = np.int32(values[q, n_k + 1])
                for m in range(n_k):
                    out_act[m, i, j, k] = acts[m] / sub ** 3
                out_dens[i, j, k] = dens / sub ** 3
                out_lab[i, j, k] = label


def grid_around(phantom: Phantom, voxel_mm: float, margin_mm: float = 0.0
                ) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, voxel [0, 0, 0]'s centre mm) of a grid of ``voxel_mm`` around every region, its
    centre at the regions' box's."""
    boxes = np.array([r.shape.bounding_box() for r in phantom.parts])
    lo, hi = boxes[:, 0].min(axis=0) - margin_mm, boxes[:, 1].max(axis=0) + margin_mm
    n = np.maximum(np.ceil((hi - lo) / voxel_mm).astype(np.int64), 1)
    centre = (lo + hi) / 2.0
    return tuple(int(v) for v in n), centre - (n - 1) / 2.0 * voxel_mm


def voxelized(phantom: Phantom, voxel_mm: float = VOXEL_MM, sub: int = SUBSAMPLES,
              margin_mm: float | None = None) -> Phantom:
    """``phantom`` (shaped) as a voxel phantom on a grid of ``voxel_mm`` around its regions,
    one voxel beyond them by default; labels 1, 2, ... the regions that define an activity
    (hot or cold), the last painted winning, as :meth:`Phantom.label_map` numbers them."""
    if phantom.volume is not None:
        return phantom
    if not phantom.parts:
        raise UserError(f"phantom '{phantom.name}' has no regions to draw on voxels")
    if phantom.kinetics is not None:
        raise UserError(f"phantom '{phantom.name}' is kinetic: its voxels would lose its tissue "
                        "classes' curves (write it as shapes)")
    shape, origin = grid_around(phantom, voxel_mm, voxel_mm if margin_mm is None else margin_mm)
    if np.prod(shape) > MAX_VOXELS:
        raise UserError(f"phantom '{phantom.name}' on {voxel_mm:g} mm voxels is {shape}: over "
                        f"{MAX_VOXELS} voxels, take larger ones")
    volume = paint(phantom.parts, [[r.activity for r in phantom.parts]], voxel_mm, sub, shape,
                   origin)[0]
    return Phantom(phantom.name, phantom.description, sources=phantom.sources,
                   body_part=phantom.body_part, volume=volume,
                   activity_mbq=phantom.activity_mbq)


def paint(parts: tuple[Region, ...], activities: list[list[float | None]], voxel_mm: float,
          sub: int, shape: tuple[int, int, int], origin: np.ndarray) -> list[VoxelVolume]:
    """The regions ``parts`` drawn on the grid (``shape`` voxels of ``voxel_mm``, voxel [0, 0,
    0]'s centre at ``origin`` mm) once for each list of their activities (None: inherits):
    one volume each, sharing the density and labels (1, 2, ... the regions whose first list
    defines an activity)."""
    named = [r for r, a in zip(parts, activities[0], strict=True) if a is not None]
    label = {r.name: k + 1 for k, r in enumerate(named)}
    n_k = len(activities)
    shapes = np.array([pack_row(r.shape) for r in parts], np.float64).reshape(-1, ROW)
    values = np.array([[*(a[q] or 0.0 for a in activities), r.density or 0.0,
                        label.get(r.name, 0)] for q, r in enumerate(parts)], np.float64)
    defined = np.array([[*(a[q] is not None for a in activities), r.density is not None,
                         r.name in label] for q, r in enumerate(parts)], np.bool_)
    boxes = np.array([r.shape.bounding_box() for r in parts], np.float64)
    act = np.zeros((n_k, *shape), np.float32)
    dens = np.zeros(shape, np.float32)
    lab = np.zeros(shape, np.int32)
    _paint(shapes, values, defined, boxes, np.asarray(origin, np.float64), float(voxel_mm),
           np.asarray(shape, np.int64), int(sub), act, dens, lab)
    affine = np.eye(4)
    affine[[0, 1, 2], [0, 1, 2]] = voxel_mm
    affine[:3, 3] = origin
    names = {k: n for n, k in label.items()}
    return [VoxelVolume(act[m], dens, affine, lab, names) for m in range(n_k)]
