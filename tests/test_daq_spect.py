"""SPECT through the DAQ: projections binned chunk by chunk, the image at the stop, and
``petdaq run`` on the dual-head camera."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomcheck import dciodvfy_errors

import emulator
from coincidence import spect
from daq.control.spectimage import spect_image
from daq.pipeline.process.projections import ProjectionStage
from hw import load_scanner
from infra.errors import UserError
from recon.grid import default_grid
from runstore.rundir import RunDir

ACTIVITY_MBQ, DURATION_S = 400.0, 1.0


@pytest.fixture(scope="module")
def camera():
    return load_scanner("spect-dual-head")


@pytest.fixture(scope="module")
def cardiac_scan(camera):
    return emulator.simulate(camera, "cardiac", "Tc-99m", ACTIVITY_MBQ, DURATION_S, seed=4)


def test_projections_fed_in_chunks_equal_one_binning(camera, cardiac_scan):
    stage = ProjectionStage(camera, DURATION_S)
    for part in np.array_split(cardiac_scan.singles, 7):
        assert stage.feed(part).size == 0
    whole = spect.bin_projections(cardiac_scan.singles, camera, stage.windows, stage.view_ps)
    assert np.array_equal(stage.projections, whole)
    e = cardiac_scan.singles["energy"]
    assert stage.projections[spect.PEAK].sum() == np.count_nonzero((e >= 126.0) & (e < 154.0))
    # the gantry turns: every view of each head has counts
    assert np.all(stage.projections[spect.PEAK].sum(axis=(2, 3)) > 0)


def test_a_spect_acquisition_needs_its_duration(camera, brain):
    with pytest.raises(UserError, match="needs its duration"):
        ProjectionStage(camera, None)
    with pytest.raises(UserError, match="not a SPECT scanner"):
        ProjectionStage(brain, 10.0)


def test_the_image_at_the_stop_shows_the_myocardium(tmp_path, camera, cardiac_scan):
    run = RunDir.create(tmp_path, "spect")
    run.update(start={"settings": {"emulator": {"phantom": "cardiac"}}})
    stage = ProjectionStage(camera, DURATION_S)
    stage.feed(cardiac_scan.singles)
    stage.save(run.path)
    spect_image(run, camera, dicom=True)  # the run is to be sent at the stop: its NM object
    nm = pydicom.dcmread(run.images / "image_nm.dcm")
    assert nm.Modality == "NM" and "image_nm.dcm" in " ".join(run.read()["images"]["files"])
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(run.images / "image_nm.dcm") == []
    nib = pytest.importorskip("nibabel")
    image = np.asarray(nib.load(run.images / "image.nii.gz").dataobj)
    truth = emulator.phantoms.get("cardiac", camera).activity_map(default_grid(camera))
    myocardium, background = image[truth == 10.0].mean(), image[truth == 1.0].mean()
    assert myocardium > 3.0 * background
    assert "images" in run.read() and (run.images / "image_mip.png").is_file()
    assert (run.images / "polar_map.png").is_file()  # a myocardium: its bull's-eye too


def test_petdaq_run_on_the_spect_camera_bins_replays_and_reconstructs(tmp_path, camera):
    """The whole SPECT path from the command line: emulator -> DAQ (journal, calibration,
    projections per gantry view) -> image; ``petdaq sort`` (replay without the image) rebuilds
    the same projections from the journal."""

    from inprocess import petdaq

    r = petdaq("run", "--scanner", "spect-dual-head", "--phantom", "cardiac", "--nuclide",
               "Tc-99m", "--activity-mbq", "400", "--duration", "2", "--fast", "--out",
               str(tmp_path), "--name", "scan")
    assert r.returncode == 0, r.stderr
    run = RunDir.open(tmp_path / "scan")
    meta = run.read()
    assert meta["stop"]["reason"] == "end of stream"
    assert not any(meta["stop"]["losses"].values()), meta["stop"]["losses"]
    sort = meta["start"]["settings"]["sort"]
    assert sort["view_duration_ps"] == round(2e12 / camera.spect.views_per_head)
    with np.load(run.path / "projections.npz") as f:
        live = f["projections"]
    singles = meta["stop"]["counts"]["singles"]
    assert singles > 50_000 and 0.3 * singles < live[spect.PEAK].sum() < singles
    assert np.all(live[spect.PEAK].sum(axis=(2, 3)) > 0)  # every view of both heads
    assert (run.images / "image.nii.gz").is_file() and meta["images"]["files"]

    r = petdaq("sort", str(run.path), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    again = tmp_path / "again"
    with np.load(again / "projections.npz") as f:
        assert np.array_equal(f["projections"], live)


def test_the_monitor_hit_map_shows_each_head_side_by_side(camera):
    """SPECT pixels (head-major) land at [row, head * columns + column] of the hit map."""
    from daq.pipeline.process.calibration import Calibration
    from daq.pipeline.process.processor import Processor, SortSettings
    from hw.dtypes import RAW_DTYPE

    rows, per_row = camera.n_rings, camera.crystals_per_ring
    columns = per_row // camera.n_modules
    head, row, column = 1, 5, 7
    raw = np.zeros(3, RAW_DTYPE)
    raw["t"] = [10, 20, 30]
    raw["crystal"] = head * rows * columns + row * columns + column
    raw["adc"] = 500
    proc = Processor(camera, Calibration.nominal(camera), SortSettings(), None,
                     quiet_timeout_s=float("inf"), scan_duration_s=1.0)
    proc.consume(raw, {})
    proc.finish()
    assert proc.hist.hitmap[row, head * columns + column] == 3 and proc.hist.hitmap.sum() == 3
    assert proc.hist.dt is None and proc.counters.singles == 3


def test_petdaq_acquire_on_the_spect_camera_without_a_duration_says_so(tmp_path):

    from inprocess import petdaq

    r = petdaq("acquire", "--scanner", "spect-dual-head", "--from", "tcp://127.0.0.1:5999",
               "--out", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("petdaq: error: a SPECT acquisition on 'spect-dual-head' "
                                       "needs its duration (--duration seconds)")
    assert not (tmp_path / "runs").exists()  # nothing created


def _petdaq_ok(*args: str) -> None:
    from inprocess import petdaq as in_process

    r = in_process(*args)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def heart_run(tmp_path_factory) -> Path:
    """A cardiac SPECT run of a man, from the command line (spect-dual-head, 400 MBq, 20 s)."""
    out = tmp_path_factory.mktemp("spect")
    _petdaq_ok("run", "--scanner", "spect-dual-head", "--phantom", "cardiac", "--nuclide",
               "Tc-99m", "--activity-mbq", "400", "--duration", "20", "--fast", "--no-recon",
               "--seed", "3", "--out", str(out), "--name", "heart", "--sex", "M")
    return out / "heart"


@pytest.mark.slow
def test_petdaq_recon_of_a_cardiac_spect_run_writes_nm_dicom_and_the_polar_map(heart_run,
                                                                               tmp_path):
    """From the command line alone: a cardiac SPECT run, then ``petdaq recon RUN --report``:
    the image, a DICOM NM volume that dciodvfy accepts, the polar map (PNG, CSV) whose lowest
    segment is one the phantom's defect touches, and the inferior wall darker without
    attenuation correction."""
    import csv
    import json

    from dicomcheck import DCIODVFY, dciodvfy_errors
    from inprocess import petdaq as in_process

    petdaq = _petdaq_ok
    heart = str(heart_run)
    petdaq("recon", heart, "--report")
    out = heart_run / "images"
    report = json.loads((out / "report.json").read_text())
    defect = report["defect"]
    assert 7 in defect["true_segments"]  # mid anterior: the phantom's anterior defect
    assert defect["lowest_segment"] in defect["true_segments"]
    assert defect["contrast"] > 0.1
    # the default attenuation: the calculated map of the scan's own outline, not the phantom's
    assert report["attenuation_method"].startswith("calculated")
    # its lungs are water, which tilts a fitted model ventricle by 25 degrees here: the axis
    # through the short-axis rings' centres stays within 8 (5.8 measured)
    assert report["lv_axis"]["angle_to_phantom_deg"] < 8.0, report["lv_axis"]
    wall = report["inferior_to_lateral"]
    assert wall["without_attenuation_correction"] < wall["with_attenuation_correction"]
    # spect-dual-head has no shipped normal limits: the fixed threshold, and the report says so
    assert "no normal limits for spect-dual-head" in report["perfusion"]["note"]
    assert defect["abnormal_by"].startswith("under 70 %")
    with open(out / "polar_map.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["segment"]) for r in rows] == list(range(1, 18))
    assert rows[6]["territory"] == "LAD" and (out / "polar_map.png").stat().st_size > 1000
    assert (out / "image.nii.gz").is_file()
    if DCIODVFY is not None:
        assert dciodvfy_errors(out / "image_nm.dcm") == []

    # the axis found in the image of the phantom's own map, not taken from the phantom
    petdaq("recon", heart, "--report", "--out", str(tmp_path / "truth"),
           "--mu-map", "truth", "--no-dicom")
    axis = json.loads((tmp_path / "truth" / "report.json").read_text())["lv_axis"]
    assert axis["source"] == "image" and axis["angle_to_phantom_deg"] < 8.0, axis
    assert axis["apex_to_phantom_mm"] < 20.0 and axis["base_to_phantom_mm"] < 15.0, axis

    petdaq("recon", heart, "--report", "--out", str(tmp_path / "manual"),
           "--lv-axis", "46.8,-41.9,-25.7:8.9,-4.1,17.6", "--no-dicom", "--no-attenuation")
    manual = json.loads((tmp_path / "manual" / "report.json").read_text())
    assert manual["lv_axis"]["source"] == "manual"
    assert manual["lv_axis"]["angle_to_phantom_deg"] < 1.0
    r = in_process("recon", heart, "--report", "--lv-axis", "1,2,3")
    assert r.returncode == 2 and r.stderr.startswith("petdaq: error: --lv-axis '1,2,3': give "
                                                     "APEX_X,Y,Z:BASE_X,Y,Z"), r.stderr


@pytest.mark.slow
def test_a_sites_normal_limits_score_a_cardiac_run_and_bad_requests_are_one_line(heart_run,
                                                                                 tmp_path):
    """``petdaq cardiac normals`` on runs (here the one run three times: the command's path,
    not a database), ``petdaq recon --cardiac --limits``: the man's scores against them, and
    limits of another correction, a head and a folder that is no run refused in one line."""
    import csv
    import json

    from inprocess import petdaq as in_process

    petdaq = _petdaq_ok
    heart = str(heart_run)
    limits = tmp_path / "site.json"
    petdaq("cardiac", "normals", heart, heart, heart, "--out", str(limits))
    petdaq("recon", heart, "--cardiac", "--limits", str(limits), "--out", str(tmp_path / "site"),
           "--no-dicom")
    scored = json.loads((tmp_path / "site" / "report.json").read_text())["perfusion"]
    assert scored["sex"] == "M" and scored["attenuation_correction"] == "calculated"
    assert scored["summed_score"] == 0 and scored["abnormal_territories"] == [], scored
    with open(tmp_path / "site" / "polar_map.csv") as fh:
        assert [int(r["score"]) for r in csv.DictReader(fh)] == [0] * 17
    r = in_process("recon", heart, "--cardiac", "--limits", str(limits), "--no-attenuation",
                   "--out", str(tmp_path / "none"))
    assert r.returncode == 2 and "no normal limits for spect-dual-head with none" in r.stderr
    r = in_process("recon", heart, "--cardiac", "--body-part", "HEAD")
    assert r.returncode == 2 and r.stderr == ("petdaq: error: --cardiac: the scan is of the HEAD, "
                                              "not of a heart\n"), r.stderr
    r = in_process("cardiac", "normals", str(tmp_path), "--out", str(limits))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    # a learned map this camera has no model for, one of another camera, a truncated one:
    # refused in one line before anything is reconstructed
    from recon.spect import learnedmap

    cut = tmp_path / "cut.onnx"
    cut.write_bytes(learnedmap.shipped("spect-general").read_bytes()[:4000])
    for mu_map, words in (("learned", "no learned mu-map model ships for camera "
                                      "spect-dual-head"),
                          (str(learnedmap.shipped("spect-general")),
                           "is of camera spect-general, not spect-dual-head"),
                          (str(cut), "cannot be read (truncated or not ONNX)")):
        r = in_process("recon", heart, "--cardiac", "--mu-map", mu_map, "--out",
                       str(tmp_path / "learned"))
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "learned").exists()
