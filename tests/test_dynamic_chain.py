"""Dynamic imaging end to end: an emulated brain-fdg scan acquired by the DAQ, its frames
reconstructed into BIDS-PET and DICOM, its curves and Patlak fit; SUV of a cylinder; bad input."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicomcheck import dciodvfy_errors, needs_dciodvfy

from petdaq.cli import main
from recon.corrections import attenuation
from recon.outputs.bids import REQUIRED
from runstore.rundir import RunDir

SCALE = 600.0                       # model minutes per minute: 2 s of scan = 20 model minutes
SCHEDULE = "4x30s,4x60s,3x120s,2x240s"  # 20 model minutes


def _petdaq(*argv: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "petdaq", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=900,
                          env=None if env is None else {**os.environ, **env})
    assert done.returncode == 0, f"petdaq {' '.join(argv)}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    _petdaq("run", "--phantom", "brain-fdg", "--activity-mbq", "60", "--kinetic-time-scale",
            str(SCALE), "--duration", "2", "--fast", "--seed", "4", "--out", str(out),
            "--name", "fdg", "--patient-id", "sub01", "--weight-kg", "70", "--tracer", "FDG",
            "--frames", SCHEDULE,
            # numba's always-present threading layer, which aborts on parallel kernels run from
            # two threads at once: the live image and the live frames must take turns
            env={"NUMBA_THREADING_LAYER": "workqueue"})
    run = out / "fdg"
    # the frames with the live frames' mu-map (the first frame's estimate): the same images
    assert main(["recon", str(run), "--frames", SCHEDULE, "--mu-map", str(_live_mu(run))]) == 0
    return run


def _live_mu(run: Path) -> Path:
    return run / "kinetics" / "live_mu_map.nii.gz"


def test_the_run_records_its_study_and_its_kinetic_clock(dynamic_run: Path):
    start = RunDir.open(dynamic_run).start
    study = start.settings["study"]
    assert study["patient_id"] == "sub01" and study["weight_kg"] == 70.0
    assert study["body_part"] == "HEAD"                # the head phantom's exam
    assert study["injected_mbq"] == 60.0 and study["injection_time_utc"] == start.time_utc
    assert start.setting("kinetic_time_scale") == SCALE


def test_a_replay_keeps_the_scan_facts_and_its_frames_are_those_of_the_run(
        dynamic_run: Path, tmp_path: Path):
    """``petdaq sort --out DIR`` (a replay without the image) makes DIR a run with the scan's
    phantom, study, kinetic clock and start time, the same coincidences and singles rates: its
    frames are the run's."""
    from runstore.facts import run_facts
    from runstore.listmode import read_listmode, read_singles_rates

    again = tmp_path / "again"
    assert main(["sort", str(dynamic_run), "--out", str(again)]) == 0
    assert run_facts(RunDir.open(again)) == run_facts(RunDir.open(dynamic_run))
    a, b = again / "coincidences.h5", dynamic_run / "coincidences.h5"
    assert np.array_equal(read_listmode(a)[0], read_listmode(b)[0])
    first, second = read_singles_rates(a), read_singles_rates(b)
    assert np.array_equal(first.counts, second.counts) and first.counts.sum() > 0
    assert (first.start_ps, first.end_ps) == (second.start_ps, second.end_ps)
    assert main(["recon", str(again), "--frames", SCHEDULE, "--no-dicom", "--mu-map",
                 str(_live_mu(dynamic_run))]) == 0
    frames = [np.asarray(nib.load(next((r / "dynamic").glob("*_pet.nii.gz"))).dataobj)
              for r in (again, dynamic_run)]
    assert np.array_equal(*frames)


def test_the_bids_sidecar_has_every_required_field_and_the_frames_read_back(dynamic_run: Path):
    folder = dynamic_run / "dynamic"
    side = json.loads((folder / "sub-sub01_pet.json").read_text())
    assert not [f for f in REQUIRED if f not in side]
    assert side["TracerName"] == "FDG" and side["InjectedRadioactivity"] == 60.0
    assert side["Units"] == "Bq/mL" and side["ImageDecayCorrected"] is True
    starts, durations = np.array(side["FrameTimesStart"]), np.array(side["FrameDuration"])
    assert starts[0] == 0 and np.allclose(np.diff(starts), durations[:-1])
    assert starts[-1] + durations[-1] == pytest.approx(20 * 60)
    img = nib.load(str(folder / "sub-sub01_pet.nii.gz"))
    assert img.shape[3] == starts.size == 13
    files = sorted((folder / "dicom").glob("*.dcm"))
    per_frame: dict[int, list] = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        per_frame.setdefault(int(ds.ActualFrameDuration), []).append(ds)
        assert ds.SeriesType[0] == "DYNAMIC" and ds.NumberOfTimeSlices == 13
    assert len(files) == 13 * img.shape[2]
    # DICOM keeps the acquisition's clock: model seconds / SCALE, in ms
    assert sorted(per_frame) == sorted({round(1000 * d / SCALE) for d in durations})
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert float(first.PatientWeight) == 70.0


