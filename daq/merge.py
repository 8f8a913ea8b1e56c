"""Time merge of several digitizer boards into one time-ordered stream, with a watermark.

Each board sends its events in its own time order, and a STATUS heartbeat with its clock counter at
least every few ms. The merger holds events until every live board has reported a time (its
*watermark*: the latest event or heartbeat time) at or beyond them, then releases them in time
order.

A board stops holding the others back when it is *quiet*: its link has delivered no bytes at all
for ``quiet_timeout_s`` (3 s by default; the receivers know: their reads come back empty), or it
has never been seen while the other boards have sent ``quiet_timeout_s`` of data time. A link that is merely
behind (bytes waiting in its socket while the DAQ works through a backlog) is not quiet, so a busy
DAQ never mistakes a slow board for a dead one. If a quiet board later sends events older than
what was already released, those events are *late*: they are counted (``late_events``), kept in
the journal (which has every byte received) and recovered by ``petdaq replay``; they are never
silently dropped.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numba
import numpy as np

from coincidence import sort_nearly_sorted
from coincidence.timeorder import deal_onto_pile, in_time_order, order
from hw.dtypes import RAW_DTYPE, join

_SCRATCH_MAX_EVENTS = 1 << 23
"""Work buffers of releases up to this size are kept for the next release (fresh memory costs a
page fault per page touched, on every release)."""


class TimeMerger:
    """Merge RAW_DTYPE chunks from ``n_boards`` boards into time order."""

    def __init__(self, n_boards: int, quiet_timeout_s: float = 3.0) -> None:
        self.n_boards = n_boards
        self.unseen_after_ps = quiet_timeout_s * 1e12
        self.watermark_ps = np.full(n_boards, -1, np.int64)
        self._pending: list[tuple[np.ndarray, int, int]] = []
        """Chunks held back, each with its first and last time."""
        self._scratch: tuple[np.ndarray, ...] | None = None
        self.released_until_ps = -1
        self.late_events = 0
        self.released_events = 0

    def push(self, events: np.ndarray) -> None:
        """Add decoded events (any boards, any order within the chunk)."""
        if events.size:
            if events.dtype != RAW_DTYPE:
                events = events.astype(RAW_DTYPE)  # (the merge copies records as bytes)
            t = events["t"]
            if not in_time_order(t):
                events = sort_nearly_sorted(events)  # several boards' frames in one chunk
                t = events["t"]
            self._pending.append((events, int(t[0]), int(t[-1])))

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

    def release(self, idle_boards: Collection[int] = (), final: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`pop_ready` (or :meth:`flush` when ``final``) without a new array: the fields
        (t, crystal, adc) of the released events, in work buffers that the next release reuses
        (the processor's path: no new memory, hence no page faults, per release)."""
        until = np.iinfo(np.int64).max if final else self.safe_time_ps(idle_boards)
        ready, keep = [], []
        released = self.released_until_ps
        for entry in self._pending:
            chunk, first, last = entry
            if first > until:  # nothing ready yet
                keep.append(entry)
                continue
            # binary searches only where the chunk straddles a bound (np.searchsorted would
            # copy the strided field view whole)
            n = chunk.size
            n_late = 0 if first >= released else _first_after(chunk["t"], released - 1)
            split = n if last <= until else _first_after(chunk["t"], until)
            self.late_events += min(n_late, split) if split else n_late
            if split > n_late:
                ready.append(chunk[n_late:split])
            if split < n:
                rest = chunk[max(split, n_late):]
                keep.append((rest, int(rest["t"][0]), last))
        self._pending = keep
        fields = self._merge(ready)
        if fields[0].size:
            self.released_until_ps = max(self.released_until_ps, int(fields[0][-1]))
            self.released_events += fields[0].size
        return fields

    def _merge(self, chunks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The time-ordered chunks merged in time order: by t, then crystal, then chunk and
        position (the order of ``sort_nearly_sorted(np.concatenate(chunks))``).

        The chunks are copied one after the other into a work buffer (one memory copy), then one
        numba kernel without the GIL (:func:`_merge_chunks`) chains each board's chunks (which
        follow each other in time) into one *pile* and merges the piles in one pass that takes
        the earliest head each time (O(n boards)); equal times are then put in crystal order.
        The work buffers are kept between releases: once the run has warmed up, no memory is
        touched for the first time.
        """
        n = sum(c.size for c in chunks)
        if self._scratch is None or self._scratch[0].size < n:
            size = max(n + n // 2, 1 << 16)  # room to grow
            self._scratch = (np.empty(size, RAW_DTYPE), np.empty(size, np.int64),
                             np.empty(size, np.int32), np.empty(size, np.uint16))
        flat, t, crystal, adc = (a[:n] for a in self._scratch)
        if n > _SCRATCH_MAX_EVENTS:
            self._scratch = None
        if n == 0:
            return t, crystal, adc
        # the chunks one after the other (a memory copy into the kept buffer), then the kernel
        join(chunks, RAW_DTYPE, out=flat)
        lo = np.cumsum([0] + [c.size for c in chunks], dtype=np.int64)
        ft, fc, fa = flat["t"], flat["crystal"], flat["adc"]
        if not _merge_chunks(ft, fc, fa, lo, t, crystal, adc):
            # more piles than the one-pass merge is for (far from time order): sort
            _take(ft, fc, fa, order(ft, fc), t, crystal, adc)
        return t, crystal, adc

    @property
    def pending_events(self) -> int:
        """Events held back waiting for a slower board."""
        return sum(p.size for p, _first, _last in self._pending)


def as_raw(fields: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Released fields (:meth:`TimeMerger.release`) as a new RAW_DTYPE array."""
    out = np.empty(fields[0].size, RAW_DTYPE)
    out["t"], out["crystal"], out["adc"] = fields
    return out


