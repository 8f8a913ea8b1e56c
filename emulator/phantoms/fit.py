"""How far from the scanner's axis an object reaches, and whether it fits in the bore."""

from __future__ import annotations

import math

import numpy as np

from emulator.phantoms.model import LineSource, Phantom
from emulator.phantoms.shapes import Shape
from emulator.phantoms.volume import AIR_CUT
from hw.scanner import Scanner
from infra.errors import UserError

#: Points on a curved shape's surface whose distance from the axis bounds its reach.
SURFACE_POINTS = 4096


def _surface(shape: Shape) -> np.ndarray:
    """Points (N, 3) mm on ``shape``'s surface (a box's corners: its farthest points)."""
    if shape.kind == "box":
        q = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    else:
        k = np.arange(SURFACE_POINTS) + 0.5
        z = 1.0 - 2.0 * k / SURFACE_POINTS
        phi = math.pi * (1.0 + 5.0 ** 0.5) * k
        r = np.sqrt(1.0 - z * z)
        q = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
        if shape.kind == "cylinder":   # its rim: the unit circle at both ends
            q = np.concatenate([q / np.maximum(r, 1e-9)[:, None] * [1, 1, 0] + [0, 0, 1],
                                q / np.maximum(r, 1e-9)[:, None] * [1, 1, 0] - [0, 0, 1]])
    return (q * np.asarray(shape.semi_axes_mm)) @ np.asarray(shape.rotation) \
        + np.asarray(shape.centre_mm)


def reach_mm(phantom: Phantom) -> float:
    """The largest distance (mm) from the scanner's axis of anything in ``phantom``: its
    regions, its voxels denser than air or with activity, its sources."""
    points = [_surface(r.shape) for r in phantom.parts]
    for s in phantom.sources:
        points.append(np.array([s.start_mm, s.stop_mm] if isinstance(s, LineSource)
                               else [s.position_mm]))
    reach = max((float(np.hypot(p[:, 0], p[:, 1]).max()) for p in points), default=0.0)
    v = phantom.volume
    if v is not None:
        occupied = np.argwhere((v.density > AIR_CUT) | (v.activity > 0))
        if occupied.size:
            centres = occupied @ v.affine[:3, :3].T + v.affine[:3, 3]
            half = 0.5 * np.linalg.norm(v.affine[:2, :3], axis=1).sum()
            reach = max(reach, float(np.hypot(centres[:, 0], centres[:, 1]).max()) + half)
    return reach


def check_fits(phantom: Phantom, scanner: Scanner) -> Phantom:
    """``phantom``, or a one-line error when it reaches beyond the scanner's bore (a PET ring's
    crystals, a SPECT camera's collimator faces at their radius of rotation)."""
    bore = scanner.ring_radius_mm
    reach = reach_mm(phantom)
    if reach > bore:
        where = phantom.source or f"phantom '{phantom.name}'"
        raise UserError(f"{'phantom file ' if phantom.source else ''}{where}: the object does "
                        f"not fit in {scanner.name}: it reaches {reach:.1f} mm from the axis, "
                        f"the bore's radius is {bore:.1f} mm")
    return phantom
