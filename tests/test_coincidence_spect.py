"""SPECT energy windows, TEW scatter estimate and projection binning."""

from __future__ import annotations

import numpy as np
import pytest

from coincidence import spect
from hw import SINGLE_DTYPE, UserError, load_scanner

CAMERA = load_scanner("spect-dual-head")
GEO = CAMERA.spect
VIEW_PS = 10**9  # 1 ms per view


def _single(t, head, row, column, energy):
    return (t, head * GEO.rows * GEO.columns + row * GEO.columns + column, energy)


def test_tc99m_windows():
    w = spect.energy_windows(140.0)
    assert w.peak == pytest.approx((126.0, 154.0))
    assert w.lower == pytest.approx((116.2, 126.0))
    assert w.upper == pytest.approx((154.0, 163.8))
    assert w.widths_kev == pytest.approx([9.8, 28.0, 9.8])


def test_tew_formula_bin_by_bin():
    w = spect.EnergyWindows((110.0, 120.0), (120.0, 160.0), (160.0, 165.0))
    p = np.zeros((3, 2), np.int64)
    p[0] = [10, 0]
    p[2] = [5, 4]
    # S = (C_low / 10 + C_up / 5) * 40 / 2
    assert spect.tew_scatter(p, w) == pytest.approx([(1 + 1) * 20, (0 + 0.8) * 20])


def test_projection_bins_head_view_row_column_and_window():
    w = spect.energy_windows(140.0)
    s = np.array([
        _single(0, 0, 0, 0, 140.0),                    # head 0, view 0, peak
        _single(VIEW_PS - 1, 1, 63, 5, 120.0),         # head 1, view 0, lower window
        _single(VIEW_PS, 1, 2, 63, 155.0),             # view 1, upper window
        _single(59 * VIEW_PS + 7, 0, 10, 20, 130.0),   # last view
        _single(60 * VIEW_PS, 0, 10, 20, 130.0),       # after the last view: not counted
        _single(-1, 0, 10, 20, 130.0),                 # before the start: not counted
        _single(5, 0, 1, 1, 200.0),                    # outside every window
    ], SINGLE_DTYPE)
    p = spect.bin_projections(s, CAMERA, w, VIEW_PS)
    assert p.shape == (3, 2, 60, 64, 64) == spect.projection_shape(CAMERA)
    assert p.sum() == 4
    assert p[spect.PEAK, 0, 0, 0, 0] == 1
    assert p[spect.LOWER, 1, 0, 63, 5] == 1
    assert p[spect.UPPER, 1, 1, 2, 63] == 1
    assert p[spect.PEAK, 0, 59, 10, 20] == 1


def test_chunks_accumulate_into_the_callers_array():
    rng = np.random.default_rng(2)
    n = 20_000
    s = np.zeros(n, SINGLE_DTYPE)
    s["t"] = np.sort(rng.integers(0, 60 * VIEW_PS, n))
    s["crystal"] = rng.integers(0, CAMERA.n_crystals, n)
    s["energy"] = rng.uniform(100, 180, n)
    w = spect.energy_windows(140.0)
    whole = spect.bin_projections(s, CAMERA, w, VIEW_PS)
    acc = np.zeros(spect.projection_shape(CAMERA), np.uint32)
    for chunk in np.array_split(s, 7):
        spect.bin_projections(chunk, CAMERA, w, VIEW_PS, out=acc)
    assert np.array_equal(acc, whole)
    inside = ((s["energy"] >= w.lower[0]) & (s["energy"] < w.upper[1])).sum()
    assert whole.sum() == inside


def test_tew_recovers_a_linear_scatter_background_under_the_photopeak():
    """TEW's trapezoid is exact for a background linear in energy: the estimate of the scatter
    in the photopeak window must match the background counts there, within Poisson errors."""
    rng = np.random.default_rng(11)
    n_scatter, n_primary = 400_000, 300_000
    # background density rising linearly from 90 to 180 keV: E = 90 + 90 sqrt(u)
    e_scatter = 90 + 90 * np.sqrt(rng.random(n_scatter))
    e_primary = rng.normal(140.0, 140.0 * 0.10 / 2.355 / 2, n_primary)  # narrow: inside 126-154
    s = np.zeros(n_scatter + n_primary, SINGLE_DTYPE)
    s["energy"] = np.concatenate([e_scatter, e_primary])
    s["crystal"] = rng.integers(0, CAMERA.n_crystals // 64, s.size) * 64  # a few pixels
    w = spect.energy_windows(140.0)
    p = spect.bin_projections(s, CAMERA, w, 10**15)
    estimate = spect.tew_scatter(p.sum(axis=(1, 2, 3, 4)), w)
    truth = ((e_scatter >= w.peak[0]) & (e_scatter < w.peak[1])).sum()
    sigma = np.sqrt(truth + (w.widths_kev[1] / 2) ** 2 * (p[0].sum() / w.widths_kev[0] ** 2
                                                         + p[2].sum() / w.widths_kev[2] ** 2))
    assert abs(estimate - truth) < 3 * sigma
    assert abs(estimate - truth) < 0.02 * truth


def test_bad_input():
    w = spect.energy_windows(140.0)
    one = np.array([_single(0, 0, 0, 0, 140.0)], SINGLE_DTYPE)
    with pytest.raises(UserError, match="not a SPECT scanner"):
        spect.bin_projections(one, load_scanner("bedside-brain"), w, VIEW_PS)
    with pytest.raises(UserError, match="view duration must be a positive integer"):
        spect.bin_projections(one, CAMERA, w, 0)
    with pytest.raises(UserError, match="integer with shape"):
        spect.bin_projections(one, CAMERA, w, VIEW_PS, out=np.zeros((3, 2), np.int64))
    bad = one.copy()
    bad["crystal"] = CAMERA.n_crystals
    with pytest.raises(UserError, match=r"single 0 has crystal id 8192, outside 0\.\.8191"):
        spect.bin_projections(bad, CAMERA, w, VIEW_PS)
    with pytest.raises(UserError, match="photopeak energy"):
        spect.energy_windows(-1.0)
    with pytest.raises(UserError, match="scatter window fraction"):
        spect.energy_windows(140.0, scatter_fraction=0.95)
    with pytest.raises(UserError, match="3 energy windows first"):
        spect.tew_scatter(np.zeros((2, 4)), w)
