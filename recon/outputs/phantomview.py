"""A phantom in a picture: three orthogonal slices of its activity above the same of its density.

Slices through the activity's centre (of a phantom with none, the middle), on a grid of the
voxel phantom's own voxel size (a shaped one's: :data:`VOXEL_MM`): axial (the patient's right on
the left, anterior at the top), coronal and sagittal (superior at the top), each panel its own
grey scale (activity white at its 99.5th percentile, density white at 2 g/mL).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.phantoms import Phantom
from emulator.phantoms.fit import reach_mm
from emulator.physics.media import mu_water
from recon.grid import Grid
from recon.outputs.png import display_max, magnified, to_grey, write_png

#: A shaped phantom's picture's voxels (mm).
VOXEL_MM = 2.0
#: The density drawn white (g/mL, water-equivalent): bone and denser.
DENSITY_WHITE = 2.0
#: Grey pixels between panels.
GAP_PX = 4


def grid_of(phantom: Phantom) -> Grid:
    """A grid around the phantom (its volume's box; its regions' reach and length)."""
    if phantom.volume is not None:
        lo, hi = phantom.volume.box_mm()
        step = float(phantom.volume.voxel_mm.min())
    else:
        boxes = np.array([r.shape.bounding_box() for r in phantom.parts]) if phantom.parts \
            else np.zeros((1, 2, 3))
        r = reach_mm(phantom)
        lo = np.array([-r, -r, boxes[:, 0, 2].min()])
        hi = np.array([r, r, boxes[:, 1, 2].max()])
        step = VOXEL_MM
    n = np.maximum(np.ceil((hi - lo) / step).astype(int), 1)
    return Grid(tuple(n), (step, step, step), tuple((lo + hi) / 2 - (n - 1) / 2 * step))


def _panels(volume: np.ndarray, at: tuple[int, int, int], white: float) -> list[np.ndarray]:
    i, j, k = at
    return [to_grey(volume[:, :, k].T, white),           # axial: [y, x]
            to_grey(volume[:, j, :].T[::-1], white),     # coronal: [z up, x]
            to_grey(volume[i, :, :].T[::-1], white)]     # sagittal: [z up, y]


def _row(panels: list[np.ndarray], height: int) -> np.ndarray:
    parts = []
    for p in panels:
        pad = np.full((height, p.shape[1]), 40, np.uint8)
        pad[:p.shape[0]] = p
        parts += [pad, np.full((height, GAP_PX), 40, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def write_picture(phantom: Phantom, path: str | Path) -> Path:
    """The phantom's picture (PNG): activity slices above density slices."""
    grid = grid_of(phantom)
    activity = phantom.activity_map(grid).astype(np.float64)
    density = phantom.mu_map(grid, 511.0) / float(mu_water(511.0))
    total = activity.sum()
    if total > 0:
        at = tuple(round(float((activity.sum(axis=tuple(a for a in range(3) if a != k))
                                * np.arange(n)).sum() / total))
                   for k, n in enumerate(grid.shape))
    else:
        at = tuple(n // 2 for n in grid.shape)
    top = _panels(activity, at, display_max(activity))
    bottom = _panels(density, at, DENSITY_WHITE)
    height = max(p.shape[0] for p in top)
    picture = np.concatenate([_row(top, height), np.full((GAP_PX, _row(top, height).shape[1]),
                                                         40, np.uint8), _row(bottom, height)])
    return write_png(path, magnified(picture))
