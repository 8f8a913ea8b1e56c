"""``petdaq recon``: a run directory in, images, a DICOM series and a report out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_recon_sampler import sample_coinc

from infra.errors import UserError
from petdaq.images import recon as cli
from recon import read_nifti
from recon.corrections import attenuation
from recon.pet import runimage
from runstore.listmode import read_listmode


def _parse(*argv):
    parser = argparse.ArgumentParser(prog="petdaq")
    cli.add_commands(parser.add_subparsers())
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def point_run(brain, tmp_path_factory):
    """A run directory as the DAQ writes it, of an emulated point source at the centre."""
    from runstore.listmode import ListModeWriter
    from runstore.rundir import RunDir
    from runstore.rundocs import ExitStatus, StopDocument

    rng = np.random.default_rng(9)
    coinc = sample_coinc(brain, np.zeros((120_000, 3)), rng)
    run = RunDir.create(tmp_path_factory.mktemp("runs"), "point")
    writer = ListModeWriter(run.listmode, {"scanner": brain.name, "window_ps": 4000})
    writer.append(coinc)
    writer.close()
    run.new_start(brain.name, brain.digest, {"emulator": {
        "phantom": "point", "nuclide": "F-18", "activity_mbq": 1.0, "duration_s": 10.0}}, {})
    run.write_stop(StopDocument("duration reached", ExitStatus.SUCCESS, {"prompts": len(coinc)},
                                {}, elapsed_s=10.0))
    return run.path


def test_recon_a_run_with_report(point_run):
    args = _parse("recon", str(point_run), "--iterations", "2", "--subsets", "4", "--voxel",
                  "4", "--report", "--samples", "1000000")
    assert args.func(args) == 0
    out = point_run / "images"
    image = read_nifti(out / "image.nii.gz")
    assert image.units == "Bq/mL" and image.array.shape == (60, 60, 39)
    assert (out / "image_mip.png").is_file() and any((out / "image_slices").iterdir())
    ds = pydicom.dcmread(sorted((out / "dicom").glob("*.dcm"))[0])
    assert ds.Units == "BQML" and ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    assert ds.AttenuationCorrectionMethod == "calculated: outline of the emission, water"
    assert "ATTN" in ds.CorrectedImage
    mu = read_nifti(out / "mu_map.nii.gz")     # the run's own estimate, beside its image
    assert mu.units == "1/mm" and mu.array.shape == image.array.shape and mu.array.max() > 0
    picture = (out / "mu_map.png").read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and picture[25] == 2     # an RGB picture
    report = json.loads((out / "report.json").read_text())
    res = report["resolution"]["point"]
    assert np.all(np.abs(np.array(res["peak_mm"])) <= 4.0)
    assert all(0 < w < 12 for w in res["fwhm_mm"])
    prompts = int(np.count_nonzero(read_listmode(point_run / "coincidences.h5")[0]["delayed"] == 0))
    assert report["reconstruction"] == {
        "algorithm": "LM-OSEM", "iterations": 2, "subsets": 4, "voxel_mm": [4.0, 4.0, 4.0],
        "prompts": prompts, "tof": True, "randoms": "delayed", "attenuation": True,
        "attenuation_method": "calculated: outline of the emission, water",
        "scatter": False, "normalization": "none",
        "normalization_table": "no table stored for bedside-brain (petdaq calibrate BLANK_RUN "
                               "--method normalization)"}


def test_recon_quantifies_with_the_scanners_calibration_by_default(brain, point_run, tmp_path):
    """Bq/mL by default with the scanner's [quantification] counts_per_annihilation: the image is
    the one of --calibration 1 divided by it."""
    images = {}
    for name, extra in (("default", ()), ("one", ("--calibration", "1"))):
        args = _parse("recon", str(point_run), "--iterations", "1", "--voxel", "4",
                      "--samples", "1000000", "--no-dicom", "--out", str(tmp_path / name), *extra)
        assert args.func(args) == 0
        images[name] = read_nifti(tmp_path / name / "image.nii.gz")
    assert images["default"].units == images["one"].units == "Bq/mL"
    ratio = images["one"].array.sum(dtype=np.float64) / images["default"].array.sum(
        dtype=np.float64)
    assert ratio == pytest.approx(brain.counts_per_annihilation, rel=1e-4)


def test_recon_voxel_defaults_to_the_scanners(brain, point_run, tmp_path):
    """Without --voxel the image has the scanner's [reconstruction] voxel_mm (2 mm without one)."""
    assert _parse("recon", str(point_run)).voxel is None
    assert runimage.voxel_of(runimage.RunReconOptions(), brain) == 2.0
    coarse = tmp_path / "coarse-brain.toml"
    coarse.write_text(Path(brain.source).read_text() + "\n[reconstruction]\nvoxel_mm = 4.0\n")
    args = _parse("recon", str(point_run), "--scanner", str(coarse), "--iterations", "1",
                  "--samples", "1000000", "--no-dicom", "--out", str(tmp_path / "out"))
    assert args.func(args) == 0
    image = read_nifti(tmp_path / "out" / "image.nii.gz")
    assert image.array.shape == (60, 60, 39)
    assert tuple(image.voxel_mm) == pytest.approx((4.0, 4.0, 4.0))


