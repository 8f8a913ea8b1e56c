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

from collections.abc import Collection

import numpy as np

from coincidence import sort_nearly_sorted
from hw.dtypes import RAW_DTYPE


class TimeMerger:
    """Merge RAW_DTYPE chunks from ``n_boards`` boards into time order."""

    def __init__(self, n_boards: int, quiet_timeout_s: float = 3.0) -> None:
        self.n_boards = n_boards
        self.unseen_after_ps = quiet_timeout_s * 1e12
        self.watermark_ps = np.full(n_boards, -1, np.int64)
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
        return self._release(self.safe_time_ps(idle_boards))

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
