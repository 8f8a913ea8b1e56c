"""The system model: valid pairs, the Monte-Carlo sensitivity against exact enumeration, its
symmetrisation and disk cache; the fan-sum randoms estimate."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from scannerfiles import without_table

from hw import load_scanner
from recon.corrections.randoms import RandomsEstimate, crystal_counts, fan_sum_factors
from recon.grid import Grid, default_grid
from recon.pet.lors import LORs, pair_weights
from recon.pet.projector import Projector
from recon.pet.system import (
    DEFAULT_SAMPLES,
    default_samples,
    every_pair,
    fov_mask,
    sample_pairs,
    sensitivity,
    valid_module_pairs,
    valid_pair_count,
)


def _ring(name: str, modules: int, crystals: tuple[int, int], radius_mm: float,
          fov_mm: float) -> str:
    """A one-ring scanner's name and geometry (TOML), the rest taken from bedside-brain."""
    return f"""
name = "{name}"
description = "{modules} modules of {crystals[0]} x {crystals[1]} crystals, for tests"
kind = "pet"
[geometry]
modules_per_ring = {modules}
module_rings = 1
crystals_per_module = [{crystals[0]}, {crystals[1]}]
crystal_pitch_mm = [4.0, 4.0]
crystal_size_mm = [3.8, 3.8, 10.0]
ring_radius_mm = {radius_mm}
transaxial_fov_mm = {fov_mm}
"""


#: Few enough valid pairs (2.9 k) to enumerate at once.
TINY = _ring("tiny", 8, (4, 3), 40.0, 50.0)
#: Enough valid pairs (106 k) for a Monte-Carlo estimate of fewer, few enough to sum exactly.
SMALL = _ring("small", 16, (8, 4), 85.0, 100.0)