def test_default_subsets_keep_enough_events_per_subset(brain):
    coinc = np.zeros(230_000, [("delayed", np.uint8)])
    coinc["delayed"][:30_000] = 1
    assert runimage.default_subsets(coinc) == 4
    assert runimage.default_subsets(coinc[:40_000]) == 1
    assert runimage.default_subsets(np.zeros(5_000_000, coinc.dtype)) == 10


def test_recon_a_bare_file_needs_a_scanner(brain, tmp_path):
    coinc = sample_coinc(brain, np.zeros((2000, 3)), np.random.default_rng(1))
    np.save(tmp_path / "c.npy", coinc)
    args = _parse("recon", str(tmp_path / "c.npy"), "--iterations", "1", "--voxel", "8")
    with pytest.raises(UserError, match="--scanner"):
        args.func(args)
    args = _parse("recon", str(tmp_path / "c.npy"), "--scanner", "bedside-brain",
                  "--iterations", "1", "--subsets", "1", "--voxel", "8", "--no-tof",
                  "--samples", "200000",
                  "--out", str(tmp_path / "out"))
    assert args.func(args) == 0
    assert (tmp_path / "out" / "image.nii.gz").is_file()
    with pytest.raises(UserError, match="neither"):
        args = _parse("recon", str(tmp_path / "missing.txt"))
        args.func(args)


def test_recon_of_a_file_without_prompts_says_so(brain, tmp_path):
    """A list-mode file read before its first flush, or of delayeds only: one line, no image."""
    coinc = sample_coinc(brain, np.zeros((100, 3)), np.random.default_rng(2))
    coinc["delayed"] = 1
    np.save(tmp_path / "delayeds.npy", coinc)
    np.save(tmp_path / "empty.npy", coinc[:0])
    for name in ("delayeds.npy", "empty.npy"):
        args = _parse("recon", str(tmp_path / name), "--scanner", "bedside-brain",
                      "--out", str(tmp_path / "out"))
        with pytest.raises(UserError, match="holds no prompt coincidences"):
            args.func(args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prompts, given, chosen", [
    (60_000, (None, None), (20, 1)),      # a short scan: one subset, the calibration's 20 updates
    (120_000, (None, None), (10, 2)),
    (350_000, (None, None), (4, 5)),      # 7 subsets by the prompts, down to a divisor of 20
    (5_000_000, (None, None), (2, 10)),   # the cross-calibration's own schedule
    (60_000, (1, None), (1, 1)),          # what the user gives is kept
    (5_000_000, (None, 3), (7, 3)),
], ids=["60k", "120k", "350k", "5M", "given iterations", "given subsets"])
def test_a_run_image_gets_the_calibrations_updates_by_default(prompts, given, chosen) -> None:
    """``petdaq recon``'s default schedule (iterations, subsets): 20 EM updates whatever the
    scan's length, as the cross-calibration's (2 iterations x 10 subsets)."""
    coinc = np.zeros(prompts + 10, [("delayed", np.uint8)])
    coinc["delayed"][:10] = 1
    options = runimage.RunReconOptions(iterations=given[0], subsets=given[1])
    got = runimage.schedule(options, coinc)
    assert (got.iterations, got.subsets) == chosen
    assert got.iterations * got.subsets >= runimage.RUN_UPDATES or given[0] is not None


