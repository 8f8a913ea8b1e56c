"""Attenuation without a CT: the calculated map's outline, skull and CT conversion, mu-maps from
files, and what the outputs say of the map a reconstruction took."""

from __future__ import annotations

import numpy as np
import pytest

from infra.errors import UserError
from recon import Grid, Image, write_nifti
from recon.corrections import attenuation
from recon.corrections.attenuation import MU_WATER_PER_MM, MuMap

GRID = Grid((80, 80, 20), (2.0, 2.0, 2.0), (-79.0, -79.0, -19.0))


def _disc(radius_mm: float, hole_mm: float = 0.0) -> np.ndarray:
    """An emission image without attenuation correction of a cylinder along z: cupped (the centre
    at half the edge's level), a cold rod of ``hole_mm`` radius on the axis, blurred by 4 mm."""
    x, y, _ = GRID.centres_mm()
    r = np.broadcast_to(np.hypot(x, y), GRID.shape)
    image = np.where(r <= radius_mm, 0.5 + 0.5 * (r / radius_mm) ** 2, 0.0)
    image[r < hole_mm] = 0.0
    from recon.outputs.png import smoothed

    return smoothed(image, 4.0, GRID.voxel_mm)


def _radius_mm(body: np.ndarray) -> float:
    """The radius of a disc of the same area as the body's share of the central slice."""
    return float(np.sqrt(body[:, :, 10].sum() * 4.0 / np.pi))


def test_the_outline_of_a_cupped_cylinder_is_its_edge_and_a_cold_core_is_body():
    body = attenuation.outline(_disc(50.0, hole_mm=15.0), GRID.voxel_mm)
    assert body.dtype == np.float32 and body.min() >= 0.0 and body.max() <= 1.0
    assert _radius_mm(body) == pytest.approx(50.0, abs=2.0)
    x, y, _ = GRID.centres_mm()
    core = np.broadcast_to(np.hypot(x, y) < 12.0, GRID.shape)
    assert body[core].min() == 1.0                      # the cold rod is inside the body
    assert body[np.broadcast_to(np.hypot(x, y) > 60.0, GRID.shape)].max() == 0.0


def test_a_noise_blob_beyond_the_body_is_not_body():
    image = _disc(40.0)
    image[70:74, 70:74, 2:4] = image.max()              # a hot blob in a corner, apart
    body = attenuation.outline(image, GRID.voxel_mm)
    assert body[65:, 65:, :].max() == 0.0 and _radius_mm(body) == pytest.approx(40.0, abs=2.0)


def test_an_empty_image_has_no_body():
    assert not attenuation.outline(np.zeros(GRID.shape, np.float32), GRID.voxel_mm).any()


