"""Daily QC from the crystals' own Lu-176: injected faults (dead, noisy, a module's gain and
efficiency, a board's skew) found by ``petdaq qc`` against the scanner's baseline, and nothing
else; bad input in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from inprocess import petdaq as _inprocess

from daq.qc.figures import LOG_BIN, SPECTRUM_KEV, centre, gain_ratio, n_bins
from hw import load_scanner
from hw.faults import Faults, load_faults
from infra.errors import UserError

BRAIN = load_scanner("bedside-brain")

FAULTS = """
[[dead]]
crystal = 17
[[noisy]]
crystal = 300
rate_cps = 5000.0
[[gain]]
module = 3
factor = 0.97
[[efficiency]]
module = 9
factor = 0.9
[[resolution]]
module = 7
factor = 1.2
[[skew]]
board = 1
ps = 200.0
[[skew]]
module = 13
ps = 150.0
"""
#: What the faults above must flag, and nothing else.
FLAGGED = {("crystal 17", "dead"), ("crystal 300", "noisy"), ("module 3", "gain"),
           ("module 9", "singles rate"), ("module 9", "sensitivity (intrinsic coincidences)"),
           ("module 7", "energy resolution"),
           ("board 1", "time offset (ps)"), ("module 13", "time offset within its board (ps)")}


def test_faults_change_the_units_truth_not_its_definition(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text(FAULTS)
    faults = load_faults(path, BRAIN.fault_counts())
    unit = replace(BRAIN, faults=faults)
    assert unit.digest == BRAIN.digest
    assert unit.crystal_acceptance()[17] == 0 and unit.crystal_efficiencies()[17] == 0
    module = BRAIN.crystal_module
    assert np.allclose((unit.crystal_gains() / BRAIN.crystal_gains())[module == 3], 0.97)
    ratio = unit.crystal_acceptance() / BRAIN.crystal_acceptance()
    live = (BRAIN.crystal_acceptance() > 0) & (np.arange(12288) != 17)
    assert np.allclose(ratio[(module == 9) & live], 0.9)
    assert np.allclose(ratio[(module != 9) & live], 1)
    assert set(np.unique(unit.crystal_time_offset_ps()[BRAIN.crystal_board == 1])) == {200}
    assert set(np.unique(unit.crystal_time_offset_ps()[module == 13])) == {150}
    assert np.allclose((unit.crystal_fwhm_scale() / BRAIN.crystal_fwhm_scale())[module == 7], 1.2)
    assert unit.noisy_channels() == ((300, 5000.0),)
    assert Faults.from_json(faults.to_json()) == faults


@pytest.mark.parametrize(("text", "error"), [
    ("[[broken]]\ncrystal = 1\n", "unknown fault [[broken]]"),
    ("[[dead]]\ncrystal = 99999\n", "crystal = 99999: the scanner has 12288"),
    ("[[gain]]\nmodule = 3\n", "[[gain]] takes factor and module, got module"),
    ("[[efficiency]]\nmodule = 3\nfactor = 1.5\n", "factor = 1.5 must be a number from 0 to 1"),
    ("[[skew]]\nboard = 9\nps = 1.0\n", "board = 9: the scanner has 4"),
    ("dead = 3\n", "'dead' must be [[dead]] tables"),
    ("[[dead]\n", "not valid TOML"),
])
def test_a_bad_fault_file_is_one_line(tmp_path, text, error):
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=error.replace("[", r"\[").replace("]", r"\]")):
        load_faults(path, BRAIN.fault_counts())
    with pytest.raises(UserError, match="no such file"):
        load_faults(tmp_path / "none.toml", BRAIN.fault_counts())


def test_a_gain_is_a_shift_of_the_log_spectrum_and_a_centre_ignores_the_gap():
    e = np.exp(np.log(SPECTRUM_KEV[0]) + LOG_BIN * (np.arange(n_bins()) + 0.5))
    shape = lambda kev: 1e5 * (np.exp(-kev / 250) + np.exp(-0.5 * ((kev - 420) / 40) ** 2))  # noqa: E731
    assert gain_ratio(shape(e / 0.97), shape(e)) == pytest.approx(0.97, abs=0.0005)
    assert gain_ratio(shape(e), shape(e)) == pytest.approx(1.0, abs=1e-4)
    rng = np.random.default_rng(1)
    peaks = np.concatenate([rng.normal(-700, 150, 20000), rng.normal(700, 150, 20000)])
    randoms = rng.uniform(-4000, 4000, 8000)
    assert centre(np.concatenate([peaks, randoms]) + 200) == pytest.approx(200, abs=15)


def _petdaq(*args: str, home: Path) -> subprocess.CompletedProcess:
    return _inprocess(*args, home=home)


@pytest.mark.slow
def test_qc_flags_each_injected_fault_and_nothing_else(tmp_path):
    """The must-show on 5 s blanks: no baseline is one line; a baseline; two clean blanks of
    other seeds PASS with nothing flagged; a blank with a dead channel, a noisy one, a module's
    3 % gain drop, another's 10 % efficiency drop, a third's 20 % worse energy resolution, a
    board's 200 ps skew and a fourth module's 150 ps skew FAILs naming exactly those."""
    home, runs = tmp_path / "home", tmp_path / "runs"
    blank = ["--duration", "5", "--out", str(runs)]
    r = _petdaq("qc", *blank, home=home)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "petdaq: error: no QC baseline for bedside-brain: take one after calibration and "
        "normalization (petdaq qc --set-baseline, or petdaq qc --run BLANK_RUN "
        "--set-baseline)"] and not runs.exists()
    r = _petdaq("qc", *blank, "--set-baseline", "--name", "base", "--seed", "1", home=home)
    assert r.returncode == 0 and "stored the QC baseline of bedside-brain" in r.stdout, r.stderr
    for seed in (2, 3):
        r = _petdaq("qc", *blank, "--seed", str(seed), "--name", f"clean{seed}", home=home)
        assert r.returncode == 0 and r.stdout.startswith("QC PASS"), r.stdout + r.stderr
        report = json.loads((runs / f"clean{seed}" / "qc.json").read_text())
        assert report["result"] == "PASS" and all(f["status"] == "PASS"
                                                  for f in report["findings"])
    (tmp_path / "faults.toml").write_text(FAULTS)
    r = _petdaq("qc", *blank, "--seed", "4", "--name", "faulty", "--faults",
                str(tmp_path / "faults.toml"), home=home)
    assert r.returncode == 1 and r.stdout.startswith("QC FAIL"), r.stdout + r.stderr
    report = json.loads((runs / "faulty" / "qc.json").read_text())
    flagged = {(f["component"], f["check"]) for f in report["findings"] if f["status"] != "PASS"}
    assert flagged == FLAGGED, flagged
    assert all(f["status"] == "FAIL" for f in report["findings"] if f["status"] != "PASS")
    assert "petdaq calibrate BLANK_RUN --method lu176" in r.stdout  # what to do, printed
    run = json.loads((runs / "faulty" / "run.json").read_text())
    assert run["start"]["settings"]["emulator"]["faults"]["gain"] == [[3, 0.97]]
    assert (runs / "faulty" / "qc_crystals.png").stat().st_size > 1000
    r = _petdaq("qc", "--history", home=home)
    assert r.returncode == 0 and [ln.split()[1] for ln in r.stdout.splitlines()[1:4]] == [
        "PASS", "PASS", "FAIL"], r.stdout
    # a scan started after the failed QC records it
    r = _petdaq("run", "--phantom", "point", "--activity-mbq", "1", "--duration", "0.2",
                "--fast", "--no-recon", "--out", str(runs), "--name", "scan", home=home)
    assert r.returncode == 0, r.stderr
    qc = json.loads((runs / "scan" / "run.json").read_text())["start"]["settings"]["qc"]
    assert qc["result"] == "FAIL" and qc["flagged"] == len(FLAGGED)
    assert qc["run"] == str(runs / "faulty")


@pytest.mark.slow
def test_qc_of_a_scan_or_against_another_scanners_baseline_is_one_line(tmp_path):
    home, runs = tmp_path / "home", tmp_path / "runs"
    r = _petdaq("run", "--phantom", "blank", "--duration", "2", "--fast", "--no-recon", "--out",
                str(runs), "--name", "blank", home=home)
    assert r.returncode == 0, r.stderr
    r = _petdaq("qc", "--run", str(runs / "blank"), "--set-baseline", home=home)
    assert r.returncode == 0, r.stderr
    r = _petdaq("run", "--phantom", "point", "--activity-mbq", "1", "--duration", "0.3",
                "--fast", "--no-recon", "--out", str(runs), "--name", "point", home=home)
    assert r.returncode == 0, r.stderr
    for extra in ((), ("--set-baseline",)):     # nor is a scan ever taken as the baseline
        r = _petdaq("qc", "--run", str(runs / "point"), *extra, home=home)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            f"petdaq: error: {runs / 'point'} is a scan of the point phantom, not a blank: the "
            "QC needs nothing in the scanner (petdaq qc acquires one)"]
    (tmp_path / "dead.toml").write_text("[[dead]]\ncrystal = 5\n")
    r = _petdaq("qc", "--set-baseline", "--duration", "1", "--out", str(runs), "--faults",
                str(tmp_path / "dead.toml"), home=home)
    assert r.returncode == 2 and "emulated with injected faults: a baseline needs the healthy " \
        "unit" in r.stderr
    (stored,) = (home / "calibration" / "qc").glob("bedside-brain-baseline-*.npz")
    with np.load(stored) as z:
        fields = dict(z)
    np.savez(stored, **{**fields, "scanner_digest": "another"})
    r = _petdaq("qc", "--run", str(runs / "blank"), home=home)
    assert r.returncode == 2 and "was taken with another definition of bedside-brain" in r.stderr
    stored.write_bytes(stored.read_bytes()[:100])
    r = _petdaq("qc", "--run", str(runs / "blank"), home=home)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "is damaged or not a baseline" in r.stderr
    r = _petdaq("qc", "--run", str(runs / "blank"), "--tolerances", str(tmp_path / "x.toml"),
                home=home)
    assert r.returncode == 2 and "QC tolerances" in r.stderr and "no such file" in r.stderr


def test_the_schedule_runs_once_a_day_at_or_after_its_time(tmp_path, monkeypatch):
    import datetime as dt

    from daq.qc.schedule import DailyQc, parse_time

    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path))
    qc = DailyQc(parse_time("06:00"), "bedside-brain", tmp_path)
    assert qc.last_day is None            # no QC in the history yet
    day = dt.date(2026, 11, 26)
    assert not qc.due(dt.datetime.combine(day, dt.time(5, 59)))
    assert qc.due(dt.datetime.combine(day, dt.time(6, 0)))
    assert qc.due(dt.datetime.combine(day, dt.time(14, 0)))   # missed this morning: now
    qc.last_day = day
    assert not qc.due(dt.datetime.combine(day, dt.time(23, 0)))
    assert qc.due(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(6, 1)))
    with pytest.raises(UserError, match="--qc-at '6 am': give the local time as HH:MM"):
        parse_time("6 am")


@pytest.mark.slow
def test_the_service_runs_the_daily_qc_while_idle(tmp_path):
    """``petdaq serve --qc-at 00:00`` on a day without a QC runs it at once (a 2 s blank) and
    says how it ended; it is in the scanner's history. (Its result is the statistics' of two
    2 s blanks of different seeds: PASS or, now and then, a WARN.)"""
    import os
    import time

    from gui.local_daq import free_port

    home, runs = tmp_path / "home", tmp_path / "runs"
    r = _petdaq("qc", "--duration", "2", "--out", str(runs), "--set-baseline", home=home)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, BEDSIDE_PET_HOME=str(home))
    serve = subprocess.Popen(
        [sys.executable, "-m", "petdaq", "serve", "--monitor-port", str(free_port()),
         "--control-port", str(free_port()), "--out", str(runs), "--qc-at", "00:00",
         "--qc-duration", "2"], stderr=subprocess.PIPE, text=True, env=env)
    history = home / "calibration" / "qc" / "bedside-brain-history.jsonl"
    try:
        deadline = time.monotonic() + 300
        while not history.is_file() and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.5)
        time.sleep(5.0)       # the QC's exit, and the service's line about it
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=60)
    assert history.is_file(), err
    result = json.loads(history.read_text().splitlines()[-1])["result"]
    assert result in ("PASS", "WARN") and f"daily QC: QC {result}: bedside-brain, 2 s blank" \
        in err, err


def test_the_history_picture_has_a_panel_per_figure_and_marks_a_failed_qc():
    from daq.qc import trend
    from daq.qc.checks import load_tolerances

    entries = [{"result": r, "module_rate": [1.0, m], "module_gain": [1.0, 1.0],
                "module_resolution": [1.0, 1.0], "board_offset_ps": [0.0, b]}
               for r, m, b in (("PASS", 1.0, 2.0), ("FAIL", 0.9, 2.0), ("PASS", 1.0, 200.0))]
    pic = trend.picture(entries, load_tolerances())
    assert pic.dtype == np.uint8 and pic.shape == (4 * trend.PANEL_PX + 12, 400, 3)
    red = np.all(pic == trend.COLOURS["fail_point"], axis=2)
    column = trend.MARGIN_PX + trend.STEP_PX + 2            # the failed QC's points
    assert red[:, column].any() and not red[:, trend.MARGIN_PX + 2].any()


def test_a_module_with_no_singles_fails_without_a_gain_to_blame_and_the_history_holds():
    """A dead module: its rate FAILs, its gain and resolution are not had (null, FAIL), and the
    history and its picture take the entry."""
    from daq.qc import checks, report, trend
    from daq.qc.figures import Figures, n_bins

    modules = int(BRAIN.crystal_module.max()) + 1
    spectra = np.full((modules, n_bins()), 50, np.int64)
    base = Figures("bedside-brain", BRAIN.digest, 60.0, np.full(BRAIN.n_crystals, 98.0), spectra,
                   np.zeros(modules), 75_000.0)
    cps, dead_spectra = base.crystal_cps.copy(), spectra.copy()
    cps[BRAIN.crystal_module == 4] = 0.0
    dead_spectra[4] = 0
    now = Figures("bedside-brain", BRAIN.digest, 60.0, cps, dead_spectra, np.zeros(modules),
                  70_000.0)
    verdict = checks.judge(now, base, BRAIN, checks.load_tolerances())
    module4 = {f.check: f for f in verdict.findings if f.component == "module 4"}
    assert module4["singles rate"].status == "FAIL" and module4["gain"].status == "FAIL"
    assert module4["gain"].action.startswith("no singles in its spectrum")
    assert not any(f.component.startswith("crystal") for f in verdict.flagged)  # the module's
    assert json.dumps(verdict.to_json(), allow_nan=False)       # no NaN in qc.json
    entry = report.history_entry(now, base, verdict, "run")
    assert entry["module_gain"][4] is None and json.dumps(entry, allow_nan=False)
    assert trend.picture([entry], checks.load_tolerances()).shape[1] == 400


def test_a_blank_journal_tallied_a_batch_at_a_time_gives_the_figures_of_its_singles_at_once(
        tmp_path):
    """``petdaq qc`` reads a blank run's journal a batch at a time (memory holds the crystals'
    spectra and the coincidences, not minutes of singles): its figures are those of the
    whole run's singles measured at once."""
    from daq.pipeline.replay import decode_journal
    from daq.qc.figures import measure
    from petdaq.runs.source import run_calibration
    from petdaq.scanner.qc import _figures
    from runstore.rundir import RunDir

    r = _petdaq("run", "--phantom", "blank", "--duration", "1", "--fast", "--no-recon",
                "--out", str(tmp_path), "--name", "blank", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    run = RunDir.open(tmp_path / "blank")
    scanner, streamed = _figures(run)
    singles = run_calibration(run, scanner).apply(decode_journal(run.journal, scanner))
    seconds = float(singles["t"][-1] - singles["t"][0]) * 1e-12
    at_once = measure(singles, scanner, seconds, 2)
    assert streamed.seconds == at_once.seconds
    assert np.array_equal(streamed.crystal_cps, at_once.crystal_cps)
    assert np.array_equal(streamed.module_spectra, at_once.module_spectra)
    assert streamed.intrinsic_cps == at_once.intrinsic_cps > 0
    np.testing.assert_allclose(streamed.module_offset_ps, at_once.module_offset_ps, atol=1e-6)


def test_the_console_draws_the_fail_bands_the_qc_was_judged_with():
    """A QC judged with a lab's own tolerances records their FAIL bands in the history; the
    QC tab draws those, and the default file's for an entry without them."""
    from daq.qc.report import console_message, fail_bands

    entry = {"created_utc": "2026-11-26T06:00:00", "run": "nowhere", "result": "PASS",
             "flagged": [], "module_rate": [1.0], "module_gain": [1.0], "board_offset_ps": [0.0]}
    own = {"module_rate": 0.08, "gain": 0.04}
    assert console_message("bedside-brain", [{**entry, "fail_bands": own}])["fail_bands"] == own
    assert console_message("bedside-brain", [entry])["fail_bands"] == fail_bands() == {
        "module_rate": 0.05, "gain": 0.02}


@pytest.mark.slow
def test_the_offered_gain_calibration_runs_on_the_latest_qcs_blank(tmp_path, monkeypatch):
    """What the console's button asks the DAQ service (``calibrate_gains``): ``petdaq
    calibrate QC_RUN --method lu176`` on the latest QC's blank, in the background, its end
    told; none without a QC, nor two at once."""
    import time

    from daq.qc.gaincal import GainCalibration

    home, runs = tmp_path / "home", tmp_path / "runs"
    monkeypatch.setenv("BEDSIDE_PET_HOME", str(home))
    job = GainCalibration()
    with pytest.raises(UserError, match="no QC of bedside-brain to calibrate its gains from"):
        job.start("bedside-brain")
    assert job.as_dict() is None
    def qc(name: str, seconds: str, *extra: str) -> None:
        r = _petdaq("qc", "--duration", seconds, "--out", str(runs), "--name", name, *extra,
                    home=home)
        assert r.returncode in (0, 1), r.stderr

    def calibrated() -> GainCalibration:
        deadline = time.monotonic() + 120
        while job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return job

    qc("base", "5", "--set-baseline")
    qc("short", "2")                 # too few counts a crystal: the calibration says so
    job.start("bedside-brain")
    assert job.as_dict()["state"] == "running" and job.run == str(runs / "short")
    with pytest.raises(UserError, match="is running: wait for it"):
        job.start("bedside-brain")
    assert calibrated().state == "failed" and "acquire longer" in job.message, job.message
    qc("today", "5")
    job.start("bedside-brain")
    assert calibrated().state == "done" and "lu176" in job.message, job.message
    assert "stored" in job.message and job.run == str(runs / "today")
    assert len(list((home / "calibration").rglob("*.npz"))) == 2   # the baseline, the gains