def _test_scanner(tmp_path_factory, head: str):
    brain_toml = (resources.files("hw") / "scanners" / "bedside-brain.toml").read_text()
    rest = without_table(brain_toml[brain_toml.index("[material]"):], "crystals")
    path = tmp_path_factory.mktemp("scanner") / "scanner.toml"
    path.write_text(head + rest)
    return load_scanner(str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _test_scanner(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _test_scanner(tmp_path_factory, SMALL)


#: Monte-Carlo samples of the small scanner's sensitivity (about a third of its valid pairs).
SAMPLES = 40_000


def _all_valid_pairs(scanner, k):
    a, b = np.triu_indices(scanner.n_crystals, 1)
    ok = scanner.sector_difference(a, b) >= k
    return LORs(a[ok], b[ok], np.zeros(ok.sum(), np.float32))


@pytest.mark.parametrize("k", [0, 2, 3])
def test_valid_pair_count_is_exact(tiny, k):
    assert valid_pair_count(tiny, k) == len(_all_valid_pairs(tiny, k))


def test_sampled_pairs_are_uniform_over_valid_pairs(tiny):
    pairs = sample_pairs(tiny, 200_000, np.random.default_rng(1), 2)
    assert np.all(tiny.sector_difference(pairs.crystal_a, pairs.crystal_b) >= 2)
    key = np.minimum(pairs.crystal_a, pairs.crystal_b) * tiny.n_crystals + np.maximum(
        pairs.crystal_a, pairs.crystal_b)
    counts = np.bincount(key, minlength=tiny.n_crystals ** 2)
    counts = counts[counts > 0]
    assert counts.size == valid_pair_count(tiny, 2)
    expected = 200_000 / counts.size
    assert counts.std() / expected < 1.5 / np.sqrt(expected)    # Poisson scatter, not a bias


def test_monte_carlo_sensitivity_is_unbiased(small, tmp_path, monkeypatch):
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = default_grid(small, 4.0)
    exact_pairs = _all_valid_pairs(small, 2)
    proj = Projector(small, grid, tof=False)
    exact = proj.back(pair_weights(small, exact_pairs, grid.voxel_volume_mm3), exact_pairs)
    exact[~fov_mask(small, grid)] = 0
    assert len(exact_pairs) > SAMPLES                 # Monte-Carlo, not the exact sum
    mc = sensitivity(small, grid, samples=SAMPLES, seed=3, k=2)
    central = exact > 0.3 * exact.max()
    ratio = mc[central].sum() / exact[central].sum()
    assert ratio == pytest.approx(1.0, abs=0.01)
    rel = np.abs(mc[central] / exact[central] - 1)
    assert np.median(rel) < 0.03


def test_enough_samples_give_the_exact_sum_over_every_pair(tiny, tmp_path, monkeypatch):
    """As many samples as valid pairs (or more): each pair once, no Monte-Carlo noise; the
    default count keeps 10 M samples' density per voxel below 2 mm."""
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = default_grid(tiny, 2.0)
    pairs = _all_valid_pairs(tiny, 2)
    exact = Projector(tiny, grid, tof=False).back(
        pair_weights(tiny, pairs, grid.voxel_volume_mm3), pairs)
    exact[~fov_mask(tiny, grid)] = 0
    chunks = list(every_pair(tiny, 2, 200))
    assert sum(len(c) for c in chunks) == len(pairs) and max(len(c) for c in chunks) <= 200
    for samples in (len(pairs), 10 * len(pairs)):
        s = sensitivity(tiny, grid, samples=samples, k=2)
        np.testing.assert_allclose(s, exact, rtol=1e-4, atol=1e-6 * exact.max())
    assert default_samples(default_grid(tiny, 4.0)) == DEFAULT_SAMPLES
    assert default_samples(default_grid(tiny, 2.0)) == DEFAULT_SAMPLES
    assert default_samples(default_grid(tiny, 0.5)) == 64 * DEFAULT_SAMPLES


def test_a_mu_maps_monte_carlo_sensitivity_is_unbiased_and_shares_the_plain_image(
        small, tmp_path, monkeypatch):
    """With a mu-map and the crystals' efficiencies the estimate (the plain image times the
    sampled ratio of what the factors keep) agrees with the exact sum over every pair; a second
    mu-map reuses the plain image from the cache."""
    from recon.corrections.normalization import CrystalEfficiencies

    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = default_grid(small, 4.0)
    x, y, _ = grid.centres_mm()
    water = np.broadcast_to(x * x + y * y < 40.0 ** 2, grid.shape)
    mu = np.where(water, 0.0096, 0.0).astype(np.float32)
    eff = np.random.default_rng(5).uniform(0.8, 1.2, small.n_crystals)
    norm = CrystalEfficiencies(eff, small.name, small.digest, "test")
    exact = sensitivity(small, grid, mu, samples=valid_pair_count(small, 2), k=2,
                        normalization=norm)
    mc = sensitivity(small, grid, mu, samples=SAMPLES, seed=3, k=2, normalization=norm)
    central = exact > 0.3 * exact.max()
    assert mc[central].sum() / exact[central].sum() == pytest.approx(1.0, abs=0.01)
    assert np.median(np.abs(mc[central] / exact[central] - 1)) < 0.03
    assert len(list(tmp_path.glob("sensitivity-*.npy"))) == 3   # exact, plain, with factors
    sensitivity(small, grid, mu * 2, samples=SAMPLES, seed=3, k=2, normalization=norm)
    assert len(list(tmp_path.glob("sensitivity-*.npy"))) == 4


def test_a_mu_map_in_fortran_order_gives_the_same_sensitivity(small, tmp_path, monkeypatch):
    """A mu-map array as a NIfTI file gives it (Fortran order) is taken as it is."""
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = default_grid(small, 4.0)
    x, y, _ = grid.centres_mm()
    mu = np.where(np.broadcast_to(x * x + y * y < 40.0 ** 2, grid.shape), 0.0096, 0.0)
    c_order = sensitivity(small, grid, mu.astype(np.float32), samples=SAMPLES, k=2,
                          use_cache=False)
    f_order = sensitivity(small, grid, np.asfortranarray(mu, np.float32), samples=SAMPLES, k=2,
                          use_cache=False)
    np.testing.assert_array_equal(f_order, c_order)


def test_sensitivity_cache_and_symmetry(brain, tmp_path, monkeypatch):
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = default_grid(brain, 6.0)
    first = sensitivity(brain, grid, samples=300_000)
    files = list(tmp_path.glob("sensitivity-*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    again = sensitivity(brain, grid, samples=300_000)
    np.testing.assert_array_equal(first, again)
    # symmetric under the scanner's and the grid's shared symmetries
    np.testing.assert_allclose(first, first[:, ::-1, :], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(first, first[:, :, ::-1], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(first, np.rot90(first, 1, axes=(0, 1)), rtol=1e-5, atol=1e-12)
    # a different setting is a different entry; an unwritable cache only disables caching
    sensitivity(brain, grid, samples=200_000)
    assert len(list(tmp_path.glob("sensitivity-*.npy"))) == 2
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    np.testing.assert_array_equal(sensitivity(brain, grid, samples=300_000), first)


def test_off_centre_grid_is_not_symmetrised(brain, tmp_path, monkeypatch):
    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    grid = Grid((10, 10, 6), (6.0, 6.0, 6.0), (3.0, -20.0, -10.0))
    s = sensitivity(brain, grid, samples=200_000)
    assert s.shape == grid.shape and s.max() > 0


def test_fan_sum_randoms_recover_singles_products(brain):
    """Delayeds drawn with probability s_a s_b among valid pairs: the fan-sum estimate finds
    R_ab = s_a s_b far better than a per-LOR count could, and keeps the total."""
    rng = np.random.default_rng(4)
    k = brain.acquisition["min_sector_difference"]
    singles = np.exp(0.3 * rng.standard_normal(brain.n_crystals))        # crystal rates
    pairs = sample_pairs(brain, 3_000_000, rng, k)
    accept = rng.random(len(pairs)) < (singles[pairs.crystal_a] * singles[pairs.crystal_b]
                                       / singles.max() ** 2)
    delayed = pairs.take(np.nonzero(accept)[0][:400_000])
    counts = crystal_counts(delayed, brain.n_crystals)
    est = RandomsEstimate(fan_sum_factors(counts, brain, k), None, tof=False)
    probe = sample_pairs(brain, 100_000, rng, k)
    r = est.per_event(probe).astype(np.float64)
    truth = singles[probe.crystal_a] * singles[probe.crystal_b]
    truth *= len(delayed) / (truth.mean() * valid_pair_count(brain, k))
    assert r.sum() == pytest.approx(truth.sum(), rel=0.02)
    # the error is that of the two crystals' fan sums (~65 delayeds each here), not of one LOR's
    # count (~0.005 delayeds: 1400 % error)
    fan_noise = np.sqrt(np.mean(1 / counts[probe.crystal_a] + 1 / counts[probe.crystal_b]))
    assert np.sqrt(np.mean((r / truth - 1) ** 2)) < 1.2 * fan_noise
    assert abs(np.mean(r / truth) - 1) < 0.02
    # the total over all valid pairs is the delayed count
    factors = est.factors
    module_sums = np.bincount(brain.crystal_module, weights=factors, minlength=brain.n_modules)
    total = factors @ (valid_module_pairs(brain, k) @ module_sums)[brain.crystal_module] / 2
    assert total == pytest.approx(len(delayed), rel=1e-3)
    few = probe.take(slice(0, 10))
    tof = RandomsEstimate(est.factors, 4000, tof=True).per_event(few)
    assert np.allclose(tof, est.per_event(few) / (0.299792458 * 4000), rtol=1e-5)
    g = RandomsEstimate(est.factors, 4000, tof=True).per_crystal()  # the EM kernel's form
    assert np.allclose(g[few.crystal_a] * g[few.crystal_b], tof, rtol=1e-5)


def test_fan_sum_without_delayeds_is_zero(brain):
    f = fan_sum_factors(np.zeros(brain.n_crystals), brain, 2)
    assert not f.any()
