"""Quantitative SPECT: photopeak windows per nuclide (Lu-177's two), the camera's sensitivity
measured on a point source and stored with the scanner, and an emulated Lu-177 uniform cylinder
recovered in Bq/mL from the command line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from inprocess import petdaq as _inprocess
from sharedruns import lu177_cylinder_at_72_h

from coincidence import spect
from coincidence.spect import select_photopeak
from daq.pipeline.process.projections import photopeaks_of, windows_of
from hw import load_scanner
from hw.scanner import sensitivity_key
from infra.errors import UserError


@pytest.fixture(scope="module")
def camera():
    return load_scanner("spect-dual-head")


def petdaq(*args: str) -> subprocess.CompletedProcess:
    return _inprocess(*args)


def test_lu177_gets_a_window_triple_per_photopeak_and_tc99m_keeps_the_scanners(camera):
    assert photopeaks_of("Lu-177") == (208.37, 112.95)  # strongest first
    assert photopeaks_of("Tc-99m") == (140.5,)
    (tc,) = windows_of(camera, photopeaks_of("Tc-99m"))
    assert tc == windows_of(camera)[0] and tc.peak == (126.0, 154.0)
    high, low = windows_of(camera, photopeaks_of("Lu-177"))
    assert high.peak == pytest.approx((208.37 * 0.9, 208.37 * 1.1), abs=0.1)
    assert low.peak == pytest.approx((112.95 * 0.9, 112.95 * 1.1), abs=0.1)
    edges = spect.edges_of((high, low))
    assert edges.shape == (6, 2)
    assert select_photopeak(edges, None) == 0 and select_photopeak(edges, 113) == 1
    with pytest.raises(UserError, match="no photopeak window holds 300 keV"):
        select_photopeak(edges, 300.0)
    with pytest.raises(UserError, match="photopeak windows overlap"):
        windows_of(camera, (140.0, 150.0))
    with pytest.raises(UserError, match="no gamma line"):
        photopeaks_of("F-18")


def test_lu177_singles_are_binned_into_both_triples(camera):
    windows = windows_of(camera, photopeaks_of("Lu-177"))
    singles = np.zeros(4, [("t", "i8"), ("crystal", "i4"), ("energy", "f4")])
    singles["energy"] = [208.0, 113.0, 180.0, 150.0]  # peak 1, peak 2, lower scatter of 1, none
    out = spect.bin_projections(singles, camera, windows, 10**9)
    assert out.shape[0] == 6
    assert out.sum(axis=(1, 2, 3, 4)).tolist() == [1, 1, 0, 0, 1, 0]


def test_smoothing_the_scatter_estimate_keeps_its_level_and_takes_its_noise(camera):
    rng = np.random.default_rng(3)
    noisy = rng.poisson(0.5, (2, 60, 64, 64)).astype(np.float64)
    smooth = spect.smooth_scatter(noisy)
    assert smooth.sum() == pytest.approx(noisy.sum(), rel=0.01)
    assert smooth.std() < 0.1 * noisy.std()
    assert np.all(spect.smooth_scatter(np.full((2, 60, 64, 64), 2.0)) == pytest.approx(2.0))


def test_a_sensitivity_is_stored_in_the_toml_once_and_leaves_the_digest(tmp_path, camera):
    from recon.spect.quant import Line, Sensitivity, store

    path = tmp_path / "camera.toml"
    path.write_text(Path(camera.source).read_text().split("[quantification")[0])
    line = Line("Lu-177", 208.37, 0.1036, 6.647 * 86400)
    for counts in (1000, 2000):
        s = Sensitivity(line, (187.5, 229.2), counts, 0.0, 1.0, 10.0, 2, 7.0)
        store(path, [s], "petdaq sensitivity RUN --write", "point")
    text = path.read_text()
    assert text.count('"Lu-177 208 keV"') == 1 and text.count("# Lu-177 208 keV:") == 1
    stored = load_scanner(str(path))
    assert stored.spect_cps_per_mbq == {sensitivity_key("Lu-177", 208.37): 100.0}
    assert stored.digest == camera.digest  # the gain tables stay the scanner's
    path.write_text(text.replace("= 100.0000", "= -1"))
    with pytest.raises(UserError, match=r"spect_cps_per_mbq\.Lu-177 208 keV' must be > 0"):
        load_scanner(str(path))


@pytest.mark.slow
def test_lu177_cylinder_in_bq_per_ml_after_a_point_source_calibration(tmp_path, camera,
                                                                      tmp_path_factory):
    """The user's path: a point source of known activity in air, ``petdaq sensitivity --write``,
    then a uniform Lu-177 cylinder reconstructed by ``petdaq recon`` in Bq/mL: the central
    region within 10 % of the true concentration, in the 208 keV window and in the 113 keV one."""
    import nibabel as nib

    import recon
    from emulator import phantoms

    toml = tmp_path / "camera.toml"  # the camera without its stored sensitivities
    toml.write_text(Path(camera.source).read_text().split("[quantification")[0])
    runs = tmp_path / "runs"
    r = petdaq("run", "--scanner", "spect-dual-head", "--phantom", "point", "--nuclide",
               "Lu-177", "--activity-mbq", "100", "--duration", "10", "--fast", "--no-recon",
               "--out", str(runs), "--name", "point")
    assert r.returncode == 0, r.stderr
    # a 10 s scan of a 1000 MBq cylinder (made once for the dosimetry test too)
    shutil.copytree(lu177_cylinder_at_72_h(tmp_path_factory), runs / "cylinder")
    r = petdaq("recon", str(runs / "cylinder"), "--scanner", str(toml), "--no-dicom")
    assert r.returncode == 0 and "counts: spect-dual-head has no sensitivity for Lu-177 208 keV" \
        in r.stdout, r.stdout + r.stderr
    r = petdaq("sensitivity", str(runs / "point"), "--scanner", str(toml), "--write")
    assert r.returncode == 0, r.stderr
    assert "Lu-177 208 keV" in r.stdout and "Lu-177 113 keV" in r.stdout
    sensitivity = load_scanner(str(toml)).spect_cps_per_mbq
    assert 3.0 < sensitivity["Lu-177 208 keV"] < 8.0  # cps/MBq per head, LEHR-like

    shape = phantoms.get("cylinder", camera).regions()["cylinder"].shape
    true_bq_ml = 1000e6 / (shape.volume_mm3 / 1000)
    grid = recon.default_grid(camera)
    x, y, z = grid.centres_mm()
    centre = np.broadcast_to((x * x + y * y <= (shape.semi_axes_mm[0] / 2) ** 2)
                             & (np.abs(z) <= camera.axial_fov_mm / 4), grid.shape)
    for kev in ("208", "113"):
        out = tmp_path / kev
        r = petdaq("recon", str(runs / "cylinder"), "--scanner", str(toml), "--photopeak-kev",
                   kev, "--out", str(out))
        assert r.returncode == 0 and "Bq/mL with" in r.stdout and f"Lu-177 {kev} keV" \
            in r.stdout, r.stdout + r.stderr
        image = np.asarray(nib.load(out / "image.nii.gz").dataobj, np.float64)
        assert image[centre].mean() / true_bq_ml == pytest.approx(1.0, abs=0.10), kev
    r = petdaq("recon", str(runs / "cylinder"), "--photopeak-kev", "300")
    assert r.returncode == 2 and r.stderr.startswith(
        "petdaq: error: no photopeak window holds 300 keV"), r.stderr


def test_sensitivity_of_a_pet_run_or_no_run_says_so(tmp_path):
    r = petdaq("sensitivity", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and r.stderr.startswith("petdaq: error: "), r.stderr
    (tmp_path / "pet").mkdir()
    r = petdaq("sensitivity", str(tmp_path / "pet"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
