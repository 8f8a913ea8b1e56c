"""The list-mode projector: adjointness, line integrals against analytic chords, TOF kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.errors import UserError
from recon.grid import Grid, default_grid
from recon.pet.lors import LORs, lor_endpoints, lor_order, tof_sigma_mm
from recon.pet.projector import Projector, pad, unpad
from recon.pet.system import sample_pairs
from recon.threads import get_threads, max_threads, set_threads


def _random_lors(scanner, n, seed, tof_spread_mm=60.0):
    rng = np.random.default_rng(seed)
    lors = sample_pairs(scanner, n, rng, scanner.acquisition["min_sector_difference"])
    return LORs(lors.crystal_a, lors.crystal_b, rng.normal(0, tof_spread_mm, n))


def _adjoint_error(projector, lors, seed):
    rng = np.random.default_rng(seed)
    x = rng.random(projector.grid.shape).astype(np.float32)
    y = rng.random(len(lors)).astype(np.float32)
    ax_y = np.dot(projector.forward(x, lors).astype(np.float64), y)
    x_aty = np.dot(x.ravel().astype(np.float64), projector.back(y, lors).ravel())
    return abs(ax_y - x_aty) / abs(ax_y)


@pytest.mark.parametrize("tof", [False, True])
def test_adjoint_default_grid(brain, tof):
    projector = Projector(brain, default_grid(brain), tof)
    lors = _random_lors(brain, 20000, 1)
    assert _adjoint_error(projector, lors, 2) < 1e-5


@settings(max_examples=8, deadline=None)
@given(shape=st.tuples(st.integers(3, 24), st.integers(3, 24), st.integers(2, 20)),
       voxel=st.tuples(*[st.floats(1.0, 9.0)] * 3),
       shift=st.tuples(*[st.floats(-40.0, 40.0)] * 3),
       tof=st.booleans(), seed=st.integers(0, 1000))
def test_adjoint_any_grid(brain, shape, voxel, shift, tof, seed):
    """Off-centre, anisotropic, partly outside the ring: still an exact adjoint pair."""
    origin = tuple(s - (n - 1) * v / 2 for s, n, v in zip(shift, shape, voxel, strict=True))
    projector = Projector(brain, Grid(shape, voxel, origin), tof)
    lors = _random_lors(brain, 3000, seed, tof_spread_mm=30.0)
    assert projector.forward(np.ones(shape, np.float32), lors).max() > 0
    assert _adjoint_error(projector, lors, seed + 1) < 1e-5


def _cylinder_image(grid, radius, half_length, sub=4):
    """Partial-volume fractions of a z-aligned cylinder, from sub^3 points per voxel."""
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    frac = np.zeros(grid.shape)
    x, y, z = grid.centres_mm()
    vx, vy, vz = grid.voxel_mm
    for dx in offs:
        for dy in offs:
            inside_xy = (x + dx * vx) ** 2 + (y + dy * vy) ** 2 <= radius ** 2
            for dz in offs:
                frac += inside_xy & (np.abs(z + dz * vz) <= half_length)
    return (frac / sub ** 3).astype(np.float32)


def _chords(p, q, radius, half_length):
    """Analytic length (mm) of the segments p-q inside the cylinder."""
    d = q - p
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (p[:, 0] * d[:, 0] + p[:, 1] * d[:, 1])
    c = p[:, 0] ** 2 + p[:, 1] ** 2 - radius ** 2
    disc = np.maximum(b * b - 4 * a * c, 0)
    t0 = np.clip((-b - np.sqrt(disc)) / (2 * a), 0, 1)
    t1 = np.clip((-b + np.sqrt(disc)) / (2 * a), 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        za = (-half_length - p[:, 2]) / d[:, 2]
        zb = (half_length - p[:, 2]) / d[:, 2]
    flat = d[:, 2] == 0
    z0 = np.where(flat, 0.0, np.minimum(za, zb))
    z1 = np.where(flat, 1.0, np.maximum(za, zb))
    z1 = np.where(flat & (np.abs(p[:, 2]) > half_length), -1.0, z1)
    lo, hi = np.maximum(t0, z0), np.minimum(t1, z1)
    return np.maximum(hi - lo, 0) * np.linalg.norm(d, axis=1)


@pytest.mark.parametrize("half_length", [50.0, 1000.0])
def test_forward_projection_matches_analytic_chords(brain, half_length):
    """A uniform cylinder (1/mm) projects to its chord lengths. The image is the cylinder's
    partial-volume voxelisation, whose blur (a voxel) changes near-tangent chords and LORs that run
    along an end cap, so: the mean over chords > 30 mm holds tight for both; LOR by LOR (chords >
    60 mm) for a cylinder through the whole grid; and an LOR passing more than two voxels
    outside it sees exactly nothing."""
    grid = default_grid(brain)
    radius = 70.0
    image = _cylinder_image(grid, radius, half_length)
    lors = _random_lors(brain, 20000, 5)
    ends = lor_endpoints(brain).astype(np.float64)
    chords = _chords(ends[lors.crystal_a], ends[lors.crystal_b], radius, half_length)
    proj = Projector(brain, grid, tof=False).forward(image, lors)
    long = chords > 30.0
    assert long.sum() > 3000
    assert abs(np.mean(proj[long] / chords[long] - 1)) < 0.005
    if half_length > brain.axial_fov_mm:
        longer = chords > 60.0
        rel = np.abs(proj[longer] / chords[longer] - 1)
        assert np.percentile(rel, 99) < 0.02
        assert rel.max() < 0.03
        p, d = ends[lors.crystal_a], ends[lors.crystal_b] - ends[lors.crystal_a]
        impact = np.abs(p[:, 0] * d[:, 1] - p[:, 1] * d[:, 0]) / np.hypot(d[:, 0], d[:, 1])
        outside = impact > radius + 2.5 * grid.voxel_mm[0]
        assert outside.sum() > 1000
        assert np.all(proj[outside] == 0)


def test_tof_kernel_integrates_to_the_non_tof_projection(brain):
    """A TOF kernel is a normalised Gaussian along the LOR: integrating a smooth image against
    it at a point inside the object equals the non-TOF value x density; far outside it is 0."""
    grid = default_grid(brain)
    image = np.ones(grid.shape, np.float32)
    lors = _random_lors(brain, 5000, 6, tof_spread_mm=0.0)
    sigma = tof_sigma_mm(brain)
    tof = Projector(brain, grid, tof=True).forward(image, lors)
    # a unit image seen through a unit-area kernel centred inside the grid gives ~1 (not mm)
    assert np.median(tof[tof > 0]) == pytest.approx(1.0, abs=0.02)
    far = LORs(lors.crystal_a, lors.crystal_b, np.full(len(lors), 400.0 + 3 * sigma))
    assert np.all(Projector(brain, grid, tof=True).forward(image, far) == 0)


def test_tof_kernel_peaks_towards_crystal_a(brain):
    """A point image responds most to events whose TOF position is at the point."""
    grid = Grid((41, 41, 5), (2.0, 2.0, 2.0), (-40.0, -40.0, -4.0))
    image = np.zeros(grid.shape, np.float32)
    image[30, 20, 2] = 1.0                       # x = +20 mm, y = 0, z = 0
    ends = lor_endpoints(brain)
    ring = brain.crystals_per_ring * (brain.n_rings // 2)
    a = ring + np.argmin(np.abs(np.arctan2(ends[ring:ring + brain.crystals_per_ring, 1],
                                           ends[ring:ring + brain.crystals_per_ring, 0])))
    b = ring + (a - ring + brain.crystals_per_ring // 2) % brain.crystals_per_ring
    shifts = np.linspace(-100, 100, 201)
    lors = LORs(np.full(shifts.size, a), np.full(shifts.size, b), shifts)
    resp = Projector(brain, grid, tof=True).forward(image, lors)
    mid_x = (ends[a, 0] + ends[b, 0]) / 2
    assert shifts[np.argmax(resp)] == pytest.approx(20.0 - mid_x, abs=2.0)


def test_threads_give_the_same_back_projection(brain):
    """Byte for byte: the events' chunks are set by their number, never by the threads."""
    projector = Projector(brain, default_grid(brain, 4.0), tof=True)
    lors = _random_lors(brain, 120_000, 7)
    values = np.random.default_rng(8).random(len(lors)).astype(np.float32)
    before = get_threads()
    try:
        set_threads(1)
        one = projector.back(values, lors)
        set_threads(max_threads())
        many = projector.back(values, lors)
    finally:
        set_threads(before)
    assert np.array_equal(one, many)


