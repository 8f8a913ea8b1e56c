"""Motion detection: the prompts' centroid per interval, its episodes (the same chunk by chunk as
whole), no alarm on a still or drifting head, and the DAQ's live alert and recorded episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from daq import messages
from daq.perf.motionlatency import motion_messages
from hw import load_scanner
from hw.dtypes import COINC_DTYPE
from hw.motion import load_trace, preset
from infra.ports import free_port_block
from petdaq.cli import main
from recon import read_nifti
from recon.motion.episodes import ALERT_MM, Detector, find_episodes
from recon.motion.signal import N_SUMS, MotionSignal, SignalMaker


def _signal(centroids: np.ndarray, spread_mm: float = 100.0, n: int = 100_000,
            seed: int = 0) -> MotionSignal:
    """A signal of ``n`` prompts an interval spread by ``spread_mm`` (3-D rms) about the
    ``centroids`` (k, 3), with the centroids' noise drawn as the counts give it."""
    rng = np.random.default_rng(seed)
    sigma = spread_mm / np.sqrt(3.0)
    mean = centroids + rng.normal(scale=sigma / np.sqrt(n), size=centroids.shape)
    sums = np.zeros((len(centroids), N_SUMS))
    sums[:, 0] = n
    sums[:, 1:4] = mean * n
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    for j, (a, b) in enumerate(pairs):
        sums[:, 4 + j] = n * (mean[:, a] * mean[:, b] + (sigma ** 2 if a == b else 0.0))
    return MotionSignal(0.5, sums)


def test_a_still_head_for_an_hour_and_a_slow_drift_raise_no_alarm():
    t_s = (np.arange(7200) + 0.5) * 0.5
    still = _signal(np.zeros((7200, 3)))
    assert find_episodes(still) == []
    drift = preset("drift").params_at(t_s)[:, :3]
    assert find_episodes(_signal(drift, seed=1)) == []


def test_a_step_is_one_episode_of_its_size_at_its_time():
    t_s = (np.arange(240) + 0.5) * 0.5
    steps = np.where(t_s[:, None] > 60.0, [2.0, -1.0, 0.5], 0.0)
    episodes = find_episodes(_signal(steps, seed=2))
    assert len(episodes) == 1
    e = episodes[0]
    assert e.start_s == 60.0 and 60.0 < e.end_s <= 61.0
    assert e.size_mm == pytest.approx(np.linalg.norm([2.0, -1.0, 0.5]), abs=0.1)
    small = np.where(t_s[:, None] > 60.0, [0.5 * ALERT_MM, 0.0, 0.0], 0.0)
    assert find_episodes(_signal(small, seed=2)) == []


def test_the_detector_finds_the_same_episodes_interval_by_interval():
    t_s = (np.arange(400) + 0.5) * 0.5
    rows = preset("restless", 2).params_at(t_s)[:, :3]
    whole = find_episodes(_signal(rows, seed=3))
    assert len(whole) >= 2
    signal, detector = _signal(rows, seed=3), Detector()
    for k in range(1, 401, 7):
        detector.update(MotionSignal(0.5, signal.sums[:k]))
    detector.update(signal)
    assert detector.finish(200.0) == whole


def test_the_signal_is_the_same_chunk_by_chunk(brain):
    rng = np.random.default_rng(4)
    coinc = np.zeros(20_000, COINC_DTYPE)
    coinc["t"] = np.sort(rng.integers(0, 3_000_000_000_000, coinc.size))
    coinc["crystal_a"] = rng.integers(0, brain.n_crystals, coinc.size)
    coinc["crystal_b"] = (coinc["crystal_a"] + rng.integers(1, brain.n_crystals, coinc.size)
                          ) % brain.n_crystals
    coinc["dt"] = rng.integers(-300, 300, coinc.size)
    coinc["delayed"] = rng.random(coinc.size) < 0.1
    whole, parts = SignalMaker(brain), SignalMaker(brain)
    whole.add(coinc)
    for chunk in np.array_split(coinc, 13):
        parts.add(chunk)
    assert whole.sums[:, 0].sum() == np.count_nonzero(coinc["delayed"] == 0)
    assert np.allclose(whole.sums, parts.sums, rtol=1e-12, atol=1e-6)
    assert whole.signal(upto_s=1.2).sums.shape[0] == 2 and whole.signal().sums.shape[0] == 6


def test_the_daq_alerts_on_a_step_and_records_the_episode(tmp_path, capsys):
    """An emulated point source (a head's study) that steps 6 mm at 2.2 s (the first 2 s settle the
    reference): the monitor stream's
    motion message says "motion", the run's stop document holds the one episode, where and how
    large; ``petdaq recon`` estimates the step from the prompts into RUN/motion.csv and puts
    the source back where it was."""
    trace = tmp_path / "step.csv"
    trace.write_text("t_s,tx_mm,ty_mm,tz_mm,rx_deg,ry_deg,rz_deg\n0,0,0,0,0,0,0\n"
                     "2.2,0,0,0,0,0,0\n2.4,0,6,0,0,0,0\n")
    port = free_port_block(1)
    with motion_messages(port) as got:
        assert main(["run", "--phantom", "point", "--activity-mbq", "1", "--duration", "5",
                     "--fast", "--no-recon", "--motion", str(trace), "--monitor-port", str(port),
                     "--body-part", "HEAD", "--out", str(tmp_path / "runs"), "--name", "step"]) == 0
    stop_doc = json.loads((tmp_path / "runs" / "step" / "run.json").read_text())["stop"]
    episodes = stop_doc["motion"]["episodes"]
    assert len(episodes) == 1, episodes
    assert 2.0 <= episodes[0]["start_s"] <= 2.5 and episodes[0]["end_s"] <= 3.5
    assert episodes[0]["size_mm"] == pytest.approx(6.0, abs=0.6)
    assert stop_doc["losses"]["motion_dropped_events"] == 0
    assert any(m["alert"] == "motion" for m in got), [m["alert"] for m in got]
    last = got[-1]
    shown = messages.decode_array(last["displacement_mm"])
    assert shown.size == 10 and last["episodes"] == episodes and last["alert"] == ""
    run = tmp_path / "runs" / "step"
    capsys.readouterr()
    assert main(["recon", str(run), "--voxel", "4", "--samples", "1000000", "--no-dicom"]) == 0
    assert "motion: corrected event by event" in capsys.readouterr().out
    estimated = load_trace(run / "motion.csv")
    assert estimated.params_at(4.5)[:3] == pytest.approx([0, 6, 0], abs=0.5)
    assert estimated.params_at(1.0) == pytest.approx(np.zeros(6), abs=0.2)
    image = read_nifti(run / "images" / "image.nii.gz")
    a = np.asarray(image.array)
    peak = np.unravel_index(np.argmax(a), a.shape) * np.asarray(image.grid.voxel_mm)
    assert peak + np.asarray(image.grid.origin_mm) == pytest.approx([0, 0, 0], abs=4.1)


def test_a_scanner_without_tof_watches_the_lines_midpoints():
    scanner = load_scanner("bedside-brain")
    maker = SignalMaker(scanner, tof=False)
    coinc = np.zeros(2, COINC_DTYPE)
    coinc["crystal_a"], coinc["crystal_b"], coinc["dt"] = [0, 5], [100, 900], [400, -400]
    ends = maker._ends
    mids = 0.5 * (ends[[0, 5]] + ends[[100, 900]])
    maker.add(coinc)
    sums = maker.signal().sums[0]
    assert sums[0] == 2 and np.allclose(sums[1:4] / 2, mids.mean(axis=0))
