"""Time order for sources that send events out of order (ABCD buffers per channel): a reordering
bound stands in for the boards' watermarks."""

from __future__ import annotations

import numpy as np

from hw.dtypes import SINGLE_DTYPE


class Reorder:
    """Hold singles until the newest seen is ``bound_ps`` later, then release them in time order
    (ties by crystal, then arrival); a single older than what was released is late: counted in
    :attr:`late_events`, never placed out of order."""

    def __init__(self, bound_ps: int) -> None:
        self.bound_ps = int(bound_ps)
        self._held = np.zeros(0, SINGLE_DTYPE)
        self._released_to: int | None = None
        self.late_events = 0

    def feed(self, singles: np.ndarray) -> np.ndarray:
        """Take singles in any order; returns those now certain of their place, time-ordered."""
        if self._released_to is not None:
            late = singles["t"] < self._released_to
            self.late_events += int(late.sum())
            singles = singles[~late]
        if singles.size == 0:
            return singles
        held = np.concatenate([self._held, singles])
        held = held[np.lexsort((held["crystal"], held["t"]))]
        cut = int(held["t"][-1]) - self.bound_ps
        n = int(np.searchsorted(held["t"], cut, side="left"))
        out, self._held = held[:n], held[n:]
        self._released_to = max(cut, self._released_to or cut)
        return out

    def flush(self) -> np.ndarray:
        """Everything still held, time-ordered (the end of the stream)."""
        out, self._held = self._held, np.zeros(0, SINGLE_DTYPE)
        if out.size:
            self._released_to = int(out["t"][-1])
        return out
