"""The sorter on several threads gives, byte for byte, what it gives on one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coincidence
from coincidence import parallel
from hw import SINGLE_DTYPE, UserError, load_scanner
from infra.pool import Workers

SCANNER = load_scanner("bedside-brain")
W, D = 1000, 2500


@pytest.fixture(scope="module")
def workers():
    w = Workers(3, "test-sort")
    yield w
    w.close()


@pytest.fixture(scope="module")
def small_pieces():
    """Slices of a few singles, so that short streams have many slice edges."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel, "PIECE", 5)
        yield


def _stream(rng: np.random.Generator, n: int, mean_gap_ps: float) -> np.ndarray:
    """Time-ordered singles with ties, multiples and delayed partners across slice edges."""
    s = np.zeros(n, SINGLE_DTYPE)
    gaps = rng.exponential(mean_gap_ps, n).astype(np.int64)
    gaps[rng.random(n) < 0.05] = 0
    s["t"] = np.cumsum(gaps)
    s["crystal"] = rng.integers(0, SCANNER.n_crystals, n)
    s["energy"] = rng.choice(np.array([300.0, 450.0, 480.0, 511.0, 540.0], np.float32), n)
    return s[np.lexsort((s["crystal"], s["t"]))]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), n_cuts=st.integers(0, 6),
       policy=st.sampled_from(coincidence.POLICIES), mode=st.sampled_from(coincidence.MODES),
       delay=st.sampled_from([None, D, 40 * W]), mean_gap=st.sampled_from([50.0, 400.0, 1500.0]))
def test_threads_give_the_single_thread_result(small_pieces, workers, seed, n, n_cuts, policy,
                                               mode, delay, mean_gap):
    rng = np.random.default_rng(seed)
    singles = _stream(rng, n, mean_gap)
    kw = dict(scanner=SCANNER, window_ps=W, energy_window_kev=(435.0, 585.0), policy=policy,
              delay_ps=delay, min_sector_difference=2, mode=mode)
    one = coincidence.sort(singles, **kw)
    assert coincidence.sort(singles, threads=3, **kw).tobytes() == one.tobytes()
    sorter = coincidence.Sorter(workers=workers, **kw)
    cuts = sorted(rng.integers(0, n + 1, n_cuts).tolist())
    parts = [sorter.feed(singles[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    chunked = np.concatenate([*parts, sorter.flush()])
    assert chunked.tobytes() == one.tobytes()


def test_a_dense_stream_without_sync_points_is_one_slice(small_pieces):
    """Singles closer than a window all along: no single may start a slice, and the one slice
    gives the single-thread result."""
    s = np.zeros(40, SINGLE_DTYPE)
    s["t"] = np.arange(40) * (W // 4)
    s["crystal"] = np.arange(40) * 301 % SCANNER.n_crystals
    s["energy"] = 511.0
    cuts = parallel.sync_points(np.append(s["t"], [2**62] * 3), 0, 40, W, False, 8)
    assert cuts.tolist() == [0]
    kw = dict(scanner=SCANNER, window_ps=W, delay_ps=D, min_sector_difference=1)
    assert coincidence.sort(s, threads=2, **kw).tobytes() == coincidence.sort(s, **kw).tobytes()


def test_out_of_order_and_bad_input_take_the_single_thread_way(small_pieces, workers):
    rng = np.random.default_rng(3)
    singles = _stream(rng, 200, 300.0)
    kw = dict(scanner=SCANNER, window_ps=W, delay_ps=D, min_sector_difference=2)
    shuffled = singles[rng.permutation(singles.size)]
    assert coincidence.sort(shuffled, threads=3, **kw).tobytes() == \
        coincidence.sort(singles, **kw).tobytes()
    bad = singles.copy()
    bad["crystal"][150] = SCANNER.n_crystals
    bad["energy"][150] = 511.0
    with pytest.raises(UserError, match="crystal id"):
        coincidence.Sorter(workers=workers, **kw).feed(bad)


def test_an_emulated_scan_sorts_the_same_on_every_thread_count():
    """About 20 Mcps of singles (the NU 2 phantom at 40 MBq), real slice sizes."""
    import emulator

    sim = emulator.simulate(SCANNER, "nu2-scatter", "F-18", 40.0, 0.02, seed=5)
    kw = dict(scanner=SCANNER, delay_ps=SCANNER.acquisition["delay_ps"])
    one = coincidence.sort(sim.singles, **kw)
    assert sim.singles.size > 4 * parallel.PIECE and one.size > 3000
    for threads in (2, 4):
        assert coincidence.sort(sim.singles, threads=threads, **kw).tobytes() == one.tobytes()


def _windowed_feed(sorter: coincidence.Sorter, chunk: np.ndarray, n_pieces: int):
    """:meth:`coincidence.Sorter.feed_windowed` of ``chunk`` cut in ``n_pieces`` pieces, each
    piece's energy window written by :func:`parallel.copy_in_window`."""
    lo, hi = sorter.settings.energy_window_kev
    bounds = np.linspace(0, chunk.size, n_pieces + 1).astype(int)
    pieces = [chunk[a:b] for a, b in itertools.pairwise(bounds)]
    counts = [parallel.count_in_window(p["energy"], lo, hi) for p in pieces]

    def write(k, columns, start):
        p = pieces[k]
        return parallel.copy_in_window(np.ascontiguousarray(p["t"]),
                                       np.ascontiguousarray(p["crystal"]),
                                       np.ascontiguousarray(p["energy"]), lo, hi,
                                       SCANNER.n_crystals, *columns, start)

    return sorter.feed_windowed(counts, write)


@pytest.mark.parametrize("threads", [1, 3])
def test_a_windowed_feed_gives_what_feed_gives(threads):
    """The caller's energy window written in pieces straight into the sorter (the DAQ's
    calibration pass) gives the coincidences of :meth:`Sorter.feed`, chunk by chunk; a chunk
    out of time order is refused whole (None) and then fed the general way."""
    s = _stream(np.random.default_rng(11), 20_000, 3000.0)
    kw = {"scanner": SCANNER, "window_ps": W, "delay_ps": D}
    want = coincidence.sort(s, **kw)
    workers = Workers(threads, "test-windowed")
    try:
        sorter = coincidence.Sorter(workers=workers, **kw)
        parts = [_windowed_feed(sorter, s[a:a + 5000], 4) for a in range(0, s.size, 5000)]
        got = np.concatenate([*parts, sorter.flush()])
        assert got.tobytes() == want.tobytes() and want.size > 100
        sorter = coincidence.Sorter(workers=workers, **kw)
        first = _windowed_feed(sorter, s[:5000], 2)
        shuffled = s[5000:10000][::-1].copy()
        assert _windowed_feed(sorter, shuffled, 2) is None  # out of order: nothing taken
        rest = [sorter.feed(np.sort(shuffled, order=["t", "crystal"], kind="stable")),
                sorter.feed(s[10000:]), sorter.flush()]
        assert np.concatenate([first, *rest]).tobytes() == want.tobytes()
    finally:
        workers.close()
