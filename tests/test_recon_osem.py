"""LM-OSEM on geometric test data (tests/test_recon_sampler.py): point source position, FWHM and
quantification; contrast recovery vs iterations, size and TOF; randoms; attenuation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_recon_projector import _cylinder_image
from test_recon_sampler import (
    isotropic,
    points_in_cylinder,
    points_in_sphere,
    sample_coinc,
)

from hw import COINC_DTYPE, SPEED_OF_LIGHT_MM_PER_PS, load_scanner
from infra.errors import UserError
from recon.grid import Grid, default_grid
from recon.metrics import figures
from recon.pet.lors import LORs, crystal_efficiency, lor_endpoints
from recon.pet.osem import lm_mlem, lm_osem
from recon.pet.system import Attenuation, sample_pairs

POINT = np.array([10.3, -20.7, 5.4])
N_POINT = 300_000


@pytest.fixture(scope="module")
def point_data(brain):
    rng = np.random.default_rng(0)
    coinc = sample_coinc(brain, np.repeat(POINT[None], N_POINT, axis=0), rng)
    grid = Grid((32, 32, 32), (1.0, 1.0, 1.0), tuple(np.round(POINT) - 15.5))
    return coinc, grid


@pytest.fixture(scope="module")
def point_image(brain, point_data):
    coinc, grid = point_data
    return lm_mlem(coinc, brain, grid, iterations=20, tof=False, sensitivity_samples=2_000_000)


def test_point_source_within_one_voxel_with_fwhm_of_the_crystal_size(brain, point_image,
                                                                     record_property):
    res = figures.point_resolution(point_image, POINT)
    a = point_image.array.astype(np.float64)
    x, y, z = point_image.grid.centres_mm()
    w = a / a.sum()
    centroid = np.array([np.sum(w * x), np.sum(w * y), np.sum(w * z)])
    record_property("fwhm_mm", res.fwhm_mm)
    record_property("fwtm_mm", res.fwtm_mm)
    print(f"point source at {POINT} mm: peak {res.peak_mm}, centroid {centroid.round(2)}, "
          f"FWHM {np.round(res.fwhm_mm, 2)} mm, FWTM {np.round(res.fwtm_mm, 2)} mm")
    assert np.all(np.abs(np.array(res.peak_mm) - POINT) <= 1.0)        # one 1 mm voxel
    assert np.linalg.norm(centroid - POINT) < 0.5
    # two crystals of width d see a point near the centre through a triangular aperture of FWHM
    # d/2 (1.5 mm here; the data have no DOI, acollinearity or positron range): 20 MLEM
    # iterations on 1 mm voxels get there, not below 0.3 d nor beyond d
    d = brain.crystal_size_mm[0]
    for fwhm, fwtm in zip(res.fwhm_mm, res.fwtm_mm, strict=True):
        assert 0.3 * d <= fwhm <= d
        assert fwhm < fwtm < 3 * fwhm


def test_point_source_quantification(brain, point_data, point_image):
    """The image total is the number of emissions the model explains the prompts with: the
    geometric data were detected with the geometry alone, the model also has the crystals'
    efficiency eff (eff^2 per pair), so the image holds N / eff^2."""
    emitted_model = N_POINT / crystal_efficiency(brain) ** 2
    assert point_image.units == "counts"
    assert point_image.array.sum() == pytest.approx(emitted_model, rel=0.03)


def test_mlem_is_osem_with_one_subset_and_warm_start_continues(brain, point_data):
    coinc, grid = point_data
    opts = dict(tof=True, sensitivity_samples=500_000)
    a = lm_mlem(coinc[:20000], brain, grid, iterations=2, **opts)
    b = lm_osem(coinc[:20000], brain, grid, iterations=2, subsets=1, **opts)
    np.testing.assert_array_equal(a.array, b.array)
    half = lm_osem(coinc[:20000], brain, grid, iterations=1, subsets=1, **opts)
    c = lm_osem(coinc[:20000], brain, grid, iterations=1, subsets=1, image=half, **opts)
    np.testing.assert_allclose(c.array, a.array, rtol=1e-5, atol=1e-6 * float(a.array.max()))
    calls = []
    lm_osem(coinc[:20000], brain, grid, iterations=2, subsets=3,
            callback=lambda it, s, img: calls.append((it, s, img.array.shape)), **opts)
    assert calls == [(i, s, grid.shape) for i in range(2) for s in range(3)]


# ------------------------------------------------------------------------ contrast recovery

SPHERES = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
SPHERE_RING_MM = 50.0
RATIO = 4.0


def _iq_phantom(brain, rng, n_background):
    """A NEMA-IQ-like phantom sized for the brain scanner: 160 x 100 mm warm cylinder, six hot
    spheres at 4:1 on a 50 mm circle."""
    radius, length = 80.0, 100.0
    density = n_background / (np.pi * radius ** 2 * length)
    centres = [(SPHERE_RING_MM * np.cos(a), SPHERE_RING_MM * np.sin(a), 0.0)
               for a in np.arange(6) * np.pi / 3]
    pts = [points_in_cylinder(rng, n_background, radius, length)]
    for c, d in zip(centres, SPHERES, strict=True):
        pts.append(points_in_sphere(rng, rng.poisson((RATIO - 1) * density * np.pi / 6 * d ** 3),
                                    c, d))
    return sample_coinc(brain, np.concatenate(pts), rng), centres


def _recovery_curves(brain, coinc, centres, grid, tof, iterations):
    background = figures.background_ring(SPHERE_RING_MM, 6, (-30.0, 30.0))
    hot = list(zip(centres, SPHERES, strict=True))
    curves = []

    def after(it, s, image):
        if s == 3:
            rows = figures.image_quality(image, hot, [], background, RATIO)
            curves.append([r.contrast for r in rows])

    lm_osem(coinc, brain, grid, iterations=iterations, subsets=4, tof=tof, callback=after,
            sensitivity_samples=3_000_000)
    return np.array(curves)                      # [iteration, sphere]


def _save_curves_png(path, nontof, tof):
    """Both recovery-vs-iteration curves (mean over spheres, and the largest and smallest)."""
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter

    pg.mkQApp()
    plot = pg.PlotWidget(background="w")
    plot.resize(640, 420)
    plot.addLegend()
    plot.setLabel("bottom", "OSEM iteration (4 subsets)")
    plot.setLabel("left", "hot contrast recovery Q_H")
    plot.getAxis("left").enableAutoSIPrefix(False)
    plot.setYRange(0, 1)
    it = np.arange(1, len(tof) + 1)
    for curves, colour, name in ((nontof, "b", "non-TOF"), (tof, "r", "TOF")):
        for k, style in ((0, pg.QtCore.Qt.PenStyle.DotLine),
                         (-1, pg.QtCore.Qt.PenStyle.SolidLine)):
            plot.plot(it, curves[:, k], pen=pg.mkPen(colour, width=2, style=style),
                      symbol="o", symbolBrush=colour,
                      name=f"{name}, {SPHERES[k]:g} mm sphere")
    ImageExporter(plot.plotItem).export(str(path))
    return path


def test_contrast_recovery_rises_with_iterations_and_size_and_tof_is_faster(brain, tmp_path):
    rng = np.random.default_rng(11)
    coinc, centres = _iq_phantom(brain, rng, 1_400_000)
    grid = default_grid(brain, 3.0)
    iterations = 5
    nontof = _recovery_curves(brain, coinc, centres, grid, False, iterations)
    tof = _recovery_curves(brain, coinc, centres, grid, True, iterations)
    out = Path(os.environ.get("BEDSIDE_PET_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    png = _save_curves_png(out / "contrast_recovery_tof_vs_nontof.png", nontof, tof)
    print(f"{len(coinc)} prompts; Q_H per iteration (rows) and sphere {SPHERES} mm\n"
          f"non-TOF\n{np.round(nontof, 2)}\nTOF\n{np.round(tof, 2)}\ncurves: {png}")
    assert png.stat().st_size > 1000
    for curves in (nontof, tof):
        # every sphere's recovery rises with the iterations (the big ones saturate)
        assert np.all(np.diff(curves[:, 2:], axis=0) > -0.02)
        assert np.all(curves[-1] > curves[0])
        # and with the sphere size (averaged over the iterations: single late iterations are
        # noisy, ~0.03)
        by_size = curves.mean(axis=0)
        assert np.all(np.diff(by_size) > -0.05)
        assert by_size[-1] > by_size[0] + 0.15
        assert np.all(curves[:, -1] > curves[:, 0])
    # TOF gets to the recovery that non-TOF reaches at its last iteration sooner
    target = nontof[-1].mean()
    first_tof = int(np.argmax(tof.mean(axis=1) >= target))
    assert tof.mean(axis=1).max() >= target
    assert first_tof + 1 < iterations


# ------------------------------------------------------------------------------- randoms


def _randoms(brain, rng, n, window_ps, delayed):
    lors = sample_pairs(brain, n, rng, brain.acquisition["min_sector_difference"])
    out = np.zeros(n, COINC_DTYPE)
    out["crystal_a"], out["crystal_b"] = lors.crystal_a, lors.crystal_b
    out["dt"] = rng.integers(0, window_ps, n)
    out["delayed"] = delayed
    return out


def test_randoms_from_delayeds_remove_the_random_background(brain, point_data):
    coinc, _ = point_data
    rng = np.random.default_rng(5)
    window = brain.acquisition["coincidence_window_ps"]
    n_r = len(coinc) // 2
    data = np.concatenate([coinc, _randoms(brain, rng, n_r, window, 0),
                           _randoms(brain, rng, n_r, window, 1)])
    grid = Grid((30, 30, 20), (4.0, 4.0, 4.0), (-58.0, -58.0, -38.0))
    x, y, z = grid.centres_mm()
    far = (x - POINT[0]) ** 2 + (y - POINT[1]) ** 2 + (z - POINT[2]) ** 2 > 20.0 ** 2
    truth = lm_osem(coinc, brain, grid, 2, 4, sensitivity_samples=1_000_000).array
    raw = lm_osem(data, brain, grid, 2, 4, sensitivity_samples=1_000_000).array
    corrected = lm_osem(data, brain, grid, 2, 4, randoms="delayed",
                        sensitivity_samples=1_000_000).array
    bkg_raw, bkg_cor, bkg_true = raw[far].sum(), corrected[far].sum(), truth[far].sum()
    print(f"background outside 20 mm: no randoms {bkg_true:.0f}, uncorrected {bkg_raw:.0f}, "
          f"corrected {bkg_cor:.0f}")
    assert bkg_raw > 5 * bkg_true
    assert bkg_cor < 0.3 * (bkg_raw - bkg_true) + bkg_true
    near = ~far
    assert corrected[near].sum() == pytest.approx(truth[near].sum(), rel=0.05)


# ---------------------------------------------------------------------------- attenuation

MU_WATER = 0.0096   # 1/mm at 511 keV


def _cylinder_mu(grid, radius, length):
    x, y, z = grid.centres_mm()
    inside = (x ** 2 + y ** 2 <= radius ** 2) & (np.abs(z) <= length / 2)
    return np.where(inside, MU_WATER, 0.0).astype(np.float32)


def _line_chord(p, u, radius, half_length):
    """Length of the full line p + t u inside the z-aligned cylinder."""
    a = u[:, 0] ** 2 + u[:, 1] ** 2
    b = 2 * (p[:, 0] * u[:, 0] + p[:, 1] * u[:, 1])
    c = p[:, 0] ** 2 + p[:, 1] ** 2 - radius ** 2
    root = np.sqrt(np.maximum(b * b - 4 * a * c, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (-b - root) / (2 * a), (-b + root) / (2 * a)
        z0, z1 = (-half_length - p[:, 2]) / u[:, 2], (half_length - p[:, 2]) / u[:, 2]
    zlo, zhi = np.minimum(z0, z1), np.maximum(z0, z1)
    lo, hi = np.maximum(t0, zlo), np.minimum(t1, zhi)
    return np.maximum(hi - lo, 0)


def test_attenuation_factors_are_exp_minus_mu_chord(brain):
    """Through a water cylinder (partial-volume voxels) longer than the grid, LOR by LOR."""
    grid = default_grid(brain, 2.0)
    radius, length = 80.0, 400.0
    mu = grid.image(MU_WATER * _cylinder_image(grid, radius, length / 2), "1/mm")
    lors = sample_pairs(brain, 5000, np.random.default_rng(2), 2)
    ends = lor_endpoints(brain).astype(np.float64)
    p, q = ends[lors.crystal_a], ends[lors.crystal_b]
    d = q - p
    chord = _line_chord(p, d / np.linalg.norm(d, axis=1, keepdims=True), radius, length / 2)
    af = Attenuation(brain, mu).factors(lors)
    inside = chord > 40
    np.testing.assert_allclose(af[inside], np.exp(-MU_WATER * chord[inside]), rtol=0.02)


def test_attenuation_correction_flattens_a_uniform_cylinder(brain):
    """Events are kept with probability exp(-mu L) of their line through a water cylinder: the
    uncorrected image sags in the centre, the corrected one is flat."""
    rng = np.random.default_rng(8)
    radius, length = 80.0, 80.0
    pts = points_in_cylinder(rng, 1_500_000, radius, length)
    u = isotropic(rng, len(pts))
    survive = rng.random(len(pts)) < np.exp(-MU_WATER * _line_chord(pts, u, radius, length / 2))
    coinc = sample_coinc(brain, pts[survive], rng, u[survive])
    grid = default_grid(brain, 4.0)
    mu = _cylinder_mu(grid, radius, length)
    opts = dict(iterations=3, subsets=4, tof=True, sensitivity_samples=2_000_000)
    plain = lm_osem(coinc, brain, grid, **opts)
    ac = lm_osem(coinc, brain, grid, mu_map=mu, **opts)

    x, y, z = grid.centres_mm()
    r = np.broadcast_to(np.hypot(x, y), grid.shape)
    mid = np.broadcast_to(np.abs(z) < 25, grid.shape)

    def centre_over_edge(img):
        return img.array[mid & (r < 30)].mean() / img.array[mid & (r > 45) & (r < 65)].mean()

    print(f"centre/edge: no AC {centre_over_edge(plain):.3f}, AC {centre_over_edge(ac):.3f}")
    assert centre_over_edge(plain) < 0.9
    assert centre_over_edge(ac) == pytest.approx(1.0, abs=0.08)
    # corrected, the image holds every emission (in the model's units: / eff^2)
    emitted = len(pts) / crystal_efficiency(brain) ** 2
    assert ac.array.sum() == pytest.approx(emitted, rel=0.1)


# --------------------------------------------------------------------------------- mistakes


def test_user_mistakes(brain, point_data):
    coinc, grid = point_data
    with pytest.raises(UserError, match="field"):
        lm_osem(np.zeros(3, [("t", np.int64)]), brain, grid)
    with pytest.raises(UserError, match="PET"):
        lm_osem(coinc, load_scanner("spect-dual-head"))
    bad = coinc[:10].copy()
    bad["crystal_b"][3] = brain.n_crystals
    with pytest.raises(UserError, match="crystal"):
        lm_osem(bad, brain, grid, sensitivity_samples=1000)
    with pytest.raises(UserError, match="randoms"):
        lm_osem(coinc[:10], brain, grid, randoms="singles", sensitivity_samples=1000)
    with pytest.raises(UserError, match="subsets"):
        lm_osem(coinc[:10], brain, grid, subsets=0)


def test_tof_position_convention(brain):
    """dt = t_b - t_a > 0 puts the event towards crystal a: LORs built from the same crystal pair
    with opposite roles and dt see the same point."""
    ends = lor_endpoints(brain)
    ring = brain.crystals_per_ring * (brain.n_rings // 2)
    a, b = ring + 100, ring + (100 + brain.crystals_per_ring // 2 + 5) % brain.crystals_per_ring
    lors = LORs([a, b], [b, a], [40.0, -40.0])
    coinc = np.zeros(2, COINC_DTYPE)
    coinc["crystal_a"], coinc["crystal_b"] = [a, b], [b, a]
    coinc["dt"] = np.rint(np.array([40.0, -40.0]) * 2 / SPEED_OF_LIGHT_MM_PER_PS)
    assert np.allclose(LORs.from_coinc(coinc).tof_mm, lors.tof_mm, atol=0.2)
    grid = Grid((41, 41, 3), (2.0, 2.0, 2.0), (-40.0, -40.0, -2.0))
    mid = (ends[a] + ends[b]) / 2
    towards_a = (ends[a] - mid) / np.linalg.norm(ends[a] - mid)
    point = mid + 40.0 * towards_a
    image = np.zeros(grid.shape, np.float32)
    idx = np.rint(grid.index_of(point)).astype(int)
    image[idx[0], idx[1], :] = 1.0
    from recon.pet.projector import Projector

    fwd = Projector(brain, grid, tof=True).forward(image, lors)
    assert fwd[0] == pytest.approx(fwd[1], rel=1e-4)
    shifted = Projector(brain, grid, tof=True).forward(image, LORs([a], [b], [-40.0]))
    assert shifted[0] < 0.2 * fwd[0]
