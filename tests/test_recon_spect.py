"""SPECT: projector geometry and collimator blur, adjointness, OSEM with attenuation and TEW."""

from __future__ import annotations

import numpy as np
import pytest

from hw import load_scanner
from infra.errors import UserError
from recon.grid import default_grid
from recon.metrics.figures import profile_width, sphere_mean
from recon.spect.osem import SpectProjector, detection_efficiency, spect_osem, tew_scatter


@pytest.fixture(scope="module")
def spect():
    return load_scanner("spect-dual-head")


@pytest.fixture(scope="module")
def body(spect):
    grid = default_grid(spect)
    x, y, z = grid.centres_mm()
    inside = (x ** 2 + y ** 2 <= 90.0 ** 2) & (np.abs(z) <= 60.0)
    return grid, inside, np.where(inside, 0.0153, 0.0).astype(np.float32)   # water, 140 keV


def test_adjoint_with_attenuation(spect, body):
    grid, _, mu = body
    proj = SpectProjector(spect, grid, mu)
    rng = np.random.default_rng(1)
    x = rng.random(grid.shape).astype(np.float32)
    y = rng.random(proj.shape).astype(np.float32)
    views = np.arange(0, 120, 7)
    ax = proj.forward(x, views).astype(np.float64)
    aty = proj.back(y * (np.isin(np.arange(120), views).reshape(2, 60)[:, :, None, None]),
                    views).astype(np.float64)
    lhs, rhs = np.sum(ax * y), np.sum(x * aty)
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_point_source_lands_on_its_pixel_with_the_collimator_blur(spect):
    grid = default_grid(spect)
    image = np.zeros(grid.shape, np.float32)
    i, j, k = 47, 32, 36                            # x = +62, y = +2, z = +18 mm
    image[i, j, k] = 1e6
    p = np.array([grid.axis_mm(0)[i], grid.axis_mm(1)[j], grid.axis_mm(2)[k]])
    proj = SpectProjector(spect, grid)
    pr = proj.forward(image)
    g = spect.spect
    # every view: centroid at the point's (column, row) on that head
    for head in range(2):
        for view, angle in enumerate(np.deg2rad(g.view_angles_deg(head))):
            plane = pr[head, view].astype(np.float64)
            col = (plane.sum(0) * np.arange(g.columns)).sum() / plane.sum()
            row = (plane.sum(1) * np.arange(g.rows)).sum() / plane.sum()
            u = -p[0] * np.sin(angle) + p[1] * np.cos(angle)
            assert col == pytest.approx(u / g.pixel_mm + (g.columns - 1) / 2, abs=0.15)
            assert row == pytest.approx(p[2] / g.pixel_mm + (g.rows - 1) / 2, abs=0.05)
    # the blur is the collimator's at the point's distance (views aligned with the grid)
    widths = {}
    for head, distance in ((0, g.radius_of_rotation_mm - p[0]),
                           (1, g.radius_of_rotation_mm + p[0])):
        profile = pr[head, 0].sum(axis=0)
        widths[head] = profile_width(profile, g.pixel_mm, 0.5)
        expected = float(g.collimator.geometric_resolution_mm(distance))
        assert widths[head] == pytest.approx(expected, rel=0.2)
    assert widths[1] > 1.4 * widths[0]
    # counts: efficiency over the views per head, without attenuation
    per_view = 1e6 * detection_efficiency(spect) / g.views_per_head
    assert pr[0, 0].sum() == pytest.approx(per_view, rel=1e-3)


def test_tew_scatter():
    s = tew_scatter(np.array([10.0, 0.0]), np.array([2.0, 4.0]), 5.0, 4.0, 28.0)
    np.testing.assert_allclose(s, [(10 / 5 + 2 / 4) * 14, (4 / 4) * 14])
    with pytest.raises(UserError):
        tew_scatter(np.ones(2), np.ones(2), 0.0, 4.0, 28.0)


def test_osem_recovers_activity_with_attenuation_and_scatter(spect, body):
    grid, inside, mu = body
    x, y, z = grid.centres_mm()
    hot = (x - 45.0) ** 2 + y ** 2 + z ** 2 <= 20.0 ** 2
    activity = np.where(inside, 1.0, 0.0) + np.where(hot, 3.0, 0.0)
    activity = (activity * 3e10 / activity.sum()).astype(np.float32)   # emissions over the scan
    proj = SpectProjector(spect, grid, mu)
    expected = proj.forward(activity)
    scatter = np.full_like(expected, 0.3 * expected.mean())
    counts = np.random.default_rng(2).poisson(expected + scatter).astype(np.float32)
    image = spect_osem(counts, spect, scatter, mu, iterations=3, subsets=10)
    background_true = activity[inside & ~hot].mean()
    bkg = sphere_mean(image, (-45.0, 0.0, 0.0), 30.0)
    centre = sphere_mean(image, (0.0, -30.0, 0.0), 30.0)
    ratio = sphere_mean(image, (45.0, 0.0, 0.0), 24.0) / bkg
    print(f"background {bkg / background_true:.3f} of truth, centre "
          f"{centre / background_true:.3f}, hot/background {ratio:.2f} (true 4)")
    assert bkg == pytest.approx(background_true, rel=0.1)
    assert centre == pytest.approx(background_true, rel=0.1)
    assert 3.0 < ratio < 5.0
    assert image.array.sum() == pytest.approx(activity.sum(), rel=0.1)
    # without attenuation correction the centre sags
    plain = spect_osem(counts, spect, scatter, None, iterations=2, subsets=10)
    sag = sphere_mean(plain, (0.0, -30.0, 0.0), 30.0) / sphere_mean(plain, (0.0, -75.0, 0.0), 20.0)
    assert sag < 0.85


def test_spect_user_mistakes(spect, brain):
    with pytest.raises(UserError, match="SPECT"):
        SpectProjector(brain)
    with pytest.raises(UserError, match="head, view, row, column"):
        spect_osem(np.zeros((2, 3, 4, 5), np.float32), spect)
    with pytest.raises(UserError, match="pixel"):
        SpectProjector(spect, default_grid(spect, 2.0))