@pytest.fixture(scope="module")
def imported_run(brain, tmp_path_factory):
    """A run of a lab's data: no phantom, no emulator (a point source at the centre)."""
    from runstore.listmode import ListModeWriter
    from runstore.rundir import RunDir
    from runstore.rundocs import ExitStatus, StopDocument

    coinc = sample_coinc(brain, np.zeros((60_000, 3)), np.random.default_rng(4))
    run = RunDir.create(tmp_path_factory.mktemp("imported"), "lab")
    writer = ListModeWriter(run.listmode, {"scanner": brain.name, "window_ps": 4000})
    writer.append(coinc)
    writer.close()
    run.new_start(brain.name, brain.digest, {}, {})
    run.write_stop(StopDocument("duration reached", ExitStatus.SUCCESS, {"prompts": len(coinc)},
                                {}, elapsed_s=10.0))
    return run.path


def test_a_run_without_a_phantom_gets_an_estimated_mu_map_and_says_so(imported_run, tmp_path,
                                                                    capsys):
    args = _parse("recon", str(imported_run), "--iterations", "1", "--voxel", "4",
                  "--samples", "1000000", "--out", str(tmp_path), "--body-part", "head")
    assert args.func(args) == 0
    words = "calculated: outline of the emission, water, 3 mm CSF, skull 7 mm, scalp 5.5 mm"
    assert f"attenuation: {words}, tissue beyond" in capsys.readouterr().out
    ds = pydicom.dcmread(sorted((tmp_path / "dicom").glob("*.dcm"))[0])
    assert ds.AttenuationCorrectionMethod == words[:64]         # a DICOM LO: 64 characters
    mu = read_nifti(tmp_path / "mu_map.nii.gz").array
    assert mu.max() == pytest.approx(attenuation.MU_SKULL_PER_MM)   # --body-part head: a skull


def test_a_run_that_names_a_phantom_not_in_its_image_gets_the_outlines_map(imported_run, brain):
    """The run's own phantom (an emulated run's) not found: the outline's map; named by the user
    (``--phantom``): an error (test_a_bad_attenuation_choice_is_one_line)."""
    from recon.pet.mumap import estimate

    coinc = read_listmode(imported_run / "coincidences.h5")[0]
    mu = estimate(coinc, brain, phantom="nu4-iq", phantom_sure=False)
    assert mu.description == "calculated: outline of the emission, water"
    with pytest.raises(UserError, match="no NEMA NU 4 image-quality phantom in the image"):
        estimate(coinc, brain, phantom="nu4-iq")


@pytest.mark.parametrize(("argv", "error"), [
    (["--mu-map", "truth"], "--mu-map truth needs an emulated run"),
    (["--mu-map", "{tmp}/none.nii.gz"], "mu-map .*none.nii.gz does not exist"),
    (["--body-part", "head and neck"], "body part must be 1 to 16 letters"),
    (["--no-attenuation", "--scatter"], "scatter correction needs a mu-map"),
    (["--phantom", "brain"], "--phantom brain: not a phantom this product knows without its run"),
    (["--phantom", "nu4-iq"], "no NEMA NU 4 image-quality phantom in the image"),
])
def test_a_bad_attenuation_choice_is_one_line(imported_run, tmp_path, argv, error):
    args = _parse("recon", str(imported_run), "--iterations", "1", "--voxel", "4", "--samples",
                  "1000000", "--out", str(tmp_path),
                  *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    with pytest.raises(UserError, match=error):
        args.func(args)


def test_no_attenuation_writes_no_mu_map(imported_run, tmp_path):
    args = _parse("recon", str(imported_run), "--iterations", "1", "--voxel", "4",
                  "--samples", "1000000", "--out", str(tmp_path), "--no-attenuation")
    assert args.func(args) == 0
    assert not (tmp_path / "mu_map.nii.gz").exists()
    ds = pydicom.dcmread(sorted((tmp_path / "dicom").glob("*.dcm"))[0])
    assert "ATTN" not in ds.CorrectedImage and ds.AttenuationCorrectionMethod == ""
