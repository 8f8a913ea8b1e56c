"""The live frames' bookkeeping: each frame gets exactly its coincidences as soon as they have
passed its end, a full queue leaves a frame out (counted) instead of showing it wrong, and the
run's end finishes the frames the data reached. The reconstruction itself is checked end to end
in test_dynamic_chain.py (the live curves equal those of ``petdaq recon --frames``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from daq.control.liveframes import LiveFrames
from hw.dtypes import COINC_DTYPE
from recon.frames import parse_schedule


@dataclass
class _Image:
    array: np.ndarray


@dataclass
class _Made:
    image: _Image


class Recorder:
    """Stands in for the run's FrameRecon: keeps what each frame was given, and paints the
    frame's prompt count into a 2 x 1 x 1 image."""

    def __init__(self) -> None:
        self.given: dict[int, np.ndarray] = {}

    def reconstruct(self, part: np.ndarray, frame, rates=None) -> _Made:
        self.given[frame.number] = part.copy()
        n = float(np.count_nonzero(part["delayed"] == 0))
        return _Made(_Image(np.array([[[n]], [[2 * n]]], np.float32)))


def _coincidences(t_s: np.ndarray) -> np.ndarray:
    c = np.zeros(t_s.size, COINC_DTYPE)
    c["t"] = np.round(t_s * 1e12).astype(np.int64)
    c["delayed"] = (np.arange(t_s.size) % 7 == 0)
    return c


def _wait(condition, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


REGIONS = {"a": np.array([[[True]], [[False]]]), "b": np.array([[[True]], [[True]]])}


def test_each_frame_gets_its_events_once_they_have_passed_its_end():
    frames = parse_schedule("4x1s")
    recorder, published = Recorder(), []
    live = LiveFrames(frames, recorder, REGIONS, 60.0,
                      on_curves=lambda points, done: published.append(done))
    events = _coincidences(np.sort(np.random.default_rng(1).uniform(0, 4, 4000)))
    chunks = np.array_split(events, 13)
    for chunk in chunks[:7]:                    # up to about 2.15 s
        live.offer(chunk)
    _wait(lambda: live.done == 2)
    assert sorted(recorder.given) == [1, 2] and published == [1, 2]
    for chunk in chunks[7:]:
        live.offer(chunk)
    live.close(4.0)
    assert live.done == 4 and sorted(recorder.given) == [1, 2, 3, 4]
    t = events["t"] * 1e-12
    for f in frames:
        assert np.array_equal(recorder.given[f.number], events[(t >= f.start_s) & (t < f.stop_s)])
    points = live.points
    assert points.start_min == [0.0, 1.0, 2.0, 3.0] and points.duration_min == [1.0] * 4
    prompts = [np.count_nonzero(recorder.given[k]["delayed"] == 0) for k in range(1, 5)]
    assert points.mean_bq_ml["a"] == prompts                       # the first voxel
    assert points.mean_bq_ml["b"] == [1.5 * n for n in prompts]    # both voxels
    assert live.dropped_events == 0


def test_a_full_queue_leaves_the_frame_out_and_counts_what_it_dropped(tmp_path):
    frames = parse_schedule("3x1s")
    recorder = Recorder()
    live = LiveFrames(frames, recorder, REGIONS, 1.0, max_pending_events=1500)
    events = _coincidences(np.linspace(0.0, 2.9, 3000))
    t = events["t"] * 1e-12
    live.offer(events[t < 1.0])                 # about 1034: taken, held for frame 1
    live.offer(events[(t >= 1.0) & (t < 2.0)])  # would hold more than 1500: dropped
    live.offer(events[t >= 2.0])                # dropped too
    live.close(3.0)                             # the run reached its end: every frame is due
    assert live.dropped_events == np.count_nonzero(t >= 1.0)
    assert live.done == 3 and sorted(recorder.given) == [1]  # frames 2 and 3 lost events
    assert live.points.start_min == [0.0]
    assert live.write(tmp_path / "live_tacs.csv").read_text().count("\n") == 1 + 2


def test_a_run_stopped_early_finishes_only_the_frames_its_data_reached():
    frames = parse_schedule("4x1s")
    recorder = Recorder()
    live = LiveFrames(frames, recorder, REGIONS, 1.0)
    live.offer(_coincidences(np.linspace(0.0, 2.5, 500)))
    live.close(None)
    assert sorted(recorder.given) == [1, 2] and live.done == 2