def _em_reference(projector, x, lors, w, additive, factors, order):
    """A^T (w / (w A x + r)) the long way: separate forward and back projections."""
    sub = lors.take(order)
    ybar = (w[order] * projector.forward(x, sub) + additive[order]
            + factors[sub.crystal_a] * factors[sub.crystal_b])
    ratio = np.divide(w[order], ybar, out=np.zeros_like(ybar), where=ybar > 0)
    return projector.back(ratio.astype(np.float32), sub)


@pytest.mark.parametrize("tof", [False, True])
def test_em_kernel_is_the_back_projection_of_the_forward_ratio(brain, tof):
    """The one-pass EM kernel (blocks on all threads, gathered through ``order``, randoms per
    event and per crystal) = back(w / (w forward(x) + r)); 1 thread = all threads, byte for
    byte."""
    projector = Projector(brain, default_grid(brain, 3.0), tof)
    lors = _random_lors(brain, 90_000, 11)      # several blocks
    rng = np.random.default_rng(12)
    x = rng.random(projector.grid.shape).astype(np.float32)
    w = rng.uniform(0.5, 2.0, len(lors)).astype(np.float32)
    w[::97] = 0
    scale = float(projector.forward(x, lors.take(slice(0, 1000))).mean())
    additive = (rng.random(len(lors)) * 0.3 * scale).astype(np.float32)
    factors = (rng.random(brain.n_crystals) * np.sqrt(0.2 * scale)).astype(np.float32)
    order = rng.permutation(len(lors))[:80_000]
    expected = _em_reference(projector, x, lors, w, additive, factors, order)
    before = get_threads()
    try:
        got = {}
        for n in sorted({1, max_threads()}):
            set_threads(n)
            got[n] = unpad(projector.em_back_padded(pad(x), lors, w, additive, factors, order))
    finally:
        set_threads(before)
    for image in got.values():
        np.testing.assert_allclose(image, expected, rtol=2e-4, atol=1e-6 * float(expected.max()))
    assert all(np.array_equal(image, got[1]) for image in got.values())
    # no order: every event as given; randoms per crystal only
    everything = projector.em_back_padded(pad(x), lors, w, crystal_randoms=factors)
    expected = _em_reference(projector, x, lors, w, np.zeros_like(w), factors,
                             np.arange(len(lors)))
    np.testing.assert_allclose(unpad(everything), expected, rtol=2e-4,
                               atol=1e-6 * float(expected.max()))


