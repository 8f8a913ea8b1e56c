"""The monitor's histogram kernels against plain numpy and the scanner's geometry."""

from __future__ import annotations

import numpy as np
import pytest

from coincidence import histograms as h
from hw import COINC_DTYPE, UserError, load_scanner

BRAIN = load_scanner("bedside-brain")
CPR = BRAIN.crystals_per_ring  # 256: 16 sectors of 16 crystals


def _coinc(pairs, dt=0, delayed=0):
    c = np.zeros(len(pairs), COINC_DTYPE)
    c["crystal_a"] = [a for a, _ in pairs]
    c["crystal_b"] = [b for _, b in pairs]
    c["dt"] = dt
    c["delayed"] = delayed
    return c


def test_energy_spectra_match_numpy_and_accumulate():
    rng = np.random.default_rng(0)
    e = rng.uniform(-50, 1100, 10_000).astype(np.float32)
    e[:3] = [np.nan, 1000.0, 0.0]
    crystal = rng.integers(0, 5, e.size)
    out = np.zeros(250, np.int64)
    outside = h.accumulate_energy(e[:4000], out, 1000.0) + h.accumulate_energy(e[4000:], out, 1000.0)
    half_open = e[e < 1000]  # np.histogram's last bin also takes 1000 keV
    assert np.array_equal(out, np.histogram(half_open, 250, (0, 1000))[0])
    assert outside == e.size - out.sum()
    per = np.zeros((5, 100), np.int32)
    h.accumulate_crystal_energy(crystal, e, per, 1000.0)
    for c in range(5):
        mine = e[(crystal == c) & (e < 1000)]
        assert np.array_equal(per[c], np.histogram(mine, 100, (0, 1000))[0])


def test_dt_histogram_is_signed_by_crystal_order_and_selects_prompts():
    c = _coinc([(10, 500), (500, 10), (7, 9), (1, 2)], dt=[300, 300, 3999, 100])
    c["delayed"][3] = 1
    out = np.zeros(8, np.int64)  # 1000 ps bins over [-4000, 4000)
    assert h.accumulate_dt(c, out, 4000) == 0
    # +300 (a < b), -300 (a > b), +3999; the delayed one is left out
    assert out.tolist() == [0, 0, 0, 1, 1, 0, 0, 1]
    both = np.zeros(8, np.int64)
    h.accumulate_dt(c, both, 4000, delayed=-1)
    assert both.sum() == 4
    assert h.accumulate_dt(_coinc([(1, 2)], dt=5000), out, 4000) == 1


def test_hit_map_is_rings_by_crystals_per_ring():
    rng = np.random.default_rng(1)
    crystal = rng.integers(0, BRAIN.n_crystals, 50_000)
    out = np.zeros((BRAIN.n_rings, CPR), np.int64)
    h.accumulate_hit_map(crystal, out)
    assert np.array_equal(out.ravel(), np.bincount(crystal, minlength=BRAIN.n_crystals))
    with pytest.raises(UserError, match="crystal id 12288 is outside"):
        h.accumulate_hit_map(np.array([BRAIN.n_crystals]), out)


def test_sinogram_geometry():
    shape = h.sinogram_shape(BRAIN)
    assert shape == (128, 128)
    rng = np.random.default_rng(4)
    ring = rng.integers(0, BRAIN.n_rings, 2000)
    tang = rng.integers(0, CPR, 2000)
    opposite = _coinc(list(zip(ring * CPR + tang, ring * CPR + (tang + CPR // 2) % CPR,
                               strict=True)))
    s = np.zeros(shape, np.int64)
    assert h.accumulate_sinogram(opposite, BRAIN, s) == 0
    # LORs through the axis: s = 0, on the two central radial bins
    assert s[:, 63:65].sum() == 2000

    # swapping the ends, or another ring, gives the same bin; turning by one sector (pi / 8)
    # moves the angle by 128 / 8 = 16 bins at the same radius
    a, b = 3, 3 + 100
    one = np.zeros(shape, np.int64)
    h.accumulate_sinogram(_coinc([(a, b)]), BRAIN, one)
    swapped = np.zeros(shape, np.int64)
    h.accumulate_sinogram(_coinc([(b + 5 * CPR, a + 9 * CPR)]), BRAIN, swapped)
    assert np.array_equal(one, swapped)
    turned = np.zeros(shape, np.int64)
    h.accumulate_sinogram(_coinc([(a + 16, b + 16)]), BRAIN, turned)
    (k, r), (k2, r2) = np.argwhere(one)[0], np.argwhere(turned)[0]
    assert (k2 - k) % 128 == 16 and r2 == r

    # the radial coordinate is the LOR's distance from the axis
    pa, pb = BRAIN.crystal_centres[a, :2], BRAIN.crystal_centres[b, :2]
    d = pb - pa
    distance = abs(d[0] * pa[1] - d[1] * pa[0]) / np.hypot(*d)
    bin_mm = BRAIN.transaxial_fov_mm / 128
    assert abs(abs((r + 0.5) * bin_mm - BRAIN.transaxial_fov_mm / 2) - distance) <= bin_mm / 2

    # a LOR that misses the field of view is counted as outside; delayeds only on request
    edge = _coinc([(0, 8)], delayed=1)
    assert h.accumulate_sinogram(edge, BRAIN, s, delayed=1) == 1
    assert h.accumulate_sinogram(edge, BRAIN, s) == 0


def test_bad_arguments():
    with pytest.raises(UserError, match="out must be a non-empty 1-D"):
        h.accumulate_energy(np.zeros(3, np.float32), np.zeros((2, 2)), 1000.0)
    with pytest.raises(UserError, match="positive number"):
        h.accumulate_energy(np.zeros(3, np.float32), np.zeros(10), 0)
    with pytest.raises(UserError, match="COINC_DTYPE"):
        h.accumulate_dt(np.zeros(3), np.zeros(10), 4000)
