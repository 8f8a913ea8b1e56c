"""Time merge of several boards: ordered output, a quiet board does not stall, late events are
counted."""

from __future__ import annotations

import numpy as np

from daq.merge import TimeMerger
from hw.dtypes import RAW_DTYPE


def _board(times: np.ndarray, crystal: int) -> np.ndarray:
    a = np.zeros(times.size, RAW_DTYPE)
    a["t"], a["crystal"] = np.sort(times), crystal
    return a


def _merge_in_chunks(boards: list[np.ndarray], chunk: int) -> tuple[np.ndarray, TimeMerger]:
    """Chunks arrive board by board, as from one link per board; each advances its board; the
    merger releases after every round."""
    m = TimeMerger(len(boards))
    out = []
    for start in range(0, max(b.size for b in boards), chunk):
        for b, events in enumerate(boards):
            part = events[start:start + chunk]
            m.push(part)
            m.advance(b, int(part["t"][-1]))
        out.append(m.pop_ready())
    out.append(m.flush())
    return np.concatenate(out), m


def test_interleaved_boards_come_out_in_time_order() -> None:
    rng = np.random.default_rng(0)
    boards = [_board(rng.integers(0, 10**9, 5000), b) for b in range(4)]
    merged, m = _merge_in_chunks(boards, 500)
    assert merged.size == 20000 and m.late_events == 0
    assert np.all(np.diff(merged["t"]) >= 0)
    assert np.array_equal(np.sort(merged["t"]), np.sort(np.concatenate(boards)["t"]))


def test_an_idle_board_stalls_the_others_only_until_its_link_is_silent() -> None:
    m = TimeMerger(2, quiet_timeout_s=1.0)
    m.push(_board(np.arange(0, 1000, 10), 0))
    m.advance(0, 990)
    m.advance(1, 500)
    assert m.pop_ready()["t"].max() == 500  # board 1 has only reported up to 500 ps
    m.advance(0, 1000)
    assert m.pop_ready().size == 0  # board 1 is behind but its link is not silent: wait
    assert m.pop_ready(idle_boards=[1]).size == 49  # its link went silent: go on without it
    m.push(_board(np.array([5, 2000]), 1))  # board 1 wakes up with one stale event
    m.advance(1, 2000)
    m.advance(0, 3000)
    out = m.pop_ready()
    assert m.late_events == 1 and out["t"].tolist() == [2000]


def test_a_board_never_seen_holds_the_others_only_for_the_timeout_in_data_time() -> None:
    m = TimeMerger(2, quiet_timeout_s=1.0)
    m.push(_board(np.arange(0, 2 * 10**12, 10**9), 0))
    m.advance(0, 5 * 10**11)
    assert m.pop_ready().size == 0  # board 1 may still start
    m.advance(0, 2 * 10**12)
    assert m.pop_ready().size == 2000  # 1 s of data without board 1: it is not there


def test_counter_wrap_scale_times_merge_over_hours() -> None:
    """Times of several hours (beyond 2**32 coarse ticks) merge exactly."""
    rng = np.random.default_rng(3)
    hours = 3 * 3600 * 10**12
    boards = [_board(rng.integers(0, hours, 20000), b) for b in range(3)]
    merged, _ = _merge_in_chunks(boards, 1000)
    assert merged.size == 60000 and np.all(np.diff(merged["t"]) >= 0)
