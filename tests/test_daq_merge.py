"""Time merge of several boards: ordered output, a quiet board does not stall, late events are
counted."""

from __future__ import annotations

import numpy as np

from daq.pipeline.process.merge import TimeMerger
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


def _stable_time_order(events: np.ndarray) -> np.ndarray:
    """The merge's order by definition: by t, then crystal, then arrival (a stable sort)."""
    return events[np.lexsort((events["crystal"], events["t"]))]


def test_the_merge_is_a_stable_time_sort_of_what_arrived() -> None:
    """Many equal times, chunks of every size, boards arriving in random order, releases at
    random moments: every release is in time order, ties by crystal then by arrival, and all
    of them together are every event once."""
    rng = np.random.default_rng(7)
    n_boards = 5
    boards = []
    for b in range(n_boards):
        a = np.zeros(3000, RAW_DTYPE)
        a["t"] = np.sort(rng.integers(0, 4000, a.size))  # about one time in two repeats
        a["crystal"] = rng.integers(0, 8, a.size) + 8 * (b % 3)  # boards share crystal ids
        a["adc"] = np.arange(a.size) + 10000 * b  # tells every event apart
        boards.append(a)
    cuts = [np.sort(rng.choice(np.arange(1, 3000), 40, replace=False)) for _ in boards]
    chunks = [list(np.split(a, c)) for a, c in zip(boards, cuts, strict=True)]
    arrival = np.zeros(10000 * n_boards, np.int64)  # adc -> rank of arrival
    m = TimeMerger(n_boards)
    out, rank = [], 0
    while any(chunks):
        b = int(rng.choice([k for k in range(n_boards) if chunks[k]]))
        part = chunks[b].pop(0)
        arrival[part["adc"]] = np.arange(rank, rank + part.size)
        rank += part.size
        m.push(part)
        if part.size:
            m.advance(b, int(part["t"][-1]))
        if rng.random() < 0.3:
            out.append(m.pop_ready())
    out.append(m.flush())
    for r in out:
        key = np.lexsort((arrival[r["adc"]], r["crystal"], r["t"]))
        assert np.array_equal(key, np.arange(r.size))
    merged = np.concatenate(out)
    assert m.late_events == 0 and m.released_events == merged.size == 5 * 3000
    assert np.all(np.diff(merged["t"]) >= 0)
    assert np.array_equal(np.sort(merged["adc"]), np.sort(np.concatenate(boards)["adc"]))


def test_arrival_order_breaks_ties_and_far_from_ordered_input_still_merges() -> None:
    """Ties in (t, crystal) keep the order in which chunks were pushed; more overlapping
    chunks than the one-pass merge takes (MAX_PILES) go to the general sort, same result."""
    from daq.pipeline.process.merge import MAX_PILES

    rng = np.random.default_rng(8)
    parts = []
    for k in range(MAX_PILES + 5):  # each chunk overlaps every other one: one pile each
        a = np.zeros(200, RAW_DTYPE)
        a["t"] = np.sort(rng.integers(0, 300, a.size))
        a["crystal"] = rng.integers(0, 3, a.size)
        a["adc"] = np.arange(a.size) + 1000 * k
        parts.append(a)
    for count in (3, len(parts)):
        m = TimeMerger(1)
        for p in parts[:count]:
            m.push(p)
        merged = m.flush()
        assert np.array_equal(merged, _stable_time_order(np.concatenate(parts[:count])))


def test_a_chunk_of_several_boards_out_of_order_is_sorted_on_arrival() -> None:
    rng = np.random.default_rng(9)
    a = _board(rng.integers(0, 10**6, 1000), 1)
    b = _board(rng.integers(0, 10**6, 1000), 2)
    m = TimeMerger(2)
    m.push(np.concatenate([a, b]))  # one link carrying two boards: not in time order
    merged = m.flush()
    assert np.array_equal(merged, _stable_time_order(np.concatenate([a, b])))


def test_release_hands_out_work_buffers_and_counts_late_events() -> None:
    """``release`` (the processor's path) gives the same events as ``pop_ready``, in buffers
    reused by the next release; a late event is counted, not released."""
    m = TimeMerger(2)
    m.push(_board(np.arange(0, 100, 10), 0))
    m.push(_board(np.arange(5, 100, 10), 1))
    m.advance(0, 90)
    m.advance(1, 95)
    t, crystal, adc = m.release()
    assert t.tolist() == sorted(list(range(0, 100, 10)) + list(range(5, 90, 10)))
    assert crystal.size == adc.size == t.size
    m.push(_board(np.array([3, 96]), 1))  # 3 is older than what was released
    m.advance(1, 200)
    m.advance(0, 200)
    t2, _, _ = m.release()
    assert t2.tolist() == [95, 96] and m.late_events == 1


def test_each_boards_chunks_stay_on_its_own_pile_when_boards_run_at_different_rates() -> None:
    """A board's chunk that happens to continue another board's chunk, in the store and in time,
    is not joined to it: every board keeps one pile, and the held events merge in one pass
    (without the general sort) however long the merge waited."""
    from daq.pipeline.process.merge import MAX_PILES, _merge_ranges

    rng = np.random.default_rng(3)
    sizes = [200_000, 180_000, 160_000, 120_000]  # a slower board's messages span more time
    boards = [_board(rng.integers(0, 10**9, n), b) for b, n in enumerate(sizes)]
    m = TimeMerger(len(boards))
    for start in range(0, max(b.size for b in boards), 2000):  # messages of 2000 events
        for events in boards:
            m.push(events[start:start + 2000])
    chunks = m._chunks
    assert chunks.shape[0] > MAX_PILES
    out = tuple(np.empty(m.pending_events, dt) for dt in (np.int64, np.int32, np.uint16))
    assert _merge_ranges(*m._store, chunks[:, 0].copy(), chunks[:, 1].copy(), *out)
    assert np.array_equal(out[0], np.sort(np.concatenate(boards)["t"]))
