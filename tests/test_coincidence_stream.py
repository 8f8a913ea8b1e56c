"""coincidence.Sorter fed chunk by chunk gives exactly coincidence.sort on the concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coincidence
from hw import COINC_DTYPE, SINGLE_DTYPE, UserError, load_scanner

SCANNER = load_scanner("bedside-brain")
W, D = 1000, 2500


def _stream(rng: np.random.Generator, n: int, mean_gap_ps: float) -> np.ndarray:
    """Time-ordered singles with ties, dense enough for multiples and delayed partners."""
    s = np.zeros(n, SINGLE_DTYPE)
    gaps = rng.exponential(mean_gap_ps, n).astype(np.int64)
    gaps[rng.random(n) < 0.05] = 0  # ties in t
    s["t"] = np.cumsum(gaps)
    s["crystal"] = rng.integers(0, SCANNER.n_crystals, n)
    s["energy"] = rng.choice(np.array([300.0, 450.0, 480.0, 511.0, 540.0], np.float32), n)
    order = np.lexsort((s["crystal"], s["t"]))
    return s[order]


def _chunked(sorter: coincidence.Sorter, singles: np.ndarray, cuts: list[int],
             shuffle: np.random.Generator | None = None) -> np.ndarray:
    parts = []
    for a, b in zip([0, *cuts], [*cuts, singles.size], strict=True):
        chunk = singles[a:b]
        if shuffle is not None:  # disorder inside a chunk is allowed
            chunk = chunk[shuffle.permutation(chunk.size)]
        parts.append(sorter.feed(chunk))
    parts.append(sorter.flush())
    out = np.concatenate(parts)
    assert out.dtype == COINC_DTYPE
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400),
       n_cuts=st.integers(0, 30), policy=st.sampled_from(coincidence.POLICIES),
       mode=st.sampled_from(coincidence.MODES), delay=st.sampled_from([None, D, 40 * W]),
       mean_gap=st.sampled_from([50.0, 300.0, 1500.0]), shuffle=st.booleans())
def test_any_chunking_gives_the_same_coincidences(seed, n, n_cuts, policy, mode, delay, mean_gap,
                                                  shuffle):
    rng = np.random.default_rng(seed)
    singles = _stream(rng, n, mean_gap)
    kw = dict(scanner=SCANNER, window_ps=W, energy_window_kev=(435.0, 585.0), policy=policy,
              delay_ps=delay, min_sector_difference=2, mode=mode)
    whole = coincidence.sort(singles, **kw)
    cuts = sorted(rng.integers(0, n + 1, n_cuts).tolist())  # empty chunks included
    # shuffling inside chunks keeps ties that straddle a cut apart, as a board merge would
    chunked = _chunked(coincidence.Sorter(**kw), singles, cuts, rng if shuffle else None)
    assert chunked.tolist() == whole.tolist()


def test_big_chunks_are_sorted_in_blocks_with_the_same_result():
    rng = np.random.default_rng(7)
    singles = _stream(rng, 300_000, 400.0)
    kw = dict(scanner=SCANNER, window_ps=W, delay_ps=D, min_sector_difference=2)
    whole = coincidence.sort(singles, **kw)
    shuffled = coincidence.sort(singles[rng.permutation(singles.size)], **kw)  # unordered path
    assert np.array_equal(shuffled, whole)
    cuts = sorted(rng.integers(0, singles.size, 5).tolist())
    assert np.array_equal(_chunked(coincidence.Sorter(**kw), singles, cuts), whole)
    assert whole.size > 10_000 and whole["delayed"].sum() > 1000


def test_ties_across_a_chunk_seam_are_put_in_crystal_order():
    s = np.zeros(3, SINGLE_DTYPE)
    s[0], s[1], s[2] = (100, 128, 511.0), (100, 64, 511.0), (100, 0, 511.0)
    kw = dict(scanner=SCANNER, window_ps=W, min_sector_difference=2)
    sorter = coincidence.Sorter(**kw)
    out = np.concatenate([sorter.feed(s[:1]), sorter.feed(s[1:]), sorter.flush()])
    assert out.tolist() == coincidence.sort(s, **kw).tolist()
    assert [(a, b) for a, b in out[["crystal_a", "crystal_b"]].tolist()] == [(0, 64), (0, 128),
                                                                             (64, 128)]


def test_a_late_single_is_refused_and_the_stream_goes_on():
    rng = np.random.default_rng(3)
    singles = _stream(rng, 2000, 300.0)
    kw = dict(scanner=SCANNER, window_ps=W, delay_ps=D, min_sector_difference=2)
    sorter = coincidence.Sorter(**kw)
    first = sorter.feed(singles[:1000])
    late = singles[500:501].copy()
    late["energy"] = 511.0
    with pytest.raises(UserError, match=r"a single at t=\d+ ps comes after singles up to t=\d+ ps"):
        sorter.feed(late)
    rest = np.concatenate([first, sorter.feed(singles[1000:]), sorter.flush()])
    assert rest.tolist() == coincidence.sort(singles, **kw).tolist()
    # after flush, a new stream may start earlier
    again = np.concatenate([sorter.feed(singles), sorter.flush()])
    assert again.tolist() == rest.tolist()