@needs_dciodvfy
def test_the_dynamic_dicom_series_passes_dciodvfy(dynamic_run: Path):
    files = sorted((dynamic_run / "dynamic" / "dicom").glob("*.dcm"))
    for path in (files[0], files[-1]):
        assert dciodvfy_errors(path) == [], path.name


def test_the_frames_add_up_to_the_static_image_of_the_same_events(dynamic_run: Path, tmp_path):
    """Frames, weighted by the decays each stands for, against a static image of the same
    events with as many updates (20: each frame has one subset): the grey and white matter
    means agree within noise."""
    from emulator import phantoms
    from hw.scanner import load_scanner
    from recon import default_grid
    from recon.kinetics.regions import eroded, phantom_regions

    side = json.loads((dynamic_run / "dynamic" / "sub-sub01_pet.json").read_text())
    frames = nib.load(str(dynamic_run / "dynamic" / "sub-sub01_pet.nii.gz")).get_fdata()
    assert main(["recon", str(dynamic_run), "--iterations", "20", "--subsets", "1", "--out",
                 str(tmp_path), "--no-dicom", "--mu-map", str(_live_mu(dynamic_run))]) == 0
    static = nib.load(str(tmp_path / "image.nii.gz")).get_fdata()
    lam = math.log(2) / 6586.2
    start = np.array(side["FrameTimesStart"]) / SCALE
    dur = np.array(side["FrameDuration"]) / SCALE
    w = np.exp(-lam * start) - np.exp(-lam * (start + dur))
    summed = np.tensordot(frames, w, axes=([3], [0])) / (1 - math.exp(-lam * 2.0))
    scanner = load_scanner("bedside-brain")
    regions = phantom_regions(phantoms.get("brain-fdg", scanner), default_grid(scanner, 2.0))
    for name in ("grey_matter", "white_matter"):      # 2 mm in from their edges, as below
        m = eroded(regions[name], 2.0, (2.0, 2.0, 2.0))
        assert summed[m].mean() == pytest.approx(static[m].mean(), rel=0.05)


def test_without_a_mu_map_the_heads_regions_read_as_with_its_own(dynamic_run: Path, tmp_path):
    """The run's own calculated mu-map (the outline of its emission, water, a skull: the
    default) against the phantom's (``--mu-map truth``): grey and white matter within 5 %."""
    from emulator import phantoms
    from hw.scanner import load_scanner
    from recon import default_grid, read_nifti
    from recon.kinetics.regions import eroded, phantom_regions

    images = {}
    for choice in ("estimate", "truth"):
        assert main(["recon", str(dynamic_run), "--mu-map", choice, "--no-dicom", "--out",
                     str(tmp_path / choice)]) == 0
        images[choice] = read_nifti(tmp_path / choice / "image.nii.gz").array
    scanner = load_scanner("bedside-brain")
    regions = phantom_regions(phantoms.get("brain-fdg", scanner), default_grid(scanner, 2.0))
    for name in ("grey_matter", "white_matter"):
        m = eroded(regions[name], 2.0, (2.0, 2.0, 2.0))
        ratio = images["estimate"][m].mean() / images["truth"][m].mean()
        print(f"{name}: estimated / truth mu-map {ratio:.3f}")
        assert ratio == pytest.approx(1.0, abs=0.05)
    mu = read_nifti(tmp_path / "estimate" / "mu_map.nii.gz").array
    assert mu.max() == pytest.approx(attenuation.MU_SKULL_PER_MM)   # the study says HEAD: a skull


def test_scatter_corrected_frames_of_few_prompts_are_noted(dynamic_run: Path, tmp_path, capsys):
    assert main(["recon", str(dynamic_run), "--frames", "2x5min,1x10min", "--scatter",
                 "--no-dicom", "--out", str(tmp_path)]) == 0
    said = capsys.readouterr().err
    assert "petdaq: note: 3 of 3 frames (1-3) have under 100 k prompts" in said
    sidecar = json.loads(next(tmp_path.glob("*_pet.json")).read_text())
    assert sidecar["ScatterCorrectionMethod"] != "none"
    assert all(0.9 < f < 1.2 for f in sidecar["DeadTimeCorrectionFactor"])


