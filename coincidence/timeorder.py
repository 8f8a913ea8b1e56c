"""Time order for nearly time-ordered events: several boards' streams, merged.

*Time order* here is the sorter's canonical order: by ``t``, ties broken by ``crystal``, then by
position in the input (stable). The kernel detects the input's ascending runs (a board's frame, a
whole board's stream) and merges them with a small heap that only ever holds the runs that overlap
in time: a run is opened when the heap's smallest head is later than the earliest start of the runs
not yet opened (a suffix minimum). On k interleaved streams this costs O(n log k), and O(n) on input
that is already in order; any input is still sorted correctly, in O(n log n) at worst.

Works on any structured array with integer fields ``t`` and ``crystal`` (``hw.RAW_DTYPE``,
``hw.SINGLE_DTYPE``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from hw.errors import UserError

_LATEST = np.iinfo(np.int64).max


@numba.njit(nogil=True, cache=True, inline="always")
def _before(t1: int, c1: int, r1: int, t2: int, c2: int, r2: int) -> bool:
    """Lexicographic (t, crystal, run) order."""
    if t1 != t2:
        return t1 < t2
    if c1 != c2:
        return c1 < c2
    return r1 < r2


@numba.njit(nogil=True, cache=True)
def _sift_down(ht, hc, hr, size, k):
    while True:
        child = 2 * k + 1
        if child >= size:
            return
        if child + 1 < size and _before(ht[child + 1], hc[child + 1], hr[child + 1],
                                        ht[child], hc[child], hr[child]):
            child += 1
        if not _before(ht[child], hc[child], hr[child], ht[k], hc[k], hr[k]):
            return
        ht[k], ht[child] = ht[child], ht[k]
        hc[k], hc[child] = hc[child], hc[k]
        hr[k], hr[child] = hr[child], hr[k]
        k = child


@numba.njit(nogil=True, cache=True)
def _sift_up(ht, hc, hr, k):
    while k > 0:
        parent = (k - 1) // 2
        if not _before(ht[k], hc[k], hr[k], ht[parent], hc[parent], hr[parent]):
            return
        ht[k], ht[parent] = ht[parent], ht[k]
        hc[k], hc[parent] = hc[parent], hc[k]
        hr[k], hr[parent] = hr[parent], hr[k]
        k = parent


@numba.njit(nogil=True, cache=True)
def in_time_order(t: np.ndarray) -> bool:
    """Whether ``t`` never decreases (a branch-free pass)."""
    disorder = False
    for i in range(1, t.size):
        disorder |= t[i] < t[i - 1]
    return not disorder


@numba.njit(nogil=True, cache=True)
def order(t: np.ndarray, crystal: np.ndarray) -> np.ndarray:
    """The permutation that puts (t, crystal) in time order (stable): a run-detecting k-way merge.

    Equal to ``np.lexsort((crystal, t))``.
    """
    n = t.size
    n_runs = 1 if n else 0
    for i in range(1, n):
        if t[i] < t[i - 1] or (t[i] == t[i - 1] and crystal[i] < crystal[i - 1]):
            n_runs += 1
    perm = np.empty(n, np.int64)
    if n_runs <= 1:
        for i in range(n):
            perm[i] = i
        return perm
    start = np.empty(n_runs + 1, np.int64)
    r = 0
    start[0] = 0
    for i in range(1, n):
        if t[i] < t[i - 1] or (t[i] == t[i - 1] and crystal[i] < crystal[i - 1]):
            r += 1
            start[r] = i
    start[n_runs] = n
    # earliest (t, crystal) among the runs r.. (each run's earliest event is its first)
    min_t = np.empty(n_runs, np.int64)
    min_c = np.empty(n_runs, np.int64)
    min_t[n_runs - 1] = t[start[n_runs - 1]]
    min_c[n_runs - 1] = crystal[start[n_runs - 1]]
    for r in range(n_runs - 2, -1, -1):
        s = start[r]
        if _before(t[s], crystal[s], 0, min_t[r + 1], min_c[r + 1], 1):
            min_t[r], min_c[r] = t[s], crystal[s]
        else:
            min_t[r], min_c[r] = min_t[r + 1], min_c[r + 1]
    head = start[:n_runs].copy()
    ht = np.empty(n_runs, np.int64)
    hc = np.empty(n_runs, np.int64)
    hr = np.empty(n_runs, np.int64)
    size = 0
    next_run = 0
    k = 0
    while k < n:
        # open runs until nothing unopened can come before the heap's smallest head
        while next_run < n_runs and (
            size == 0 or _before(min_t[next_run], min_c[next_run], n_runs, ht[0], hc[0], hr[0])
        ):
            s = start[next_run]
            ht[size], hc[size], hr[size] = t[s], crystal[s], next_run
            size += 1
            _sift_up(ht, hc, hr, size - 1)
            next_run += 1
        # emit from the smallest run while it stays before every other candidate
        r = hr[0]
        bound_t, bound_c, bound_r = _LATEST, _LATEST, n_runs
        for child in (1, 2):
            if child < size and _before(ht[child], hc[child], hr[child],
                                        bound_t, bound_c, bound_r):
                bound_t, bound_c, bound_r = ht[child], hc[child], hr[child]
        if next_run < n_runs and _before(min_t[next_run], min_c[next_run], n_runs,
                                         bound_t, bound_c, bound_r):
            bound_t, bound_c, bound_r = min_t[next_run], min_c[next_run], n_runs
        i, end = head[r], start[r + 1]
        perm[k] = i
        k += 1
        i += 1
        while i < end and _before(t[i], crystal[i], r, bound_t, bound_c, bound_r):
            perm[k] = i
            k += 1
            i += 1
        head[r] = i
        if i < end:
            ht[0], hc[0] = t[i], crystal[i]
        else:
            size -= 1
            ht[0], hc[0], hr[0] = ht[size], hc[size], hr[size]
        _sift_down(ht, hc, hr, size, 0)
    return perm


def _check(events: np.ndarray, what: str) -> None:
    names = events.dtype.names or ()
    if events.ndim != 1 or "t" not in names or "crystal" not in names:
        raise UserError(f"{what} must be a 1-D array of events with fields 't' and 'crystal' "
                        f"(hw.SINGLE_DTYPE or hw.RAW_DTYPE), got dtype {events.dtype}")


def sort_nearly_sorted(events: np.ndarray) -> np.ndarray:
    """A time-ordered copy of ``events`` (by t, then crystal, stable); fast when the input is
    made of long ascending runs, e.g. boards' frames interleaved as they arrived."""
    events = np.asarray(events)
    _check(events, "events")
    perm = order(events["t"], events["crystal"])
    return events[perm]


def merge_sorted(streams: Sequence[np.ndarray]) -> np.ndarray:
    """Merge several time-ordered streams (one per board) into one time-ordered array.

    Same result as :func:`sort_nearly_sorted` on their concatenation (streams that are not quite
    in order are still sorted correctly, just more slowly). All streams must share one dtype.
    """
    arrays = [np.asarray(s) for s in streams]
    if not arrays:
        raise UserError("merge_sorted needs at least one stream")
    for a in arrays:
        _check(a, "each stream")
        if a.dtype != arrays[0].dtype:
            raise UserError(f"streams must share one dtype, got {arrays[0].dtype} and {a.dtype}")
    return sort_nearly_sorted(np.concatenate(arrays))
