"""Time order for nearly time-ordered events: several boards' streams, interleaved or not.

*Time order* here is the sorter's canonical order: by ``t``, ties broken by ``crystal``, then by
position in the input (stable); the same as ``np.lexsort((crystal, t))``.

The kernel finds the input's runs of non-decreasing t (a board's frame, a whole board's stream),
deals them onto a few *piles*, each pile in order (a run goes onto the pile whose last time is
the latest one not after the run's first: a board's frames find their board's pile again),
merges the piles pairwise on (t, position), branch-free and from both ends at once, then puts
equal times in crystal order. Boards' streams interleaved frame by frame cost O(n log k) for k
piles (about the number of boards); only int32 positions are allocated. Input that needs more
than 32 piles (far from ordered) is left to ``np.lexsort``.

Works on any structured array with integer fields ``t`` and ``crystal`` (``hw.RAW_DTYPE``,
``hw.SINGLE_DTYPE``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from hw.dtypes import join, take
from infra.errors import UserError

MAX_PILES = 32


@numba.njit(nogil=True, cache=True, inline="always")
def deal_onto_pile(r, head, last_t, n_piles, first, last, tail, nxt):
    """Patience dealing of time-ordered runs: put run ``r`` (first time ``head``, last time
    ``last_t``) on the pile whose last time is the latest not after ``head`` (a pile is a chain
    ``first[p]``, ``nxt[...]``, ending at ``last[p]`` with time ``tail[p]``), or on a new pile.
    Returns the number of piles, -1 when a new one would exceed the arrays' size."""
    best = -1
    for p in range(n_piles):
        if tail[p] <= head and (best < 0 or tail[p] > tail[best]):
            best = p
    if best < 0:
        if n_piles == tail.size:
            return -1
        best = n_piles
        n_piles += 1
        first[best] = r
    else:
        nxt[last[best]] = r
    last[best] = r
    tail[best] = last_t
    return n_piles


@numba.njit(nogil=True, cache=True)
def in_time_order(t: np.ndarray) -> bool:
    """Whether ``t`` never decreases (a branch-free pass)."""
    disorder = False
    for i in range(1, t.size):
        disorder |= t[i] < t[i - 1]
    return not disorder


@numba.njit(nogil=True, cache=True, inline="always")
def _after(t1, i1, t2, i2):
    """(t, position) order."""
    return (t1 > t2) | ((t1 == t2) & (i1 > i2))


@numba.njit(nogil=True, cache=True)
def _merge(t, idx, a, m, b, out):
    """Merge the positions idx[a:m] and idx[m:b], each in (t[idx], idx) order, into out[a:b],
    branch-free and from both ends at once (two independent chains of loads)."""
    i, j, k = a, m, a  # front: the earliest left
    i2, j2, k2 = m - 1, b - 1, b - 1  # back: the latest left
    while i <= i2 and j <= j2:
        xi, xj = idx[i], idx[j]
        ti, tj = t[xi], t[xj]
        take_j = _after(ti, xi, tj, xj)
        out[k] = xj if take_j else xi
        j += take_j
        i += 1 - take_j
        k += 1
        xi, xj = idx[i2], idx[j2]
        ti, tj = t[xi], t[xj]
        take_i = _after(ti, xi, tj, xj)
        out[k2] = xi if take_i else xj
        i2 -= take_i
        j2 -= 1 - take_i
        k2 -= 1
    # one side is used up: the other's rest fills the middle
    lo, hi = (i, i2) if i <= i2 else (j, j2)
    out[k: k2 + 1] = idx[lo: hi + 1]


