"""Time merge of several digitizer boards into one time-ordered stream, with a watermark.

Each board sends its events in its own time order, and a STATUS heartbeat with its clock counter at
least every few ms. The merger holds events until every live board has reported a time (its
*watermark*: the latest event or heartbeat time) at or beyond them, then releases them in time
order.

A board whose watermark has not advanced for ``quiet_timeout_s`` of wall-clock time (default 1 s) no
longer holds the others back. If it later sends events older than what was already released, those
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
        self._pending: list[np.ndarray] = []
        self.released_until_ps = -1
        self.late_events = 0
        self.released_events = 0

    def push(self, events: np.ndarray) -> None:
        """Add decoded events (any boards, any order within the chunk)."""
        if events.size:
            self._pending.append(events)

    def advance(self, board: int, t_ps: int) -> None:
        """Record that ``board`` has reported everything up to ``t_ps`` (event or heartbeat)."""
        if t_ps > self.watermark_ps[board]:
            self.watermark_ps[board] = t_ps
            self._advanced_at[board] = self._clock()

    def quiet_boards(self) -> np.ndarray:
        """Boards that have not advanced for the quiet timeout (indices)."""
        return np.flatnonzero(self._clock() - self._advanced_at > self.quiet_timeout_s)

    def safe_time_ps(self) -> int:
        """Events at or before this time can be released: min watermark over live boards."""
        live = self._clock() - self._advanced_at <= self.quiet_timeout_s
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
        if not self._pending:
            return np.empty(0, RAW_DTYPE)
        events = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        late = events["t"] < self.released_until_ps
        if late.any():
            self.late_events += int(late.sum())
            events = events[~late]
        ready = events["t"] <= until_ps
        if ready.all():
            out, self._pending = events, []
        else:
            out = events[ready]
            self._pending = [events[~ready]]
        if out.size == 0:
            return out
        out = sort_nearly_sorted(out)  # boards' runs merged in O(n log boards)
        self.released_until_ps = max(self.released_until_ps, int(out["t"][-1]))
        self.released_events += out.size
        return out

    @property
    def pending_events(self) -> int:
        """Events held back waiting for a slower board."""
        return sum(p.size for p in self._pending)
