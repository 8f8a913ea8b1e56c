"""Time order for sources that send events out of order (ABCD buffers per channel): a reordering
bound stands in for the boards' watermarks."""

from __future__ import annotations

import numba
import numpy as np

from coincidence.timeorder import order
from hw.dtypes import SINGLE_DTYPE, join, take


@numba.njit(nogil=True, cache=True)
def in_order(t: np.ndarray, crystal: np.ndarray) -> bool:
    """Whether (t, crystal) never decreases: the time order of :mod:`coincidence.timeorder`."""
    for i in range(1, t.size):
        if t[i] < t[i - 1] or (t[i] == t[i - 1] and crystal[i] < crystal[i - 1]):
            return False
    return True


@numba.njit(nogil=True, cache=True)
def _earliest(t: np.ndarray) -> int:
    low = np.iinfo(np.int64).max
    for v in t:
        low = min(low, v)
    return low


class Reorder:
    """Hold singles until the newest seen is ``bound_ps`` later, then release them in time order
    (ties by crystal, then arrival); a single older than what was released is late: counted in
    :attr:`late_events`, never placed out of order. Chunks that come in order are held as they
    are (one pass each); only a chunk out of order makes the held singles be ordered again."""

    def __init__(self, bound_ps: int, dtype: np.dtype = SINGLE_DTYPE, tie: str = "crystal"
                 ) -> None:
        """``dtype``: the events' (a field ``t`` and the integer field ``tie`` that orders equal
        times: a single's crystal, a coincidence's ``crystal_a``)."""
        self.bound_ps = int(bound_ps)
        self.dtype, self.tie = np.dtype(dtype), tie
        self._held: list[np.ndarray] = []
        """Pieces whose concatenation is in time order."""
        self._released_to: int | None = None
        self.late_events = 0

    def feed(self, singles: np.ndarray) -> np.ndarray:
        """Take singles in any order; returns those now certain of their place, time-ordered."""
        if singles.size and self._released_to is not None and (
                _earliest(singles["t"]) < self._released_to):
            late = singles["t"] < self._released_to
            self.late_events += int(late.sum())
            singles = singles[~late]
        if singles.size == 0:
            return singles[:0]
        self._hold(singles)
        cut = int(self._held[-1]["t"][-1]) - self.bound_ps
        self._released_to = max(cut, self._released_to or cut)
        return self._release_before(cut)

    def _hold(self, singles: np.ndarray) -> None:
        """Add ``singles`` to the held pieces, keeping their concatenation in order: a chunk in
        order after what is held is a new piece; otherwise only the held singles from the chunk's
        earliest time on are ordered again with it."""
        tie = self.tie
        if not in_order(singles["t"], singles[tie]):
            singles = take(singles, order(singles["t"], singles[tie]))
        if not self._held or _not_before(singles[0], self._held[-1][-1], tie):
            self._held.append(singles)
            return
        t0 = int(singles["t"][0])
        tail: list[np.ndarray] = []
        while self._held and int(self._held[-1]["t"][0]) >= t0:
            tail.insert(0, self._held.pop())
        if self._held:
            last = self._held[-1]
            k = int(np.searchsorted(last["t"], t0, side="left"))
            tail.insert(0, last[k:])
            self._held[-1] = last[:k]
        merged = join([*tail, singles], self.dtype)
        self._held.append(take(merged, order(merged["t"], merged[tie])))

    def _release_before(self, cut: int) -> np.ndarray:
        """The held singles earlier than ``cut`` (ps), in order, no longer held."""
        out: list[np.ndarray] = []
        while self._held and int(self._held[0]["t"][-1]) < cut:
            out.append(self._held.pop(0))
        if self._held:
            first = self._held[0]
            n = int(np.searchsorted(first["t"], cut, side="left"))
            if n:
                out.append(first[:n])
                self._held[0] = first[n:]
        if len(out) == 1:
            return out[0]
        return join(out, self.dtype) if out else np.zeros(0, self.dtype)

    def flush(self) -> np.ndarray:
        """Everything still held, time-ordered (the end of the stream)."""
        out = join(self._held, self.dtype) if self._held else np.zeros(0, self.dtype)
        self._held = []
        if out.size:
            self._released_to = int(out["t"][-1])
        return out


def _not_before(a: np.void, b: np.void, tie: str) -> bool:
    """Whether event ``a`` may follow event ``b`` in time order (equal times: by ``tie``)."""
    return (int(a["t"]), int(a[tie])) >= (int(b["t"]), int(b[tie]))
