"""SPECT: collimator efficiency and resolution, rotating heads, NaI response, scatter."""

from __future__ import annotations

import math

import numpy as np
import pytest

import emulator
from emulator.phantoms import Phantom, PointSource
from emulator.physics import spect
from hw import load_scanner


@pytest.fixture(scope="module")
def camera():
    return load_scanner("spect-dual-head")


def _pixels(raw, scanner):
    s = scanner.spect
    per_head = s.rows * s.columns
    head = raw["crystal"] // per_head
    return head, (raw["crystal"] % per_head) // s.columns, raw["crystal"] % s.columns


@pytest.fixture(scope="module")
def off_centre(camera):
    phantom = Phantom("point-100", "point 100 mm along +x",
                      sources=(PointSource("point", (100.0, 0.0, 0.0)),))
    return emulator.simulate(camera, phantom, "Tc-99m", activity_mbq=300.0, duration_s=0.6,
                             seed=3, truth=True)


def test_point_sensitivity_is_geometric_efficiency_times_crystal(camera, off_centre):
    sim = off_centre
    nuclide = emulator.nuclides.get("Tc-99m")
    mu = float(camera.material.mu(140.5))
    per_head = (nuclide.gamma_yield[0] * camera.spect.collimator.efficiency
                * (1 - math.exp(-mu * camera.crystal_size_mm[2]))
                * camera.response.crystal_efficiency)
    expected = 300e6 * per_head * camera.spect.n_heads
    c = sim.counters
    detected = c["deposits"] - c["deposits_rejected"]
    assert detected / sim.duration_s == pytest.approx(expected, rel=0.05)
    assert c["decays"] == pytest.approx(300e6 * 0.6, rel=0.02)
    e = sim.singles["energy"]
    peak = e[(e > 100) & (e < 180)]
    q16, q84 = np.percentile(peak, [15.87, 84.13])
    assert np.median(peak) == pytest.approx(140.5, abs=2.0)
    assert 2.3548 * (q84 - q16) / 2 == pytest.approx(camera.response.fwhm_kev(140.5), rel=0.15)


def test_resolution_follows_distance_and_heads_rotate(camera, off_centre):
    sim = off_centre
    s = camera.spect
    head, row, col = _pixels(sim.raw, camera)
    view = spect.view_of(sim.raw["t"], sim.duration_s, s.views_per_head)
    pitch = s.pixel_mm

    def fwhm(values: np.ndarray) -> float:
        sd = np.std(values * pitch)
        return 2.3548 * math.sqrt(max(sd**2 - pitch**2 / 12, 0.0))

    first = view < 3                                      # gantry within 9 deg of the start
    near, far = first & (head == 0), first & (head == 1)  # 100 and 300 mm from the faces
    intrinsic = spect.NAI_INTRINSIC_FWHM_MM
    for mask, distance in ((near, 100.0), (far, 300.0)):
        expected = math.hypot(float(s.collimator.geometric_resolution_mm(distance)), intrinsic)
        assert fwhm(row[mask]) == pytest.approx(expected, rel=0.2)
    assert fwhm(row[near]) < 0.75 * fwhm(row[far])
    # the source at +x moves across head 0 as the gantry turns: column ~ -100 sin(phi) / pixel
    for v in (0, 15, 30):
        phi = math.radians(s.view_angles_deg(0)[v])
        centre = np.mean(col[(head == 0) & (view == v)]) - (s.columns - 1) / 2
        assert centre * pitch == pytest.approx(-100 * math.sin(phi), abs=4.0)


def test_scatter_reaches_the_photopeak_window_in_the_cardiac_phantom(camera):
    sim = emulator.simulate(camera, "cardiac", "Tc-99m", activity_mbq=400.0, duration_s=1.0,
                            seed=2, truth=True)
    e, tr = sim.singles["energy"], sim.truth
    lo, hi = camera.acquisition["energy_window_kev"]
    window = (e >= lo) & (e < hi)
    fraction = np.mean(tr["scatters"][window] > 0)
    assert 0.12 < fraction < 0.45
    below = (e > 90) & (e < lo)
    assert np.mean(tr["scatters"][below] > 0) > 0.6            # the low window is mostly scatter
    # the triple-energy-window estimate is of the right size
    w = 0.06 * 140.5
    low = np.count_nonzero((e >= lo - w) & (e < lo))
    up = np.count_nonzero((e >= hi) & (e < hi + w))
    tew = (low / w + up / w) * (hi - lo) / 2
    assert tew == pytest.approx(np.count_nonzero(tr["scatters"][window] > 0), rel=0.5)


@pytest.mark.parametrize("nuclide", ["Lu-177", "I-123"])
def test_other_single_photon_emitters(camera, nuclide):
    sim = emulator.simulate(camera, "point-water", nuclide, activity_mbq=500.0, duration_s=0.05,
                            seed=1, truth=True)
    assert sim.raw.size > 100
    energies = emulator.nuclides.get(nuclide).gamma_kev
    e = sim.singles["energy"][sim.truth["scatters"] == 0]
    main = max(energies[:2], key=lambda k: np.count_nonzero(np.abs(e - k) < 10))
    assert np.count_nonzero(np.abs(e - main) < 0.1 * main) > 0.3 * e.size
