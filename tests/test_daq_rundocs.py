"""The run's typed start and stop documents: written once, read back, older runs still open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runstore.facts import run_facts
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StartDocument, StopDocument


def _run(tmp_path: Path) -> RunDir:
    return RunDir.create(tmp_path, "run")


def test_start_and_stop_documents_read_back_as_written(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.start is None and run.stop is None
    settings = {"emulator": {"phantom": "nema-iq", "nuclide": "F-18", "activity_mbq": 2.5,
                             "duration_s": 12.0}, "sort": {"window_ps": 4000}, "threads": 2,
                "duration_s": None}  # an emulated run: its duration is the emulator's
    start = run.new_start("bedside-brain", "abc", settings, {"method": "nominal"})
    assert run.start == start and run.stop is None and start.run == "run"
    assert start.setting("nuclide") == "F-18" and start.setting("threads") == 2
    assert start.setting("nowhere") is None and start.sort == {"window_ps": 4000}
    assert start.scan_duration_s == 12.0 and start.setting("duration_s") == 12.0
    stop = StopDocument("duration reached", ExitStatus.SUCCESS, {"singles": 10},
                        {"seq_gaps": 0, "late_events": 3}, elapsed_s=12.5,
                        details={"cpu": {"total_s": 1.0}})
    run.write_stop(stop)
    assert run.stop == stop and run.stop.lost == {"late_events": 3} and not run.stop.failed
    raw = json.loads(run.meta_file.read_text())["stop"]
    assert raw["exit_status"] == "success" and raw["cpu"] == {"total_s": 1.0}  # flat, as before


def test_what_a_reconstruction_needs_comes_from_the_documents(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.new_start("bedside-brain", "abc", {"emulator": {
        "phantom": "nema-iq", "nuclide": "F-18", "activity_mbq": 2.5, "duration_s": 12.0}}, {})
    facts = run_facts(run)
    assert (facts.scanner, facts.phantom, facts.nuclide, facts.activity_mbq,
            facts.duration_s) == ("bedside-brain", "nema-iq", "F-18", 2.5, 12.0)
    run.write_stop(StopDocument("stop command", ExitStatus.ABORT, elapsed_s=4.25))
    assert run_facts(run).duration_s == 4.25  # what was acquired, not what was planned


def test_a_runs_duration_is_its_datas_not_the_time_it_took_to_read_them(tmp_path: Path) -> None:
    """A run read from a frames file (or replayed) reads its data faster than they were taken:
    its duration is the detector clock's time of its last single, not the wall clock's."""
    run = _run(tmp_path)
    run.new_start("bedside-brain", "abc", {"sources": ["r.frames"]}, {})
    run.write_stop(StopDocument("end of stream", ExitStatus.SUCCESS, elapsed_s=0.177,
                                data_end_s=0.2999))
    assert run.stop.data_end_s == 0.2999 and run_facts(run).duration_s == 0.2999
    older = _run(tmp_path / "older")  # a stop document written before it recorded the data's end
    older.new_start("bedside-brain", "abc", {}, {})
    older.write_stop(StopDocument("end of stream", ExitStatus.SUCCESS, elapsed_s=5.0))
    assert run_facts(older).duration_s == 5.0


OLD_RUN = {  # run.json as the DAQ wrote it before the documents had an exit status
    "start": {"uid": "0" * 32, "run": "old", "time_utc": "2026-01-05T10:00:00.000+00:00",
              "scanner": "bedside-brain", "scanner_digest": "d", "settings": {
                  "duration_s": None, "sort": {"window_ps": 4000}},
              "calibration": {}, "software": {}, "host": "h"},
    "stop": {"time_utc": "2026-01-05T10:00:10.000+00:00", "reason": "duration reached",
             "counts": {"singles": 5}, "losses": {"seq_gaps": 0}, "streams": [],
             "elapsed_s": 10.0, "cpu": {}},
}


@pytest.mark.parametrize(("reason", "status"), [
    ("duration reached", ExitStatus.SUCCESS), ("end of stream", ExitStatus.SUCCESS),
    ("stop command", ExitStatus.ABORT), ("interrupted (Ctrl-C)", ExitStatus.ABORT),
    ("error: cannot write x", ExitStatus.FAIL)])
def test_an_older_runs_documents_still_open(tmp_path: Path, reason: str,
                                            status: ExitStatus) -> None:
    run = _run(tmp_path)
    run.meta_file.write_text(json.dumps(OLD_RUN | {"stop": OLD_RUN["stop"] | {"reason": reason}}))
    stop = run.stop
    assert stop.exit_status is status and stop.reason == reason
    assert stop.details == {"streams": [], "cpu": {}} and stop.elapsed_s == 10.0
    assert run.start == StartDocument.from_json(OLD_RUN["start"])
    assert run.start.sort == {"window_ps": 4000} and run.start.scan_duration_s is None


def test_petdaq_info_reads_an_older_run(tmp_path: Path, capsys) -> None:
    from petdaq.summary import print_summary

    run = _run(tmp_path)
    run.meta_file.write_text(json.dumps(OLD_RUN))
    print_summary(run)
    out = capsys.readouterr().out
    assert "success: duration reached" in out and "5 singles" in out and "losses   none" in out
