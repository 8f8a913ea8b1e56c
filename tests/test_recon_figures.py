"""NEMA figures of merit, the 17-segment polar map and the phantom report, on images of known
content."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from infra.errors import UserError
from recon.grid import Grid
from recon.metrics import figures
from recon.metrics.report import phantom_report
from recon.spect.polarmap import TERRITORIES, polar_map, segment_of

GRID = Grid((60, 60, 40), (2.0, 2.0, 2.0), (-59.0, -59.0, -39.0))


def _spheres_image(ratio=4.0):
    x, y, z = GRID.centres_mm()
    a = np.full(GRID.shape, 10.0, np.float32)
    hot = [((30.0, 0.0, 0.0), 16.0), ((-30.0, 0.0, 0.0), 24.0)]
    cold = [((0.0, 30.0, 0.0), 20.0)]
    for (c, d), v in [*((h, ratio * 10.0) for h in hot), *((c, 0.0) for c in cold)]:
        a[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (d / 2) ** 2] = v
    return GRID.image(a, "Bq/mL"), hot, cold


def test_image_quality_of_an_exact_image():
    image, hot, cold = _spheres_image()
    background = figures.background_ring(30.0, 6, (-28.0, 28.0))
    rows = figures.image_quality(image, hot, cold, background, 4.0)
    assert [r.hot for r in rows] == [True, True, False]
    for r in rows:
        assert r.contrast == pytest.approx(1.0)
        assert r.variability == pytest.approx(0.0, abs=1e-12)
        assert r.c_background == pytest.approx(10.0)
    # half the activity in a hot sphere: half the contrast
    assert figures.hot_contrast(25.0, 10.0, 4.0) == pytest.approx(0.5)
    assert figures.cold_contrast(2.5, 10.0) == pytest.approx(0.75)
    with pytest.raises(UserError):
        figures.image_quality(image, hot, cold, background[:1], 4.0)
    with pytest.raises(UserError):
        figures.sphere_mean(image, (500.0, 0.0, 0.0), 10.0)


@pytest.mark.parametrize("sigma", [1.6, 2.3, 4.0])
def test_profile_width_of_a_sampled_gaussian(sigma):
    x = np.arange(-20, 21, 1.0) + 0.3
    p = np.exp(-x ** 2 / (2 * sigma ** 2))
    assert figures.profile_width(p, 1.0, 0.5) == pytest.approx(2.3548 * sigma, rel=0.06)
    assert figures.profile_width(p, 1.0, 0.1) == pytest.approx(4.2919 * sigma, rel=0.06)
    assert figures.profile_width(p, 2.0, 0.5) == pytest.approx(2 * 2.3548 * sigma, rel=0.06)


def test_point_resolution_finds_the_peak_and_widths():
    x, y, z = GRID.centres_mm()
    s = np.array([3.0, 4.0, 5.0])
    a = np.exp(-((x - 11) ** 2 / (2 * s[0] ** 2) + (y + 7) ** 2 / (2 * s[1] ** 2)
                 + (z - 3) ** 2 / (2 * s[2] ** 2))).astype(np.float32)
    res = figures.point_resolution(GRID.image(a), (10.0, -6.0, 2.0))
    np.testing.assert_allclose(res.peak_mm, (11.0, -7.0, 3.0))
    np.testing.assert_allclose(res.fwhm_mm, 2.3548 * s, rtol=0.06)
    np.testing.assert_allclose(res.fwtm_mm, 4.2919 * s, rtol=0.06)


def test_nu4_uniformity_recovery_and_spill_over():
    x, y, z = GRID.centres_mm()
    a = np.where(x ** 2 + y ** 2 <= 40 ** 2, 100.0, 0.0) + 0 * z
    rod = ((x - 20) ** 2 + y ** 2 <= 3 ** 2) & (np.abs(z) <= 10)
    a = np.where(rod, 50.0, a)
    cold = ((x + 20) ** 2 + y ** 2 <= 4 ** 2) & (np.abs(z) <= 10)
    a = np.where(cold, 5.0, a).astype(np.float32)
    image = GRID.image(a)
    u = figures.uniformity(image, (0.0, 20.0, 0.0), 20.0, 20.0)
    assert u["mean"] == pytest.approx(100.0) and u["percent_std"] == pytest.approx(0.0)
    assert figures.rod_recovery(image, [((20.0, 0.0), 6.0)], (-8.0, 8.0), 100.0) == [
        pytest.approx(1.0)]
    assert figures.spill_over_ratio(image, (-20.0, 0.0, 0.0), 4.0, 10.0, 100.0) == (
        pytest.approx(0.05))


def _heart(defect_theta_deg=None):
    """A left ventricle along +z (base z = -20, apex z = +20) with anterior = -y; optional
    defect at short-axis angle theta (0 anterior, 90 septal) over the whole length."""
    g = Grid((50, 50, 50), (2.0, 2.0, 2.0), (-49.0, -49.0, -49.0))
    x, y, z = g.centres_mm()
    r = np.hypot(x, y) + 0 * z
    wall = (r > 15) & (r < 23) & (z > -25) & (z < 20)
    d = np.sqrt(x ** 2 + y ** 2 + (z - 20) ** 2)
    cap = (d > 15) & (d < 23) & (z >= 20)
    a = np.where(wall | cap, 100.0, 0.0)
    anterior, septal = np.array([0.0, -1.0, 0.0]), np.cross([0.0, 0.0, 1.0], [0.0, -1.0, 0.0])
    if defect_theta_deg is not None:
        t = np.deg2rad(defect_theta_deg)
        direction = np.cos(t) * anterior + np.sin(t) * septal
        along = x * direction[0] + y * direction[1]
        across = np.abs(x * direction[1] - y * direction[0])
        a = np.where(wall & (along > 0) & (across < 8), 30.0, a)
    return g.image(a.astype(np.float32)), anterior


@pytest.mark.parametrize(("theta", "segments"), [(0, (1, 7, 13)), (180, (4, 10, 15)),
                                                 (90, (2, 3, 8, 9, 14)),
                                                 (270, (5, 6, 11, 12, 16))])
def test_polar_map_puts_a_defect_in_its_segments(theta, segments, tmp_path):
    image, anterior = _heart(theta)
    pm = polar_map(image, apex_mm=(0, 0, 20), base_mm=(0, 0, -20), anterior=anterior)
    low = set(np.nonzero(pm.percent < 85)[0] + 1)
    assert set(segments) >= low and low & set(segments)
    assert pm.percent.max() == pytest.approx(100.0)
    png = pm.write_png(tmp_path / "polar.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_polar_map_of_a_normal_heart_is_uniform_and_septum_is_on_the_right_side():
    image, anterior = _heart()
    pm = polar_map(image, (0, 0, 20), (0, 0, -20), anterior)
    assert pm.percent.min() > 90
    assert set(TERRITORIES) == set(pm.territory_means())
    # segment angles: 0 anterior, 90 septal (AHA)
    assert list(segment_of(0, np.array([0, 60, 120, 180, 240, 300]))) == [1, 2, 3, 4, 5, 6]
    assert list(segment_of(2, np.array([0, 90, 180, 270]))) == [13, 14, 15, 16]
    with pytest.raises(UserError):
        polar_map(image, (0, 0, 0), (0, 0, 0), anterior)


def test_phantom_report_from_plain_geometry(tmp_path):
    image, hot, _ = _spheres_image()

    def sphere(c, d, activity):
        return SimpleNamespace(shape=SimpleNamespace(centre_mm=c, semi_axes_mm=(d / 2,) * 3),
                               activity=activity)

    regions = {"background": SimpleNamespace(shape=None, activity=1.0),
               **{f"sphere_{d:g}": sphere(c, d, 4.0) for c, d in hot}}
    phantom = SimpleNamespace(name="iq", regions=lambda: regions)
    report = phantom_report(image, phantom, tmp_path)
    iq = report["image_quality"]
    assert iq["activity_ratio"] == 4.0
    assert [s["contrast"] for s in iq["spheres"]] == [pytest.approx(1.0)] * 2
    x, y, z = GRID.centres_mm()
    point = np.exp(-((x - 3) ** 2 + (y - 5) ** 2 + z ** 2) / 8.0).astype(np.float32)
    src = SimpleNamespace(position_mm=(3.0, 5.0, 0.0))
    rep = phantom_report(GRID.image(point), SimpleNamespace(name="p", regions=lambda: {"p": src}))
    assert rep["resolution"]["p"]["fwhm_mm"] == [pytest.approx(2.3548 * 2, rel=0.06)] * 3


def test_report_of_the_emulated_cardiac_phantom_finds_its_anterior_defect(tmp_path):
    """The emulator's cardiac phantom (its own geometry: rotated LV, anterior defect): the polar
    map of its activity finds the defect in the LAD's anterior segments."""
    phantoms = pytest.importorskip("emulator.phantoms")
    from hw import load_scanner
    from recon.grid import default_grid

    spect = load_scanner("spect-dual-head")
    grid = default_grid(spect)
    phantom = phantoms.get("cardiac", spect)
    image = grid.image(phantom.activity_map(grid).astype(np.float32), "counts")
    report = phantom_report(image, phantom, tmp_path)["polar_map"]
    values = np.array(list(report["segments"].values()))
    assert int(np.argmin(values)) + 1 in (1, 7, 13)
    assert values.min() < 80 and np.median(values) > 95
    assert report["territories"]["LAD"] < report["territories"]["RCA"]
    assert (tmp_path / "polar_map.png").is_file()
