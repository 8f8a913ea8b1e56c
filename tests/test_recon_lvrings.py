"""The long axis refined through the short-axis rings' centres: back onto a ventricle's axis
from a tilted start, whatever a dimmed wall does to the counts."""

from __future__ import annotations

import numpy as np

from recon.grid import Grid
from recon.outputs.png import smoothed
from recon.spect import lvrings, lvsearch

SHORT_MM, LONG_MM, WALL_MM = 24.0, 40.0, 9.0


def _ventricle(axis: np.ndarray, dim_side: np.ndarray) -> tuple[Grid, np.ndarray]:
    """A blurred apical two thirds of an ellipsoidal wall about ``axis`` through the origin, the
    half of it on ``dim_side`` at 40 % of the rest (as a wrong attenuation map reads it)."""
    grid = Grid((48, 48, 48), (3.0, 3.0, 3.0), (-70.5, -70.5, -70.5))
    i = np.arange(48) * 3.0 - 70.5
    p = np.stack(np.meshgrid(i, i, i, indexing="ij"), axis=-1)
    t, v = lvsearch.frame(axis)
    x, y, z = p @ t, p @ v, p @ axis
    r = np.sqrt((x * x + y * y) / SHORT_MM ** 2 + z * z / LONG_MM ** 2)
    wall = (np.abs(r - 1.0) < WALL_MM / (2 * SHORT_MM)) & (z >= -0.5 * LONG_MM * r)
    a = np.where(wall, np.where(p @ dim_side > 0, 0.4, 1.0), 0.05).astype(np.float32)
    a = smoothed(a, 12.0, grid.voxel_mm).astype(np.float64)
    return grid, a / a.max()


def _degrees(u: np.ndarray, w: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(u @ w / np.linalg.norm(u) / np.linalg.norm(w),
                                              -1.0, 1.0))))


def test_a_tilted_start_comes_back_onto_the_axis_despite_a_dimmed_wall():
    true = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    t, _ = lvsearch.frame(true)
    grid, a = _ventricle(true, dim_side=t)
    start = np.cos(np.radians(20.0)) * true + np.sin(np.radians(20.0)) * t
    assert abs(_degrees(start, true) - 20.0) < 0.1
    centre, axis = lvrings.refine(grid.image(a, "relative"), np.array([4.0, -3.0, 2.0]), start,
                                  SHORT_MM, LONG_MM)
    assert _degrees(axis, true) < 3.0, _degrees(axis, true)
    # the centre is on the ventricle's axis, not beside it
    assert np.linalg.norm(centre - (centre @ true) * true) < 3.0, centre
    assert axis @ start > 0  # still apex-ward


def test_an_image_with_no_rings_leaves_the_axis_as_it_was():
    grid = Grid((32, 32, 32), (3.0, 3.0, 3.0), (-46.5, -46.5, -46.5))
    axis = np.array([0.0, 0.0, 1.0])
    centre, out = lvrings.refine(grid.image(np.zeros((32, 32, 32)), "relative"), np.zeros(3),
                                 axis, SHORT_MM, LONG_MM)
    assert np.array_equal(out, axis) and np.array_equal(centre, np.zeros(3))


def test_a_ventricle_on_the_patients_right_is_not_taken_for_the_heart():
    # two like ventricles in one body, the right one (x < 0 in LPS) brighter: the finder keeps
    # to the left of the body's midline, where a heart is (a dextrocardia takes --lv-axis)
    from recon.spect.lvaxis import find_lv_axis

    grid = Grid((64, 48, 40), (4.0, 4.0, 4.0), (-126.0, -94.0, -78.0))
    x, y, z = (np.arange(n) * 4.0 + o for n, o in zip(grid.shape, grid.origin_mm, strict=True))
    p = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1)
    axis = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
    a = np.where((p[..., 0] / 120.0) ** 2 + (p[..., 1] / 90.0) ** 2 < 1.0, 0.1, 0.0)
    for centre_x, level in ((40.0, 1.0), (-50.0, 1.5)):
        q = p - np.array([centre_x, 0.0, 0.0])
        t, v = lvsearch.frame(axis)
        r = np.sqrt(((q @ t) ** 2 + (q @ v) ** 2) / SHORT_MM ** 2 + (q @ axis) ** 2 / LONG_MM ** 2)
        wall = (np.abs(r - 1.0) < WALL_MM / (2 * SHORT_MM)) & (q @ axis >= -0.5 * LONG_MM * r)
        a = np.where(wall, level, a)
    lv = find_lv_axis(grid.image(smoothed(a.astype(np.float32), 10.0, grid.voxel_mm), "kBq/mL"))
    centre = (lv.base_mm + 0.75 * lv.apex_mm) / 1.75
    assert abs(centre[0] - 40.0) < 10.0 and abs(centre[1]) < 10.0, centre
    assert _degrees(lv.apex_mm - lv.base_mm, axis) < 8.0
