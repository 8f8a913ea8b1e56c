"""Coincidence sorting throughput, one core, singles in memory and time-ordered.

Data: an emulated bedside-brain acquisition at ~20 Mcps of singles (brain phantom, 20 MBq F-18,
50 ms: ~1 M singles with phantom scatter, the crystals' Lu-176, pile-up, dead time and the
digitizer's 19.5 ps time quantum). Sorter: 4 ns window, the scanner's 435-585 keV energy window
and minimum sector difference, 100 ns delayed window. Benchmarks: ``coincidence.sort`` for every
policy with and without the delayed window (and multi-window takeAllGoods), the streaming
``Sorter`` fed 64 k-single chunks, a vectorised NumPy implementation of takeAllGoods with delays
(searchsorted-based; its output is checked identical to the sorter's), and the time-order kernels
against ``np.argsort``/``np.lexsort``/``np.sort`` on the boards' streams interleaved frame by
frame. ``extra_info["events_per_s"]``: singles per second of the median round.
Published software sorters for comparison (DOMAIN.md): EXPLORER ~2.5 M singles/s per thread
(120 M/s on 48 threads), PETsys ~15 M events/s.
Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_coincidence.py --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
from rates import record

import coincidence
import emulator
from coincidence.baseline import numpy_take_all_goods

ACTIVITY_MBQ, DURATION_S = 20.0, 0.05
DELAY_PS = 100_000
WINDOW_PS = 4_000
FRAME = 256  # events per board frame in the interleaved stream


@pytest.fixture(scope="module")
def acquisition(brain):
    sim = emulator.simulate(brain, "brain", "F-18", ACTIVITY_MBQ, DURATION_S, seed=7)
    singles = sim.singles
    assert np.all(np.diff(singles["t"]) >= 0)
    rate = singles.size / DURATION_S
    assert 15e6 < rate < 30e6, rate
    return singles, sim.board


def _settings(brain, **kw):
    return dict(scanner=brain, window_ps=WINDOW_PS, **kw)


@pytest.mark.parametrize("delay_ps", [DELAY_PS, None], ids=["delayed", "prompts-only"])
@pytest.mark.parametrize("policy", coincidence.POLICIES)
def test_bench_sort(benchmark, brain, acquisition, policy, delay_ps):
    singles, _ = acquisition
    kw = _settings(brain, policy=policy, delay_ps=delay_ps)
    coincidence.sort(singles[:1000], **kw)  # compiled before timing
    out = benchmark(coincidence.sort, singles, **kw)
    assert out.size > 0.01 * singles.size
    assert (out["delayed"].sum() > 0) == (delay_ps is not None)
    record(benchmark, singles.size)


def test_bench_sort_multi_window(benchmark, brain, acquisition):
    singles, _ = acquisition
    kw = _settings(brain, delay_ps=DELAY_PS, mode="multi-window")
    coincidence.sort(singles[:1000], **kw)
    out = benchmark(coincidence.sort, singles, **kw)
    assert out.size > 0.01 * singles.size
    record(benchmark, singles.size)


def test_bench_streaming_sorter(benchmark, brain, acquisition):
    """As the DAQ runs it: 64 k-single chunks fed one after the other."""
    singles, _ = acquisition
    kw = _settings(brain, delay_ps=DELAY_PS)
    chunks = [singles[k: k + 65536] for k in range(0, singles.size, 65536)]
    coincidence.sort(singles[:1000], **kw)

    def stream():
        sorter = coincidence.Sorter(**kw)
        return [sorter.feed(c) for c in chunks] + [sorter.flush()]

    parts = benchmark(stream)
    assert np.array_equal(np.concatenate(parts), coincidence.sort(singles, **kw))
    record(benchmark, singles.size)


def test_bench_numpy_baseline_take_all_goods_with_delays(benchmark, brain, acquisition):
    singles, _ = acquisition
    acq = brain.acquisition
    args = (brain.crystal_module, brain.n_modules, WINDOW_PS, acq["energy_window_kev"],
            DELAY_PS, acq["min_sector_difference"])
    out = benchmark(numpy_take_all_goods, singles, *args)
    assert np.array_equal(out, coincidence.sort(singles, **_settings(brain, delay_ps=DELAY_PS)))
    record(benchmark, singles.size)


@pytest.fixture(scope="module")
def interleaved(acquisition):
    """The boards' streams cut in frames and concatenated in the frames' arrival order."""
    singles, board = acquisition
    streams = [singles[board == b] for b in range(int(board.max()) + 1)]
    frames = [s[k: k + FRAME] for s in streams for k in range(0, s.size, FRAME)]
    frames.sort(key=lambda f: int(f["t"][-1]))  # a frame is sent once its last event is in
    return streams, np.concatenate(frames)


def test_bench_sort_nearly_sorted(benchmark, interleaved):
    _, mixed = interleaved
    coincidence.sort_nearly_sorted(mixed[:1000])
    out = benchmark(coincidence.sort_nearly_sorted, mixed)
    assert np.array_equal(out, mixed[np.lexsort((mixed["crystal"], mixed["t"]))])
    record(benchmark, mixed.size)


def test_bench_merge_sorted(benchmark, interleaved):
    streams, mixed = interleaved
    coincidence.merge_sorted([s[:100] for s in streams])
    out = benchmark(coincidence.merge_sorted, streams)
    assert np.array_equal(out["t"], np.sort(mixed["t"]))
    record(benchmark, mixed.size)


@pytest.mark.parametrize("how", ["argsort-stable", "argsort-quick", "lexsort", "sort-keys-only"])
def test_bench_numpy_time_order(benchmark, interleaved, how):
    """NumPy on the same interleaved stream: a stable argsort of t (ties not ordered by crystal),
    the default argsort, the (t, crystal) lexsort, and np.sort of the bare times."""
    _, mixed = interleaved
    ways = {
        "argsort-stable": lambda m: m[np.argsort(m["t"], kind="stable")],
        "argsort-quick": lambda m: m[np.argsort(m["t"])],
        "lexsort": lambda m: m[np.lexsort((m["crystal"], m["t"]))],
        "sort-keys-only": lambda m: np.sort(m["t"]),
    }
    out = benchmark(ways[how], mixed)
    assert out.size == mixed.size
    record(benchmark, mixed.size)
