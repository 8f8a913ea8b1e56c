"""Time merge of several digitizer boards into one time-ordered stream, with a watermark.

Each board sends its events in its own time order, and a STATUS heartbeat with its clock counter at
least every few ms. The merger holds events until every live board has reported a time (its
*watermark*: the latest event or heartbeat time) at or beyond them, then releases them in time
order: by t, then crystal, then arrival (the order of ``sort_nearly_sorted`` on everything pushed).

A board stops holding the others back when it is *quiet*: its link has delivered no bytes at all
for ``quiet_timeout_s`` (3 s by default; the receivers know: their reads come back empty), or it
has never been seen while the other boards have sent ``quiet_timeout_s`` of data time. A link that
is merely behind (bytes waiting in its socket while the DAQ works through a backlog) is not quiet,
so a busy DAQ never mistakes a slow board for a dead one. If a quiet board later sends events older
than what was already released, those events are *late*: they are counted (``late_events``), kept
in the journal (which has every byte received) and recovered by ``petdaq replay``; they are never
silently dropped.

The held events wait in one *store* of reused memory (three columns: t, crystal, adc) into which
the decoders write directly (:meth:`TimeMerger.reserve`, :meth:`TimeMerger.commit`): no memory is
allocated per message. A release merges the ready part of every chunk in one pass that takes the
earliest pile head each time; a big release is cut into time slices (an equal time never split)
merged on the workers, each into its place: the same events in the same order for any number of
threads.
"""

from __future__ import annotations

from collections.abc import Collection

import numba
import numpy as np