@numba.njit(nogil=True, cache=True)
def _order(t, crystal, perm):
    """Fill ``perm`` (int32 or int64, size n) with the time-order permutation; False when the
    input needs more than MAX_PILES piles (then the caller uses a general sort)."""
    n = t.size
    n_runs = 1
    for i in range(1, n):
        n_runs += t[i] < t[i - 1]
    # deal the runs (by t) onto piles: the one with the latest last time not after the run's
    # first; a pile is a chain of runs (first_run, next_run)
    run_start = np.zeros(n_runs + 1, np.int64)
    next_run = np.full(n_runs, -1, np.int64)
    first_run = np.empty(MAX_PILES, np.int64)
    last_run = np.empty(MAX_PILES, np.int64)
    tail = np.empty(MAX_PILES, np.int64)
    n_piles = 0
    r = 0
    run_start[n_runs] = n
    for i in range(1, n + 1):
        if i == n or t[i] < t[i - 1]:
            n_piles = deal_onto_pile(r, t[run_start[r]], t[i - 1], n_piles, first_run,
                                     last_run, tail, next_run)
            if n_piles < 0:
                return False
            if i < n:
                r += 1
                run_start[r] = i
    # the piles' positions one pile after the other, then pairwise merges until one is left
    bounds = np.zeros(n_piles + 1, np.int64)
    k = 0
    for p in range(n_piles):
        r = first_run[p]
        while r >= 0:
            for i in range(run_start[r], run_start[r + 1]):
                perm[k] = i
                k += 1
            r = next_run[r]
        bounds[p + 1] = k
    src, dst = perm, np.empty_like(perm)
    while bounds.size > 2:
        m = bounds.size - 1
        merged = np.empty((m + 1) // 2 + 1, np.int64)
        for q in range(0, m, 2):
            a = bounds[q]
            if q + 1 < m:
                _merge(t, src, a, bounds[q + 1], bounds[q + 2], dst)
            else:
                dst[a: bounds[m]] = src[a: bounds[m]]
            merged[q // 2] = a
        merged[-1] = n
        bounds = merged
        src, dst = dst, src
    if src is not perm:
        perm[:] = src
    # equal times: by crystal, stably (ties are few; perm is nearly in order, reads stay local)
    for k in range(1, n):
        a, b = perm[k - 1], perm[k]
        if t[b] == t[a] and crystal[b] < crystal[a]:
            m = k
            while m > 0 and t[perm[m - 1]] == t[b] and crystal[perm[m - 1]] > crystal[b]:
                perm[m] = perm[m - 1]
                m -= 1
            perm[m] = b
    return True


def order(t: np.ndarray, crystal: np.ndarray) -> np.ndarray:
    """The permutation that puts events (t, crystal) in time order: ``np.lexsort((crystal, t))``,
    fast on nearly ordered input (int32 indices below 2**31 events)."""
    perm = np.empty(t.size, np.int32 if t.size < 2**31 else np.int64)
    return perm if _order(t, crystal, perm) else np.lexsort((crystal, t))


def _check(events: np.ndarray, what: str) -> None:
    names = events.dtype.names or ()
    if events.ndim != 1 or "t" not in names or "crystal" not in names:
        raise UserError(f"{what} must be a 1-D array of events with fields 't' and 'crystal' "
                        f"(hw.SINGLE_DTYPE or hw.RAW_DTYPE), got dtype {events.dtype}")


def sort_nearly_sorted(events: np.ndarray) -> np.ndarray:
    """A time-ordered copy of ``events`` (by t, then crystal, stable); fast when the input is
    made of a few interleaved ordered streams, e.g. boards' frames as they arrived."""
    events = np.asarray(events)
    _check(events, "events")
    return take(events, order(events["t"], events["crystal"]))


def merge_sorted(streams: Sequence[np.ndarray]) -> np.ndarray:
    """Merge several time-ordered streams (one per board) into one time-ordered array.

    Same result as :func:`sort_nearly_sorted` on their concatenation (streams that are not quite
    in order are still sorted correctly). All streams must share one dtype.
    """
    arrays = [np.asarray(s) for s in streams]
    if not arrays:
        raise UserError("merge_sorted needs at least one stream")
    for a in arrays:
        _check(a, "each stream")
        if a.dtype != arrays[0].dtype:
            raise UserError(f"streams must share one dtype, got {arrays[0].dtype} and {a.dtype}")
    return sort_nearly_sorted(join(arrays, arrays[0].dtype))