@pytest.mark.parametrize("voxel_mm", [1.0, 2.0, 4.0])
def test_a_heads_layers_keep_their_thickness_on_any_voxel(voxel_mm):
    """A brain of 50 mm radius (its outline drawn exactly): outside it, the line integrals of
    water and bone along a radius are the layers' (3 mm CSF, 7 mm bone, 5.5 mm scalp) on 1, 2
    and 4 mm voxels alike (whole-voxel dilation had made 4 mm voxels' CSF and scalp vanish),
    the bone after the CSF, nothing beyond the scalp."""
    n = round(160 / voxel_mm)
    grid = Grid((n, n, 4), (voxel_mm,) * 3, (-80 + voxel_mm / 2, -80 + voxel_mm / 2, 0.0))
    x, y, _ = grid.centres_mm()
    body = np.broadcast_to(np.hypot(x, y) <= 50.0, grid.shape).astype(np.float32)
    layers = attenuation.HEAD
    mu = attenuation.calculated(body, grid, layers).array
    water = attenuation.calculated(body, grid).array
    assert water.max() == pytest.approx(MU_WATER_PER_MM) and water[body == 0].max() == 0.0
    row = mu[n // 2:, n // 2, 1].astype(np.float64)      # from the centre outwards along x
    outside = row[body[n // 2:, n // 2, 1] < 0.5]
    bone_mm = voxel_mm * np.sum(np.clip(outside - MU_WATER_PER_MM, 0, None)
                                / (layers.skull_mu_per_mm - MU_WATER_PER_MM))
    integral_mm = voxel_mm * outside.sum()
    expected = (MU_WATER_PER_MM * (layers.csf_mm + layers.scalp_mm)
                + layers.skull_mu_per_mm * layers.skull_mm)
    assert integral_mm == pytest.approx(expected, rel=0.08)
    assert bone_mm == pytest.approx(layers.skull_mm, abs=0.3 * voxel_mm + 1.0)
    r = x[n // 2:, 0, 0]
    edge = r[body[n // 2:, n // 2, 1] >= 0.5].max() + voxel_mm / 2      # the brain's last voxel
    excess = np.clip(row - MU_WATER_PER_MM, 0, None)
    peak = float((r * excess).sum() / excess.sum())              # the bone's middle
    assert peak - edge == pytest.approx(layers.csf_mm + layers.skull_mm / 2, abs=voxel_mm)
    assert row[r > edge + 15.5 + voxel_mm].max() == 0.0
    assert attenuation.is_head("head") and attenuation.is_head("BRAIN")
    assert not attenuation.is_head(None) and not attenuation.is_head("CHEST")


def test_a_heads_tissue_beyond_its_brain_is_water():
    """A brain (the disc of 50 mm) in a head whose scalp and face (out to 70 mm) take a
    fifth of its uptake: they are water beyond the layers; nothing beyond them is."""
    x, y, _ = GRID.centres_mm()
    r = np.broadcast_to(np.hypot(x, y), GRID.shape)
    image = _disc(50.0) + np.where((r > 50.0) & (r <= 70.0), 0.2, 0.0).astype(np.float32)
    body = attenuation.outline(image, GRID.voxel_mm)
    beyond = attenuation.tissue(image, GRID.voxel_mm)
    mu = attenuation.calculated(body, GRID, attenuation.HEAD, beyond).array
    row = mu[40:, 40, 10]                                  # from the centre outwards, 2 mm
    assert np.all(row[30:34] == np.float32(MU_WATER_PER_MM))   # 60-68 mm: tissue
    assert row[37:].max() == 0.0                           # beyond 74 mm: air
    assert np.any(row == np.float32(attenuation.HEAD.skull_mu_per_mm))  # the skull still there


def test_hounsfield_units_convert_bilinearly():
    mu = attenuation.from_hounsfield(np.array([-1000.0, 0.0, 47.0, 1000.0, -2000.0]))
    assert mu[0] == pytest.approx(0.0) and mu[4] == 0.0
    assert mu[1] == pytest.approx(MU_WATER_PER_MM, rel=1e-6)
    assert mu[2] == pytest.approx(0.00960 * 1.047, rel=1e-3)     # both lines meet at the break
    assert mu[3] == pytest.approx(0.0149, rel=0.01)              # cortical-bone-like


def test_a_mu_map_file_in_per_mm_or_hounsfield_units_reads_back(tmp_path):
    mu = np.zeros(GRID.shape, np.float32)
    mu[20:60, 20:60, :] = MU_WATER_PER_MM
    write_nifti(GRID.image(mu, "1/mm"), tmp_path / "mu.nii.gz")
    read = attenuation.load(tmp_path / "mu.nii.gz")
    assert read.method == "file" and "1/mm" in read.description
    assert np.array_equal(read.image.array, mu) and read.image.array.flags.c_contiguous
    hu = np.where(mu > 0, 0.0, -1000.0).astype(np.float32)
    write_nifti(GRID.image(hu, "HU"), tmp_path / "ct.nii.gz")
    ct = attenuation.load(tmp_path / "ct.nii.gz")
    assert "CT" in ct.description
    assert np.allclose(ct.image.array, mu, atol=1e-7)


@pytest.mark.parametrize(("values", "error"), [
    (np.full(GRID.shape, 3.0, np.float32), "neither 1/mm at 511 keV"),
    (np.full(GRID.shape, np.nan, np.float32), "holds no finite value"),
])
def test_a_mu_map_of_no_known_units_is_refused_in_one_line(tmp_path, values, error):
    write_nifti(GRID.image(values), tmp_path / "bad.nii.gz")
    with pytest.raises(UserError, match=error):
        attenuation.load(tmp_path / "bad.nii.gz")


def test_a_missing_mu_map_file_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match=r"does not exist \(give a NIfTI file, 'estimate' for the "
                       r"calculated map, 'truth', or on SPECT 'learned'\)"):
        attenuation.load(tmp_path / "none.nii.gz")


def test_a_map_on_another_grid_is_resampled_onto_the_reconstructions():
    fine = Grid((160, 160, 40), (1.0, 1.0, 1.0), (-79.5, -79.5, -19.5))
    x, y, _ = fine.centres_mm()
    mu = np.broadcast_to(np.where(np.hypot(x, y) < 40.0, MU_WATER_PER_MM, 0.0), fine.shape)
    given = MuMap(fine.image(mu.astype(np.float32), "1/mm"), "file", "test")
    on = attenuation.on_grid(given, GRID)
    assert on.image.grid == GRID and on.method == "file"
    # the integral through the centre keeps its 80 mm of water within a voxel
    assert on.image.array[:, 40, 10].sum() * 2.0 == pytest.approx(80 * MU_WATER_PER_MM, rel=0.05)
    assert attenuation.on_grid(on, GRID) is on
    assert attenuation.on_grid(MuMap.none(), GRID).image is None


def test_an_image_off_its_grid_keeps_its_values_where_grids_agree():
    image = Image(np.ones(GRID.shape, np.float32), GRID.voxel_mm, GRID.origin_mm, "1/mm")
    same = attenuation.on_grid(MuMap(image, "file", "x"), GRID)
    assert same.image is image


def test_the_live_image_takes_chang_factors_from_its_own_outline(brain, tmp_path, monkeypatch):
    """A live reconstruction of a uniform water-filled cylinder 120 mm across (its emission as
    if unattenuated: the factors' geometry is what is checked): uncorrected before 300 k
    prompts, then, once the background thread is done, each image times s_without / s_with,
    about exp(mu 2R) at the centre (every transaxial line through it crosses 2R of water) and
    less towards the edge."""
    from test_recon_sampler import sample_coinc

    import recon
    from recon.pet import livemu

    monkeypatch.setenv("BEDSIDE_PET_CACHE", str(tmp_path))
    rng = np.random.default_rng(3)
    n = 1_200_000
    r = 60.0 * np.sqrt(rng.random(n))
    phi = rng.random(n) * 2 * np.pi
    points = np.stack([r * np.cos(phi), r * np.sin(phi), rng.uniform(-40, 40, n)], axis=1)
    coinc = sample_coinc(brain, points, rng)
    grid = recon.default_grid(brain, 4.0)
    live = recon.LiveRecon(brain, grid, sensitivity_samples=2_000_000)
    corrector = livemu.LiveAttenuation(live.em, samples=2_000_000)
    live.add(coinc[:1000])
    first = live.update()
    assert corrector.corrected(first, live.n_prompts) is first and corrector._thread is None
    live.add(coinc[1000:])
    for _ in range(3):
        image = live.update()
    assert corrector.corrected(image, live.n_prompts) is image      # computing: as it is
    assert corrector.wait(120), corrector.error
    done = corrector.corrected(image, live.n_prompts)
    assert done.meta["attenuation_method"] == "Chang first-order, live outline, water"
    centre = corrector.factors[29:31, 29:31, 19].mean()              # 4 mm voxels, 60 across
    edge = corrector.factors[np.array([16, 43, 30, 30]), np.array([30, 30, 16, 43]), 19].mean()
    print(f"Chang factors: centre {centre:.2f}, 52 mm out {edge:.2f}")
    assert centre == pytest.approx(np.exp(MU_WATER_PER_MM * 120.0), rel=0.15)
    assert 1.0 < edge < centre
    assert np.allclose(done.array, image.array * corrector.factors)


def test_a_spect_map_is_water_at_the_photopeak_and_outlines_a_torso_past_its_hot_heart():
    """SPECT's calculated map: water's attenuation at 140 keV (1.60 times 511 keV's) inside the
    outline of a body whose hot organ (ten times its background) PET's first outline would take
    for the whole body."""
    from recon.spect import mumap

    assert mumap.water_ratio(140.0) == pytest.approx(0.1538 / 0.0961, rel=0.01)  # NIST XCOM
    image = _disc(50.0)
    x, y, z = GRID.centres_mm()
    heart = np.broadcast_to((x - 10.0) ** 2 + y ** 2 + z ** 2 < 12.0 ** 2, GRID.shape)
    image[heart] *= 10.0
    assert _radius_mm(attenuation.outline(image, GRID.voxel_mm)) < 20.0    # the heart alone
    mu = mumap.estimate(GRID.image(image, "counts"), 140.0, "CHEST")
    assert mu.method == "calculated" and mu.image.meta["energy_kev"] == 140.0
    assert _radius_mm(mu.image.array > 0.5 * mu.image.array.max()) == pytest.approx(50.0, abs=3.0)
    assert mu.image.array.max() == pytest.approx(MU_WATER_PER_MM * mumap.water_ratio(140.0))


def test_a_spect_run_takes_a_file_map_at_511_kev_and_refuses_truth_without_a_phantom(tmp_path):
    from recon.spect.runimage import spect_mu_map
    from runstore.rundir import RunDir

    run = RunDir.create(tmp_path, "spect")
    run.update(start={"settings": {}})
    path = tmp_path / "mu.nii.gz"
    write_nifti(GRID.image(np.full(GRID.shape, MU_WATER_PER_MM, np.float32), "1/mm"), path)
    scanner = _camera()
    mu = spect_mu_map(run, scanner, GRID, 140.0, str(path), None, lambda: None)
    assert mu.image.array.mean() == pytest.approx(MU_WATER_PER_MM * 1.60, rel=0.02)
    with pytest.raises(UserError, match="--mu-map truth needs an emulated run"):
        spect_mu_map(run, scanner, GRID, 140.0, "truth", None, lambda: None)
    assert spect_mu_map(run, scanner, GRID, 140.0, "none", None, lambda: None).image is None


def _camera():
    from hw import load_scanner

    return load_scanner("spect-dual-head")


def test_trilinear_sampling_is_exact_for_a_linear_field_and_zero_outside():
    """Inside the voxels' centres a linear field comes back exactly; a voxel past them, 0; one
    thread or every core, the same values."""
    import numba

    from recon.grid import Grid, sample_trilinear

    grid = Grid((20, 16, 12), (1.0, 1.5, 2.0), (-10.0, -12.0, -11.0))
    x, y, z = grid.centres_mm()
    image = grid.image((2 * x + 3 * y - z + 50 + 0 * x * y * z).astype(np.float32))
    rng = np.random.default_rng(4)
    lo = np.asarray(grid.origin_mm)
    hi = lo + (np.asarray(grid.shape) - 1) * np.asarray(grid.voxel_mm)
    inside = rng.uniform(lo, hi, (5000, 3))
    expected = 2 * inside[:, 0] + 3 * inside[:, 1] - inside[:, 2] + 50
    np.testing.assert_allclose(sample_trilinear(image, inside), expected, rtol=1e-5)
    far = np.array([[hi[0] + 1.01, 0.0, 0.0], [0.0, lo[1] - 1.51, 0.0], [0.0, 0.0, hi[2] + 2.01]])
    assert not sample_trilinear(image, far).any()
    points = rng.uniform(lo - 2, hi + 2, (7, 9, 3))
    every = sample_trilinear(image, points)
    numba.set_num_threads(1)
    try:
        assert np.array_equal(sample_trilinear(image, points), every)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert every.shape == (7, 9)