MAX_PILES = 16
"""Piles (about one per board) the one-pass merge takes; more go to a general sort."""


@numba.njit(nogil=True, cache=True)
def _merge_chunks(t, crystal, adc, lo, out_t, out_crystal, out_adc):
    """Merge the time-ordered chunks ``[lo[s], lo[s + 1])`` of the events (t, crystal, adc)
    into ``out_*``; see :meth:`TimeMerger._merge`. Returns False (nothing done) when they need
    more than MAX_PILES piles."""
    k = lo.size - 1
    # deal the chunks, in order, onto piles: the one whose last time is the latest not after
    # the chunk's first (a board's next chunk finds its board's pile)
    nxt = np.full(k, -1, np.int64)
    first = np.empty(MAX_PILES, np.int64)
    last = np.empty(MAX_PILES, np.int64)
    tail = np.empty(MAX_PILES, np.int64)
    n_piles = 0
    for s in range(k):
        if lo[s + 1] == lo[s]:
            continue
        n_piles = deal_onto_pile(s, t[lo[s]], t[lo[s + 1] - 1], n_piles, first, last, tail, nxt)
        if n_piles < 0:
            return False
    # each pile's cursor: its chunk, position and next time; the earliest (time, chunk) goes
    # out first, so equal times keep the chunks' order
    seg = np.empty(n_piles, np.int64)
    pos = np.empty(n_piles, np.int64)
    end = np.empty(n_piles, np.int64)
    key = np.empty(n_piles, np.int64)
    for p in range(n_piles):
        s = first[p]
        seg[p], pos[p], end[p], key[p] = s, lo[s], lo[s + 1], t[lo[s]]
    never = np.iinfo(np.int64).max
    o = 0
    n = lo[k]
    while o < n:
        # the earliest pile head b and the runner-up (time, chunk) in one scan
        b, kb, sb = 0, key[0], seg[0]
        k2, s2 = never, k
        for p in range(1, n_piles):
            kp, sp = key[p], seg[p]
            if (kp < kb) | ((kp == kb) & (sp < sb)):
                k2, s2 = kb, sb
                b, kb, sb = p, kp, sp
            elif (kp < k2) | ((kp == k2) & (sp < s2)):
                k2, s2 = kp, sp
        # the whole run of this pile that comes before every other pile's head goes at once
        i, e = pos[b], end[b]
        while True:
            out_t[o] = t[i]
            out_crystal[o] = crystal[i]
            out_adc[o] = adc[i]
            o += 1
            i += 1
            if i == e or t[i] > k2 or (t[i] == k2 and sb > s2):
                break
        if i < e:
            pos[b], key[b] = i, t[i]
        else:
            s = nxt[sb]
            if s >= 0:
                seg[b], pos[b], end[b], key[b] = s, lo[s], lo[s + 1], t[lo[s]]
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
def _take(t, crystal, adc, perm, out_t, out_crystal, out_adc):
    """Fields in the order of ``perm`` (a RAW array's field views as the output)."""
    for o in range(perm.size):
        x = perm[o]
        out_t[o] = t[x]
        out_crystal[o] = crystal[x]
        out_adc[o] = adc[x]


@numba.njit(nogil=True, cache=True)
def _first_after(t, value):
    """The first index of the non-decreasing ``t`` whose time is after ``value`` (binary
    search: ``np.searchsorted(t, value, side="right")``, without copying a strided view)."""
    lo, hi = 0, t.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo
