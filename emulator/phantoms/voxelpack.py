"""A voxel volume as arrays for the kernels: its activity for drawing decays, its density for photons.

Decays are drawn exactly from the voxel activity: a voxel with probability activity x volume
(Walker's alias table, :func:`emulator.phantoms.voxels.alias_table`), then a point uniform in it
through the affine (any rotation). Photons look the density up where delta tracking puts a
tentative interaction (:mod:`emulator.physics.flight`): the voxel holding the point, air beyond
the volume. The density is kept only inside the box of the voxels denser than
:data:`emulator.phantoms.volume.AIR_CUT` (the air around a body is crossed without tentative
interactions).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emulator.phantoms.volume import AIR_CUT, VoxelVolume, dense_index_box
from emulator.phantoms.voxels import alias_table


class VoxelSource(NamedTuple):
    """The voxels with activity, for :func:`emulator.physics.sampling.positions`."""

    prob: np.ndarray      # (V,) float64 alias-table probability
    alias: np.ndarray     # (V,) int64 alias
    index: np.ndarray     # (V,) int64 flat index [i, j, k] (C order) of each voxel
    shape: np.ndarray     # (3,) int64
    affine: np.ndarray    # (12,) the affine's first three rows: voxel index -> mm


class VoxelDensity(NamedTuple):
    """The densities of a box of voxels, for the photons (:mod:`emulator.physics.flight`)."""

    rho: np.ndarray       # (n_i n_j n_k,) float64, C order ([0.0] and n (1, 1, 1) for none)
    to_corner: np.ndarray  # (12,) scanner mm -> index from the box's first voxel's low corner
    n: np.ndarray         # (3,) int64 voxels of the box
    lo: np.ndarray        # (3,) mm, low corner of the axis-aligned box around them
    hi: np.ndarray        # (3,) mm
    rho_max: float        # 0 for none


def no_source() -> VoxelSource:
    return VoxelSource(np.ones(1), np.zeros(1, np.int64), np.zeros(1, np.int64),
                       np.ones(3, np.int64), np.zeros(12))


def no_density() -> VoxelDensity:
    return VoxelDensity(np.zeros(1), np.zeros(12), np.ones(3, np.int64), np.zeros(3),
                        np.zeros(3), 0.0)


def voxel_source(volume: VoxelVolume) -> VoxelSource:
    """The volume's voxels with activity > 0 and their alias table."""
    flat = volume.activity.reshape(-1)
    index = np.flatnonzero(flat > 0).astype(np.int64)
    if index.size == 0:
        return no_source()
    prob, alias = alias_table(flat[index].astype(np.float64))
    return VoxelSource(prob, alias, index, np.asarray(volume.shape, np.int64),
                       np.ascontiguousarray(volume.affine[:3]).reshape(-1))


def voxel_density(volume: VoxelVolume) -> VoxelDensity:
    """The densities of the box around the volume's voxels denser than air."""
    low, high = dense_index_box(volume.density, AIR_CUT)
    if np.any(low > high):
        return no_density()
    box = volume.density[low[0]:high[0] + 1, low[1]:high[1] + 1, low[2]:high[2] + 1]
    # index from the box's first voxel's low corner: i' = (to_index p) - low + 0.5
    to_corner = volume.to_index.copy()
    to_corner[:, 3] += 0.5 - low
    corners = volume.corners_mm(low, high)
    return VoxelDensity(np.ascontiguousarray(box, np.float64).reshape(-1),
                        np.ascontiguousarray(to_corner).reshape(-1),
                        np.asarray(box.shape, np.int64), corners.min(axis=0),
                        corners.max(axis=0), float(box.max()))
