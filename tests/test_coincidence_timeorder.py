"""Time order of boards' streams: merge_sorted and sort_nearly_sorted against np.lexsort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coincidence
from hw import RAW_DTYPE, SINGLE_DTYPE, UserError


def _reference(events: np.ndarray) -> np.ndarray:
    return events[np.lexsort((events["crystal"], events["t"]))]  # stable


def _events(rng: np.random.Generator, n: int, dtype: np.dtype, t_max: int) -> np.ndarray:
    e = np.zeros(n, dtype)
    e["t"] = rng.integers(0, t_max + 1, n)
    e["crystal"] = rng.integers(0, 6, n)
    other = "energy" if "energy" in dtype.names else "adc"
    e[other] = np.arange(n)  # tells equal (t, crystal) events apart: checks stability
    return e


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), t_max=st.sampled_from([3, 50, 10**6]),
       dtype=st.sampled_from([SINGLE_DTYPE, RAW_DTYPE]))
def test_sort_nearly_sorted_sorts_anything_stably(seed, n, t_max, dtype):
    events = _events(np.random.default_rng(seed), n, dtype, t_max)
    got = coincidence.sort_nearly_sorted(events)
    assert got.dtype == dtype
    assert got.tolist() == _reference(events).tolist()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8), n=st.integers(0, 400),
       frame=st.integers(1, 64))
def test_interleaved_board_frames(seed, k, n, frame):
    """k boards, each time-ordered, their frames concatenated in arrival order."""
    rng = np.random.default_rng(seed)
    boards = [np.sort(_events(rng, n, SINGLE_DTYPE, 10**5), order=["t", "crystal"])
              for _ in range(k)]
    frames = [b[i: i + frame] for b in boards for i in range(0, b.size, frame)]
    arrival = sorted(range(len(frames)), key=lambda f: (frames[f]["t"][0], rng.random()))
    interleaved = np.concatenate([frames[f] for f in arrival]) if frames else boards[0][:0]
    want = _reference(np.concatenate(boards))
    assert coincidence.sort_nearly_sorted(interleaved)[["t", "crystal"]].tolist() == \
        want[["t", "crystal"]].tolist()
    assert coincidence.merge_sorted(boards).tolist() == want.tolist()


def test_merge_sorted_stays_correct_on_streams_out_of_order():
    rng = np.random.default_rng(1)
    streams = [_events(rng, 500, RAW_DTYPE, 1000) for _ in range(3)]
    assert coincidence.merge_sorted(streams).tolist() == \
        _reference(np.concatenate(streams)).tolist()


def test_bad_input():
    with pytest.raises(UserError, match="at least one stream"):
        coincidence.merge_sorted([])
    with pytest.raises(UserError, match="share one dtype"):
        coincidence.merge_sorted([np.zeros(2, SINGLE_DTYPE), np.zeros(2, RAW_DTYPE)])
    with pytest.raises(UserError, match="fields 't' and 'crystal'"):
        coincidence.sort_nearly_sorted(np.zeros(4))
