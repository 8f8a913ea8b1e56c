"""The phantom's attenuating medium carried by a rigid pose: shapes and voxels moved, not resampled."""

from __future__ import annotations

import itertools

import numpy as np

from emulator.phantoms.model import PackedPhantom, Phantom
from emulator.phantoms.shapes import ROW, pack_row
from emulator.phantoms.voxelpack import VoxelDensity
from emulator.physics import flight
from hw.motion import Pose


def moved_density(voxels: VoxelDensity, pose: Pose) -> VoxelDensity:
    """A voxel phantom's densities where ``pose`` puts them: the same voxels, the lookup's affine
    and the box around them moved (any rotation: the lookup goes through the affine)."""
    if voxels.rho_max <= 0:
        return voxels
    to_corner = np.eye(4)
    to_corner[:3] = voxels.to_corner.reshape(3, 4)
    from_corner = np.linalg.inv(to_corner)
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0.0, float(n))
                                                               for n in voxels.n])])
    moved = pose.apply((corners @ from_corner.T)[:, :3])
    lookup = (to_corner @ np.linalg.inv(pose.matrix))[:3]
    return voxels._replace(to_corner=np.ascontiguousarray(lookup).reshape(-1),
                           lo=moved.min(axis=0), hi=moved.max(axis=0))


class PosedMedium:
    """The medium of a phantom at any pose (the last one kept: a pose lasts many slices)."""

    def __init__(self, phantom: Phantom, packed: PackedPhantom, water: np.ndarray) -> None:
        self._layers = [r for r in phantom.parts if r.density is not None]
        self._voxels = packed.density
        self._water = water
        self._last: tuple[bytes, flight.Medium] | None = None

    def at(self, pose: Pose) -> flight.Medium:
        key = pose.matrix.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        shapes = [r.shape.moved(pose.rotation, tuple(pose.shift_mm)) for r in self._layers]
        layers = np.array([np.append(pack_row(s), r.density) for s, r in
                           zip(shapes, self._layers, strict=True)], np.float64)
        boxes = np.array([s.bounding_box() for s in shapes], np.float64)
        medium = flight.medium(layers.reshape(-1, ROW + 1), boxes.reshape(-1, 2, 3),
                               self._water, moved_density(self._voxels, pose))
        self._last = (key, medium)
        return medium