def test_curves_and_patlak_from_the_image_derived_input(dynamic_run: Path, capsys):
    assert main(["kinetics", str(dynamic_run), "--model", "patlak", "--input-region",
                 "blood", "--t-star-min", "8"]) == 0
    assert "note: the frames have no scatter correction" in capsys.readouterr().out
    out = dynamic_run / "kinetics"
    with open(out / "tacs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["region"] for r in rows} == {"grey_matter", "white_matter", "blood"}
    assert len(rows) == 3 * 13
    with open(out / "parameters.csv") as fh:
        params = {r["region"]: r for r in csv.DictReader(fh)}
    grey, white = float(params["grey_matter"]["Ki_per_min"]), \
        float(params["white_matter"]["Ki_per_min"])
    assert 0 < white < grey                       # true Ki: 0.0158 and 0.0329 /min
    assert (out / "tacs.png").stat().st_size > 1000 and (out / "patlak.png").is_file()


def test_the_live_curves_are_those_of_the_frames_reconstructed_after_the_scan(
        dynamic_run: Path, tmp_path: Path):
    """The DAQ reconstructed each frame as it completed (``petdaq run --frames``): the same
    events in the same order give the curves of ``petdaq recon --frames``, byte for byte (these
    frames' subsets fit one EM block of 32 k events, so no thread scheduling enters the sums)."""
    assert RunDir.open(dynamic_run).start.settings["frame_schedule"] == SCHEDULE
    assert RunDir.open(dynamic_run).stop.losses["live_frames_dropped_events"] == 0
    assert main(["kinetics", str(dynamic_run), "--model", "suvr", "--reference",
                 "white_matter", "--out", str(tmp_path)]) == 0
    live = (dynamic_run / "kinetics" / "live_tacs.csv").read_bytes()
    assert live == (tmp_path / "tacs.csv").read_bytes()
    assert live.count(b"\n") == 1 + 3 * 13


@pytest.mark.parametrize(("argv", "error"), [
    (["recon", "{run}", "--frames", "4x30s,4x60s,3x120s,3x240s"], "frames end at"),
    (["recon", "{run}", "--frames", "2x0.001s,4x60s"], "has no prompts"),
    (["kinetics", "{run}", "--model", "patlak", "--input-region", "aorta"], "no region 'aorta'"),
    (["recon", "{run}", "--scatter", "--no-attenuation"],
     "scatter correction needs a mu-map"),
    (["kinetics", "{run}", "--model", "patlak"], "Patlak needs its input"),
    (["kinetics", "{run}", "--model", "logan"], "needs a reference region"),
])
def test_bad_input_is_one_line(dynamic_run: Path, capsys, argv, error):
    assert main([a.replace("{run}", str(dynamic_run)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("petdaq: error:") and error in err[0]


def test_suv_without_the_patients_weight_says_so(dynamic_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "noweight"
    run.mkdir()
    doc = json.loads((dynamic_run / "run.json").read_text())
    del doc["start"]["settings"]["study"]["weight_kg"]
    (run / "run.json").write_text(json.dumps(doc))
    (run / "dynamic").symlink_to(dynamic_run / "dynamic")
    assert main(["kinetics", str(run), "--model", "suv"]) == 2
    assert "SUV needs the study's weight_kg" in capsys.readouterr().err


@pytest.mark.slow
def test_suv_of_a_uniform_cylinder_is_its_true_suv(tmp_path: Path, monkeypatch):
    """The technologist's order: the energy gains calibrated on a cylinder scan, then a cylinder
    of 5 MBq at the scan's start, 70 kg, injected an hour before with what has decayed to 5 MBq:
    its true SUV is weight / volume."""
    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path / "home"))
    common = ["--phantom", "cylinder", "--activity-mbq", "5", "--duration", "2", "--fast",
              "--out", str(tmp_path)]
    _petdaq("run", *common, "--name", "gains", "--no-recon", "--seed", "1")
    _petdaq("calibrate", str(tmp_path / "gains"))
    injection = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    injected = 5.0 * math.exp(math.log(2) / 6586.2 * 3600)   # decays to 5 MBq at the start
    _petdaq("run", *common, "--name", "cyl", "--weight-kg", "70", "--injected-mbq",
            f"{injected:.6f}", "--injection-time", injection, "--seed", "2")
    run = tmp_path / "cyl"
    assert main(["kinetics", str(run), "--model", "suv", "--sphere", "centre:0,0,0,40"]) == 0
    with open(run / "kinetics" / "parameters.csv") as fh:
        row = next(csv.DictReader(fh))
    from emulator import phantoms
    from hw.scanner import load_scanner

    shape = phantoms.get("cylinder", load_scanner("bedside-brain")).parts[0].shape
    volume_ml = math.pi * shape.semi_axes_mm[0] * shape.semi_axes_mm[1] * \
        2 * shape.semi_axes_mm[2] / 1000
    assert float(row["SUVmean"]) == pytest.approx(70_000 / volume_ml, rel=0.10)
