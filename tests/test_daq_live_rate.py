"""The live chain at the scanner's real rate: ``petdaq count-rate --live`` and the paced
digitizer stand-in (a real child process over ZeroMQ), ``petdaq bench --scaling``."""

from __future__ import annotations

import csv
import json

import pytest

from daq.perf import scaling
from petdaq.cli import main

#: Rates and lags of the live DAQ: alone, not beside other tests.
pytestmark = pytest.mark.serial


def test_paced_replay_is_lossless_and_stops_when_the_daq_is_behind(brain) -> None:
    """Paced at its real rate, the replay loses nothing; told to give up at any lag (0 s), it
    stops every board after the repetition it was in, and still loses nothing."""
    import emulator
    from daq.perf.e2e import run_chain

    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.01, seed=3)
    paced = run_chain(brain, sim.raw_per_board, 0.05, threads=2, realtime=True)
    assert paced["zero_loss"] and not paced["gave_up"], paced
    assert paced["singles"] == 5 * sim.raw.size  # 0.05 s of data: five 0.01 s repetitions
    assert paced["realtime"] and paced["lag_s"] < 5.0
    given_up = run_chain(brain, sim.raw_per_board, 1.0, threads=1, realtime=True,
                         give_up_lag_s=0.0)
    assert given_up["gave_up"] and given_up["zero_loss"], given_up
    assert 0 < given_up["singles"] < 100 * sim.raw.size
    assert given_up["singles"] % sim.raw.size == 0  # whole repetitions on every board


def test_count_rate_live_writes_its_table(tmp_path, capsys) -> None:
    assert main(["count-rate", "--live", "--activities-mbq", "2", "--seconds", "0.3",
                 "--decays", "2e5", "--threads", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kept up" in out
    rows = list(csv.DictReader((tmp_path / "count_rate_live.csv").open()))
    assert [float(r["activity_mbq"]) for r in rows] == [2.0]
    assert rows[0]["zero_loss"] == "True" and int(rows[0]["singles"]) > 0
    assert int(rows[0]["threads"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--activities-mbq", "0"], "activities must be > 0 MBq"),
    (["--seconds", "-1"], "--seconds must be > 0"),
    (["--threads", "0"], "--threads must be a whole number >= 1"),
])
def test_count_rate_live_bad_input_is_one_line(tmp_path, capsys, argv, message) -> None:
    assert main(["count-rate", "--live", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_thread_counts() -> None:
    assert scaling.thread_counts(1) == [1]
    assert scaling.thread_counts(2) == [1, 2]
    assert scaling.thread_counts(16) == [1, 2, 4, 8, 16]
    assert scaling.thread_counts(12) == [1, 2, 4, 8, 12]


@pytest.mark.slow
def test_bench_scaling_json(capsys, monkeypatch) -> None:
    """``petdaq bench --scaling --quick --json`` on two threads at most: every point lossless,
    the efficiencies relative to one thread."""
    monkeypatch.setattr("infra.pool.available_cores", lambda: 2)
    assert main(["bench", "--scaling", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    points = report["scaling"]
    assert [p["threads"] for p in points] == [1, 2]
    assert all(p["zero_loss"] and p["e2e_singles_per_s"] > 0 for p in points)
    assert points[0]["e2e_efficiency"] == pytest.approx(1.0)
    assert all(p["emulator_singles_per_s"] > 0 and p["daq_cpu_ns_per_event"] > 0
               for p in points)