def test_user_mistakes_are_one_line_errors(brain):
    projector = Projector(brain, default_grid(brain, 8.0), tof=False)
    lors = _random_lors(brain, 10, 9)
    with pytest.raises(UserError, match="shape"):
        projector.forward(np.zeros((3, 3, 3), np.float32), lors)
    with pytest.raises(UserError, match="one value per event"):
        projector.back(np.zeros(3, np.float32), lors)
    with pytest.raises(UserError, match="threads"):
        set_threads(max_threads() + 1)
    x = pad(np.zeros(projector.grid.shape, np.float32))
    with pytest.raises(UserError, match="weights"):
        projector.em_back_padded(x, lors, np.ones(3, np.float32))
    with pytest.raises(UserError, match="order"):
        projector.em_back_padded(x, lors, np.ones(10, np.float32), order=np.array([0, 10]))
    with pytest.raises(UserError, match="crystal_randoms"):
        projector.em_back_padded(x, lors, np.ones(10, np.float32),
                                 crystal_randoms=np.ones(5, np.float32))


def test_lor_order_is_a_permutation_that_groups_neighbouring_lors(brain):
    lors = _random_lors(brain, 50000, 10)
    order = lor_order(lors, lor_endpoints(brain))
    assert np.array_equal(np.sort(order), np.arange(len(lors)))
    projector = Projector(brain, default_grid(brain, 4.0), tof=True)
    image = np.random.default_rng(3).random(projector.grid.shape).astype(np.float32)
    np.testing.assert_array_equal(projector.forward(image, lors.take(order)),
                                  projector.forward(image, lors)[order])
    ends = lor_endpoints(brain)
    d = ends[lors.crystal_b] - ends[lors.crystal_a]
    phi = np.mod(np.arctan2(d[:, 1], d[:, 0]), np.pi)
    # consecutive events in LOR order are nearly parallel; in acquisition order they are not
    step = lambda p: np.median(np.abs(np.diff(p)))  # noqa: E731
    assert step(phi[order]) < 0.05 * step(phi)
