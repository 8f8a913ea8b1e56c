"""Time merge of several digitizer boards into one time-ordered stream, with a watermark.

Each board sends its events in its own time order, and a STATUS heartbeat with its clock counter at
least every few ms. The merger holds events until every live board has reported a time (its
*watermark*: the latest event or heartbeat time) at or beyond them, then releases them in time
order.

A board whose watermark has not advanced for ``quiet_timeout_s`` (default 1 s) of *arrival* time
no longer holds the others back. Arrival time is when the bytes were received (the receivers stamp
them), not when the merger gets to them: a DAQ working through a backlog does not mistake a board
for quiet. If it later sends events older than what was already released, those
events are *late*: they are counted (``late_events``), kept in the journal (which has every byte
received) and recovered by ``petdaq replay``; they are never silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from coincidence import sort_nearly_sorted
from hw.dtypes import RAW_DTYPE


class TimeMerger:
    """Merge RAW_DTYPE chunks from ``n_boards`` boards into time order."""

    def __init__(self, n_boards: int, quiet_timeout_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.n_boards = n_boards
        self.quiet_timeout_s = quiet_timeout_s
        self._clock = clock
        self.watermark_ps = np.full(n_boards, -1, np.int64)
        self._advanced_at = np.full(n_boards, clock())
        self._now = 0.0
        self._pending: list[np.ndarray] = []
        self.released_until_ps = -1
        self.late_events = 0
        self.released_events = 0

    def push(self, events: np.ndarray) -> None:
        """Add decoded events (any boards, any order within the chunk)."""
        if events.size:
            t = events["t"]
            if t.size > 1 and not bool(np.all(t[1:] >= t[:-1])):
                events = sort_nearly_sorted(events)  # several boards' frames in one chunk
            self._pending.append(events)

    def advance(self, board: int, t_ps: int, arrived_s: float | None = None) -> None:
        """Record that ``board`` has reported everything up to ``t_ps`` (event or heartbeat),
        in bytes that arrived at ``arrived_s`` (monotonic s; default now)."""
        arrived = self._clock() if arrived_s is None else arrived_s
        self._now = max(self._now, arrived)
        if t_ps > self.watermark_ps[board]:
            self.watermark_ps[board] = t_ps
            self._advanced_at[board] = arrived

    def _arrival_now(self) -> float:
        return self._now if self._now > 0 else self._clock()

    def quiet_boards(self) -> np.ndarray:
        """Boards that have not advanced for the quiet timeout (indices)."""
        return np.flatnonzero(self._arrival_now() - self._advanced_at > self.quiet_timeout_s)

    def safe_time_ps(self) -> int:
        """Events at or before this time can be released: min watermark over live boards."""
        live = self._arrival_now() - self._advanced_at <= self.quiet_timeout_s
        if not live.any():
            return int(self.watermark_ps.max())
        return int(self.watermark_ps[live].min())

    def pop_ready(self) -> np.ndarray:
        """Release the time-ordered events at or before the safe time (late ones counted apart)."""
        return self._release(self.safe_time_ps())

    def flush(self) -> np.ndarray:
        """Release everything still held (end of run)."""
        return self._release(np.iinfo(np.int64).max)

    def _release(self, until_ps: int) -> np.ndarray:
        """Every pending chunk is time-ordered: split each at ``until_ps`` (binary search),
        merge the ready heads, keep the tails."""
        ready, keep = [], []
        for chunk in self._pending:
            t = chunk["t"]
            n_late = int(np.searchsorted(t, self.released_until_ps, side="left"))
            split = int(np.searchsorted(t, until_ps, side="right"))
            self.late_events += min(n_late, split) if split else n_late
            if split > n_late:
                ready.append(chunk[n_late:split])
            if split < t.size:
                keep.append(chunk[max(split, n_late):])
        self._pending = keep
        if not ready:
            return np.empty(0, RAW_DTYPE)
        out = np.concatenate(ready) if len(ready) > 1 else ready[0].copy()
        out = sort_nearly_sorted(out)  # the chunks' runs merged in O(n log chunks)
        self.released_until_ps = max(self.released_until_ps, int(out["t"][-1]))
        self.released_events += out.size
        return out

    @property
    def pending_events(self) -> int:
        """Events held back waiting for a slower board."""
        return sum(p.size for p in self._pending)
