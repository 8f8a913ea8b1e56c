"""The mu-maps of standard phantoms of known construction, placed where their parts are found in the
emission: what the emission alone cannot show (a PMMA wall, a solid block) is in the standard.

The NEMA NU 4-2008 image-quality phantom (the standard's section 6; Leeds Test Objects): a PMMA
cylinder 33.5 mm across, its cavity 30 mm across, closed by 3 mm ends; a 20 mm solid PMMA block
drilled by the rods, a 30 mm fillable chamber beside it, and in the chamber's lid half two
chambers 8 mm across (1 mm PMMA walls), one filled with water and one with air. The axis, the
chamber and the inserts are found in the image (:func:`recon.metrics.nu4.find_layout`). Which
insert holds air the image does not say; the prompts do (:func:`air_by_lines`): the phantom is
symmetric about its axis, so as many lines cross each insert but for the water's attenuation,
and the insert more lines cross is the air (6 % more, over the 8 mm insert). The rods' holes
(water in PMMA, at most 5 mm across) are left as PMMA.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recon.corrections.attenuation import MU_WATER_PER_MM
from recon.grid import Grid, Image
from recon.metrics import nu4

#: PMMA at 511 keV (1/mm): water's per electron, 1.19 g/cm3 with 0.9717 of water's electrons
#: per gram (Z/A 0.5394 against 0.5551).
MU_PMMA_PER_MM = MU_WATER_PER_MM * 1.19 * 0.9717
#: NU 4 image-quality phantom (mm): outer diameter, cavity diameter, end thickness, insert inner
#: diameter and wall.
NU4_BODY_D_MM, NU4_CAVITY_D_MM, NU4_END_MM = 33.5, 30.0, 3.0
NU4_INSERT_D_MM, NU4_INSERT_WALL_MM = 8.0, 1.0

#: The inserts are told apart by their lines when the counts differ by this many standard
#: deviations (else the colder in the image is taken as air, as the report does).
LINES_SIGMA = 3.0
#: The inserts' radius (mm) within which a line crosses one.
INSERT_RADIUS_MM = NU4_INSERT_D_MM / 2
#: The phantoms with a map of their construction, and the words that name it (with
#: ``calculated: `` before and ``, on the emission`` after, within DICOM's 64 characters).
TEMPLATES = {"nu4-iq": "NEMA NU 4 IQ phantom's construction"}


def has_template(phantom: str | None) -> bool:
    """Whether ``phantom`` (a run's, or ``--phantom``) has a map of its construction."""
    return phantom in TEMPLATES


def template_map(phantom: str, emission: Image, ends_mm: tuple[np.ndarray, np.ndarray] | None
                 = None) -> Image:
    """The mu-map (1/mm) on ``emission``'s grid of ``phantom`` (:data:`TEMPLATES`), placed where
    ``emission`` (an image of its activity) shows it; ``ends_mm`` (the prompts' line ends,
    [n, 3] each) tell the air insert from the water insert (:func:`air_by_lines`)."""
    if phantom != "nu4-iq":
        raise KeyError(phantom)
    layout = nu4.find_layout(emission)
    if ends_mm is not None:
        layout = air_by_lines(layout, *ends_mm)
    image = nu4_iq_map(layout, emission.grid)
    image.meta["inserts_named_by"] = layout.inserts_named_by
    return image


def air_by_lines(layout: nu4.Nu4Layout, a_mm: np.ndarray, b_mm: np.ndarray) -> nu4.Nu4Layout:
    """``layout`` with its air and water inserts told apart by the lines from ``a_mm`` to
    ``b_mm`` that cross each (see the module docstring), as is when the counts do not differ by
    :data:`LINES_SIGMA` standard deviations."""
    first = lines_through(layout.air_xy_mm, layout.inserts_z_mm, a_mm, b_mm)
    second = lines_through(layout.water_xy_mm, layout.inserts_z_mm, a_mm, b_mm)
    if abs(first - second) < LINES_SIGMA * np.sqrt(max(first + second, 1)):
        return layout
    air, water = ((layout.air_xy_mm, layout.water_xy_mm) if first > second
                  else (layout.water_xy_mm, layout.air_xy_mm))
    return replace(layout, air_xy_mm=air, water_xy_mm=water,
                   inserts_named_by=f"lines through each: {max(first, second)} air, "
                                    f"{min(first, second)} water")


def lines_through(xy_mm: tuple[float, float], z_mm: tuple[float, float], a_mm: np.ndarray,
                  b_mm: np.ndarray) -> int:
    """How many lines from ``a_mm`` to ``b_mm`` cross the insert at ``xy_mm`` (:func:`crossing`)."""
    return int(np.count_nonzero(crossing(xy_mm, z_mm, a_mm, b_mm)))


def crossing(xy_mm: tuple[float, float], z_mm: tuple[float, float], a_mm: np.ndarray,
             b_mm: np.ndarray) -> np.ndarray:
    """Whether each line from ``a_mm`` to ``b_mm`` passes within :data:`INSERT_RADIUS_MM` of the
    axis-parallel segment at ``xy_mm`` between ``z_mm`` (lines along the axis do not)."""
    a, d = np.asarray(a_mm, np.float64), np.asarray(b_mm, np.float64) - a_mm
    across = (d[:, :2] ** 2).sum(axis=1)
    ok = across > 1.0
    t = ((xy_mm[0] - a[:, 0]) * d[:, 0] + (xy_mm[1] - a[:, 1]) * d[:, 1]) / np.where(ok, across, 1)
    near = a + t[:, None] * d
    return (ok & (np.hypot(near[:, 0] - xy_mm[0], near[:, 1] - xy_mm[1]) < INSERT_RADIUS_MM)
            & (near[:, 2] > min(z_mm)) & (near[:, 2] < max(z_mm)))


def nu4_iq_map(layout: nu4.Nu4Layout, grid: Grid) -> Image:
    """The NU 4 image-quality phantom's mu-map on ``grid``, as ``layout`` places it; each edge
    shares the voxels it crosses."""
    cx, cy = layout.centre_xy_mm
    ends = (*layout.chamber_z_mm, *layout.rods_z_mm)
    body = (_disc(grid, cx, cy, NU4_BODY_D_MM)
            * _span(grid, min(ends) - NU4_END_MM, max(ends) + NU4_END_MM))
    water = _disc(grid, cx, cy, NU4_CAVITY_D_MM) * _span(grid, *layout.chamber_z_mm)
    mu = MU_PMMA_PER_MM * body + (MU_WATER_PER_MM - MU_PMMA_PER_MM) * water
    lo, hi = layout.inserts_z_mm
    towards_chamber = -1.0 if hi >= max(layout.chamber_z_mm) - 1e-6 else 1.0
    bottom = (lo - NU4_INSERT_WALL_MM, hi) if towards_chamber < 0 else (lo, hi + NU4_INSERT_WALL_MM)
    for (x, y), fill in ((layout.air_xy_mm, 0.0), (layout.water_xy_mm, MU_WATER_PER_MM)):
        wall = _disc(grid, x, y, NU4_INSERT_D_MM + 2 * NU4_INSERT_WALL_MM) * _span(grid, *bottom)
        inner = _disc(grid, x, y, NU4_INSERT_D_MM) * _span(grid, lo, hi)
        mu += (MU_PMMA_PER_MM - MU_WATER_PER_MM) * wall + (fill - MU_PMMA_PER_MM) * inner
    return grid.image(np.clip(mu, 0.0, None).astype(np.float32), "1/mm")


def _disc(grid: Grid, x_mm: float, y_mm: float, diameter_mm: float) -> np.ndarray:
    """[x, y, 1]: how much of each voxel's column lies within a disc (a ramp one voxel wide)."""
    x, y, _ = grid.centres_mm()
    r = np.hypot(x - x_mm, y - y_mm)
    return np.clip((diameter_mm / 2 - r) / grid.voxel_mm[0] + 0.5, 0.0, 1.0)


def _span(grid: Grid, lo_mm: float, hi_mm: float) -> np.ndarray:
    """[1, 1, z]: how much of each voxel's slice lies between ``lo_mm`` and ``hi_mm``."""
    _, _, z = grid.centres_mm()
    half = grid.voxel_mm[2] / 2
    return np.clip((np.minimum(z + half, hi_mm) - np.maximum(z - half, lo_mm))
                   / grid.voxel_mm[2], 0.0, 1.0)