from coincidence.timeorder import deal_onto_pile, order
from hw.dtypes import RAW_DTYPE
from infra.pool import SERIAL, Workers

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Events as three arrays: t (int64 ps), crystal (int32) and a value: adc (uint16), or energy
(float32 keV) where the singles are calibrated before the merge."""

SLICE_EVENTS = 1 << 16
"""Events per time slice of a parallel release (cache-sized work)."""
_MIN_STORE = 1 << 16
_SHRINK_ABOVE = 1 << 26
"""A store of more events than this (about 0.9 GB: a long backlog) shrinks when it is mostly
empty; a smaller one stays for the run (fresh memory costs a page fault and a zeroed page at
first write)."""


def new_columns(n: int, value: type = np.uint16, touch: bool = False) -> Columns:
    """Empty columns for ``n`` events (the third of dtype ``value``); ``touch``: every page
    written now, not on first use."""
    make = np.ones if touch else np.empty
    return make(n, np.int64), make(n, np.int32), make(n, value)


class TimeMerger:
    """Merge the events of ``n_boards`` boards into time order (see the module docstring);
    ``value``: the dtype of the events' third column (adc: uint16; energy in keV: float32)."""

    def __init__(self, n_boards: int, quiet_timeout_s: float = 3.0,
                 workers: Workers | None = None, value: type = np.uint16) -> None:
        self.n_boards = n_boards
        self.value = value
        self.workers = workers or SERIAL
        self.unseen_after_ps = quiet_timeout_s * 1e12
        self.watermark_ps = np.full(n_boards, -1, np.int64)
        self._store = new_columns(_MIN_STORE, value)
        self._end = 0
        """Where the next reservation starts in the store."""
        self._chunks = np.zeros((0, 4), np.int64)
        """Events held, as time-ordered store ranges in the order they came: rows of
        (start, stop, first t, last t)."""
        self._reserved: list[tuple[int, int]] = []
        self._out = new_columns(_MIN_STORE, value)
        self.released_until_ps = -1
        """The time of the latest event released."""
        self.released_through_ps = np.iinfo(np.int64).min
        """The latest safe time released through (:meth:`safe_time_ps`): an event before it
        that comes now is late for whoever counts before the merge."""
        self.late_events = 0
        self.released_events = 0

    def preallocate(self, n_events: int) -> None:
        """Memory for releases of ``n_events`` (and a store of twice that), touched now: a
        DAQ sizes it from its largest batch at the start of a run."""
        if self._store[0].size < 2 * n_events and self._end == 0:
            self._store = new_columns(2 * n_events, self.value, touch=True)
        if self._out[0].size < n_events:
            self._out = new_columns(n_events, self.value, touch=True)

    # ------------------------------------------------------------------ filling

    def reserve(self, sizes: list[int]) -> list[Columns]:
        """Room for ``sizes[i]`` events each, as column views into the store, to be filled (by a
        decoder, on any thread) and then handed over with :meth:`commit`."""
        total = sum(sizes)
        if self._end + total > self._store[0].size:
            self._compact(total)
        views, start = [], self._end
        self._reserved = []
        for n in sizes:
            views.append(tuple(col[start:start + n] for col in self._store))
            self._reserved.append((start, n))
            start += n
        self._end = start
        return views

    def commit(self, counts: list[int]) -> None:
        """The first ``counts[i]`` events of each reservation are events to merge (any boards,
        in any order: each part is taken as its runs in time order, e.g. the frames of several
        boards on one link; found by pieces on the workers)."""
        pieces, group = [], []
        for r, ((start, room), n) in enumerate(zip(self._reserved, counts, strict=True)):
            if not 0 <= n <= room:
                raise ValueError(f"commit of {n} events into a reservation of {room}")
            cuts = range(start, start + n, SLICE_EVENTS)
            pieces += [(a, min(a + SLICE_EVENTS, start + n)) for a in cuts]
            group += [r] * len(cuts)
        t = self._store[0]
        runs = self.workers.map(lambda k: _runs(t, *pieces[k]), len(pieces), "merge")
        self._chunks = np.concatenate([self._chunks, *_joined_runs(runs, group)])
        self._reserved = []

    def push(self, events: np.ndarray) -> None:
        """Add decoded events (RAW_DTYPE, any boards, any order within the chunk)."""
        if events.size:
            (t, crystal, adc), = self.reserve([events.size])
            t[:], crystal[:], adc[:] = events["t"], events["crystal"], events["adc"]
            self.commit([events.size])

    def _compact(self, more: int) -> None:
        """Move the held events to the front of the store (a bigger one if need be), leaving
        room for ``more``."""
        c = self._chunks
        live = int((c[:, 1] - c[:, 0]).sum())
        size = self._store[0].size
        if live + more > size // 2:
            size = max(2 * (live + more), 2 * size)  # doubled at least: few fresh stores
        elif size > _SHRINK_ABOVE and 8 * (live + more) < size:
            size = max(4 * (live + more), _MIN_STORE)  # half a shrink or a doubling away
        new = self._store if size == self._store[0].size else new_columns(size, self.value)
        self._end = _move_to_front(*self._store, *new, c)
        self._store = new

    # ------------------------------------------------------------------ releasing

    def advance(self, board: int, t_ps: int) -> None:
        """Record that ``board`` has reported everything up to ``t_ps`` (event or heartbeat)."""
        if t_ps > self.watermark_ps[board]:
            self.watermark_ps[board] = t_ps

    def safe_time_ps(self, idle_boards: Collection[int] = ()) -> int:
        """Events at or before this time can be released: the minimum watermark over the boards
        that are neither idle (their link silent, as the caller knows) nor unseen for long."""
        wm = self.watermark_ps
        live = wm >= 0
        if wm.max() < self.unseen_after_ps:
            live |= wm < 0  # early in the run a board not yet seen still holds the others
        live[list(idle_boards)] = False
        if not live.any():
            return int(wm.max())
        return int(wm[live].min())

    def pop_ready(self, idle_boards: Collection[int] = ()) -> np.ndarray:
        """Release the time-ordered events at or before the safe time (late ones counted apart)."""
        return as_raw(self.release(idle_boards))

    def flush(self) -> np.ndarray:
        """Release everything still held (end of run)."""
        return as_raw(self.release(final=True))

    def release(self, idle_boards: Collection[int] = (), final: bool = False) -> Columns:
        """:meth:`pop_ready` (or :meth:`flush` when ``final``) without a new array: the columns
        of the released events, in work buffers that the next release reuses (the processor's
        path: no new memory, hence no page faults, per release)."""
        until = np.iinfo(np.int64).max if final else self.safe_time_ps(idle_boards)
        self.released_through_ps = max(self.released_through_ps, until)
        begin, end, self._chunks, late = _ready(self._store[0], self._chunks, until,
                                                self.released_until_ps)
        self.late_events += late
        if self._chunks.shape[0] == 0:
            self._end = 0  # everything held was released: the store starts over
        out = self._merge(begin, end)
        if out[0].size:
            self.released_until_ps = max(self.released_until_ps, int(out[0][-1]))
            self.released_events += out[0].size
        return out

    def _merge(self, begin: np.ndarray, end: np.ndarray) -> Columns:
        """The store ranges [begin, end) merged into the work buffers (see the module
        docstring); by time slices on the workers when it is big."""
        n = int((end - begin).sum())
        if self._out[0].size < n:
            self._out = new_columns(max(n + n // 2, 2 * self._out[0].size), self.value)
        elif self._out[0].size > _SHRINK_ABOVE and n < self._out[0].size // 8:
            self._out = new_columns(max(n + n // 2, _MIN_STORE), self.value)
        out = tuple(col[:n] for col in self._out)
        if n == 0:
            return out
        n_slices = min(4 * self.workers.threads, n // SLICE_EVENTS)
        if self.workers.threads > 1 and n_slices > 1:
            done = self._merge_slices(begin, end, out, n_slices)
        else:
            done = _merge_ranges(*self._store, begin, end, *out)
        if not done:
            # more piles than the one-pass merge is for (far from time order): sort
            flat = tuple(np.concatenate([col[a:b] for a, b in zip(begin, end, strict=True)])
                         for col in self._store)
            _take(*flat, order(flat[0], flat[1]), *out)
        return out

    def _merge_slices(self, begin: np.ndarray, end: np.ndarray, out: Columns, n_slices: int
                      ) -> bool:
        """:func:`_merge_ranges` of each time slice into its place in ``out``; False when one
        of them needs the general sort."""
        t = self._store[0]
        sample = np.sort(_sample_times(t, begin, end, 64 * n_slices))
        bounds = np.unique(sample[(np.arange(1, n_slices) * sample.size) // n_slices])
        cuts = _split_ranges(t, begin, end, bounds)  # (ranges, slices + 1)
        at = np.concatenate(([0], np.cumsum((cuts[:, 1:] - cuts[:, :-1]).sum(axis=0))))

        def one(s: int) -> bool:
            a, b = int(at[s]), int(at[s + 1])
            return _merge_ranges(*self._store, np.ascontiguousarray(cuts[:, s]),
                                 np.ascontiguousarray(cuts[:, s + 1]),
                                 *(col[a:b] for col in out))

        return all(self.workers.map(one, cuts.shape[1] - 1, "merge"))

    def warm(self) -> None:
        """Compile (or load from numba's cache) the kernels a long run may need only late: the
        store's compaction and the general sort, for this merger's columns."""
        cols = new_columns(4, self.value)
        cols[0][:] = [3, 1, 2, 0]
        _move_to_front(*cols, *cols, np.array([[1, 3, 1, 2]], np.int64))
        _take(*cols, order(cols[0], cols[1]), *new_columns(4, self.value))

    @property
    def pending_events(self) -> int:
        """Events held back waiting for a slower board."""
        return int((self._chunks[:, 1] - self._chunks[:, 0]).sum())


def as_raw(columns: Columns) -> np.ndarray:
    """Released columns (:meth:`TimeMerger.release`) as a new RAW_DTYPE array."""
    out = np.empty(columns[0].size, RAW_DTYPE)
    out["t"], out["crystal"], out["adc"] = columns
    return out


MAX_PILES = 16
"""Piles (about one per board) the one-pass merge takes; more go to a general sort."""


@numba.njit(nogil=True, cache=True)
def _merge_ranges(t, crystal, adc, begin, end, out_t, out_crystal, out_adc):
    """Merge the time-ordered ranges ``[begin[r], end[r])`` of the events (t, crystal, adc)
    into ``out_*`` in time order (t, then crystal, then range and position). Returns False
    (nothing done) when they need more than MAX_PILES piles."""
    k = begin.size
    # deal the ranges, in order, onto piles: the one whose last time is the latest not after
    # the range's first (a board's next range finds its board's pile)
    nxt = np.full(k, -1, np.int64)
    first = np.empty(MAX_PILES, np.int64)
    last = np.empty(MAX_PILES, np.int64)
    tail = np.empty(MAX_PILES, np.int64)
    n_piles = 0
    for s in range(k):
        if end[s] == begin[s]:
            continue
        n_piles = deal_onto_pile(s, t[begin[s]], t[end[s] - 1], n_piles, first, last, tail, nxt)
        if n_piles < 0:
            return False
    # each pile's cursor: its range, position and next time; the earliest (time, range) goes
    # out first, so equal times keep the ranges' order
    seg = np.empty(n_piles, np.int64)
    pos = np.empty(n_piles, np.int64)
    stop = np.empty(n_piles, np.int64)
    key = np.empty(n_piles, np.int64)
    for p in range(n_piles):
        s = first[p]
        seg[p], pos[p], stop[p], key[p] = s, begin[s], end[s], t[begin[s]]
    never = np.iinfo(np.int64).max
    for o in range(out_t.size):
        # the earliest pile head (time, range), found without branches (the piles take turns
        # at random: a branch per pile would be mispredicted at almost every event)
        b, kb, sb = 0, key[0], seg[0]
        for p in range(1, n_piles):
            kp, sp = key[p], seg[p]
            better = (kp < kb) | ((kp == kb) & (sp < sb))
            b = p if better else b
            kb = kp if better else kb
            sb = sp if better else sb
        i = pos[b]
        out_t[o] = kb
        out_crystal[o] = crystal[i]
        out_adc[o] = adc[i]
        i += 1
        pos[b] = i
        if i < stop[b]:
            key[b] = t[i]
        else:
            s = nxt[sb]
            if s >= 0:
                seg[b], pos[b], stop[b], key[b] = s, begin[s], end[s], t[begin[s]]
            else:
                seg[b], key[b] = k, never
    _crystal_order_of_equal_times(out_t, out_crystal, out_adc)
    return True


@numba.njit(nogil=True, cache=True)
def _crystal_order_of_equal_times(t, crystal, adc):
    """Events of equal time put in crystal order, stably (ties are few: insertion)."""
    for q in range(1, t.size):
        if t[q] == t[q - 1] and crystal[q] < crystal[q - 1]:
            c, a = crystal[q], adc[q]
            m = q
            while m > 0 and t[m - 1] == t[q] and crystal[m - 1] > c:
                crystal[m] = crystal[m - 1]
                adc[m] = adc[m - 1]
                m -= 1
            crystal[m] = c
            adc[m] = a


@numba.njit(nogil=True, cache=True)
def _sample_times(t, begin, end, n_samples):
    """About ``n_samples`` times spread evenly over the events of the ranges (for slice
    bounds: each range contributes in proportion to its size)."""
    total = 0
    for r in range(begin.size):
        total += end[r] - begin[r]
    step = max(total // max(n_samples, 1), 1)
    out = np.empty(total // step + begin.size, np.int64)
    m = 0
    for r in range(begin.size):
        for i in range(begin[r], end[r], step):
            out[m] = t[i]
            m += 1
    return out[:m]


@numba.njit(nogil=True, cache=True)
def _split_ranges(t, begin, end, bounds):
    """For every range r and slice bound: where the range's events at or after the bound start.
    Row r is ``[begin[r], cut(bounds[0]), ..., end[r]]`` (a binary search only for the bounds
    that fall inside the range)."""
    out = np.empty((begin.size, bounds.size + 2), np.int64)
    for r in range(begin.size):
        a, b = begin[r], end[r]
        out[r, 0] = a
        lo = a
        for s in range(bounds.size):
            x = bounds[s]
            if x <= t[a]:
                lo = a
            elif x > t[b - 1]:
                lo = b
            else:
                lo = _first_after(t, lo, b, x - 1)
            out[r, s + 1] = lo
        out[r, bounds.size + 1] = b
    return out


@numba.njit(nogil=True, cache=True)
def _take(t, crystal, adc, perm, out_t, out_crystal, out_adc):
    """Columns in the order of ``perm``."""
    for o in range(perm.size):
        x = perm[o]
        out_t[o] = t[x]
        out_crystal[o] = crystal[x]
        out_adc[o] = adc[x]


@numba.njit(nogil=True, cache=True)
def _move_to_front(t, crystal, adc, to_t, to_crystal, to_adc, chunks):
    """Copy the ranges (``chunks`` rows, in store order) one after the other to the front of
    ``to_*`` (which may be the same arrays: each range moves towards the front), updating the
    rows; returns the end."""
    pos = 0
    for r in range(chunks.shape[0]):
        a, b = chunks[r, 0], chunks[r, 1]
        for i in range(a, b):
            to_t[pos + i - a] = t[i]
            to_crystal[pos + i - a] = crystal[i]
            to_adc[pos + i - a] = adc[i]
        chunks[r, 0], chunks[r, 1] = pos, pos + b - a
        pos += b - a
    return pos


@numba.njit(nogil=True, cache=True)
def _runs(t, start, stop):
    """The runs of non-decreasing time in ``t[start:stop]``, as rows of (start, stop, first t,
    last t)."""
    n_runs = 1
    for i in range(start + 1, stop):
        n_runs += t[i] < t[i - 1]
    out = np.empty((n_runs, 4), np.int64)
    r, a = 0, start
    for i in range(start + 1, stop + 1):
        if i == stop or t[i] < t[i - 1]:
            out[r, 0], out[r, 1], out[r, 2], out[r, 3] = a, i, t[a], t[i - 1]
            r += 1
            a = i
    return out


def _joined_runs(runs: list[np.ndarray], group: list[int]) -> list[np.ndarray]:
    """Each reservation's runs (rows of start, stop, first t, last t; ``group``: each piece's
    reservation) with a run cut at a piece boundary joined again: a run that continues the one
    before it in the store and in time, within one reservation. Runs of different reservations
    (another link, another batch) stay apart even when one happens to continue the other: each
    link's runs then chain onto their own board's pile in the merge."""
    out: list[np.ndarray] = []
    for g in sorted(set(group)):
        rows = np.concatenate([r for r, k in zip(runs, group, strict=True) if k == g])
        if rows.shape[0] > 1:
            joins = (rows[1:, 0] == rows[:-1, 1]) & (rows[1:, 2] >= rows[:-1, 3])
            if joins.any():
                head = np.concatenate(([True], ~joins))
                last = np.flatnonzero(np.concatenate((head[1:], [True])))  # each group's last
                rows, tail = rows[head].copy(), rows[last]
                rows[:, 1], rows[:, 3] = tail[:, 1], tail[:, 3]
        out.append(rows)
    return out


@numba.njit(nogil=True, cache=True)
def _ready(t, chunks, until, released):
    """Split the held ranges (``chunks`` rows: start, stop, first t, last t) at the release
    time ``until``: returns the ready parts (begin, end arrays), the rows still held and the
    number of late events (before ``released``, the time already released up to), which are
    left out."""
    m = chunks.shape[0]
    begin = np.empty(m, np.int64)
    end = np.empty(m, np.int64)
    keep = np.empty((m, 4), np.int64)
    nb = nk = 0
    late = 0
    for r in range(m):
        start, stop, first, last = chunks[r, 0], chunks[r, 1], chunks[r, 2], chunks[r, 3]
        if first > until:  # nothing ready yet
            keep[nk] = chunks[r]
            nk += 1
            continue
        n = stop - start
        n_late = 0 if first >= released else _first_after(t, start, stop, released - 1) - start
        split = n if last <= until else _first_after(t, start, stop, until) - start
        late += min(n_late, split) if split else n_late
        if split > n_late:
            begin[nb], end[nb] = start + n_late, start + split
            nb += 1
        if split < n:
            rest = start + max(split, n_late)
            keep[nk, 0], keep[nk, 1], keep[nk, 2], keep[nk, 3] = rest, stop, t[rest], last
            nk += 1
    return begin[:nb], end[:nb], keep[:nk].copy(), late


@numba.njit(nogil=True, cache=True)
def _first_after(t, lo, hi, value):
    """The first index in [lo, hi) of the non-decreasing ``t`` whose time is after ``value``
    (``hi`` if none: ``lo + np.searchsorted(t[lo:hi], value, side="right")``)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo
