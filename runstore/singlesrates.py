"""The singles of every module counted in time bins (the dead-time correction's input,
:mod:`hw.deadtime`), handed to the list-mode file bin by bin.

The DAQ does not count them event by event: it cuts the merged singles at the bins' edges and,
each time a bin is left, takes every module's running total from the hit map it keeps anyway
(:class:`SinglesRates`). A whole set of singles is counted at once by :func:`rate_table`.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from hw.deadtime import RATE_BIN_PS, RateTable, dead_time_units
from hw.scanner import Scanner


class SinglesRates:
    """Singles per dead-time unit in bins of ``bin_ps``, from running totals per unit.

    The caller hands each time-ordered segment of singles that lies within one bin to
    :meth:`enter` before counting it into its totals, and calls :meth:`finish` at the end;
    :meth:`take` hands the finished bins over."""

    def __init__(self, scanner: Scanner, bin_ps: int = RATE_BIN_PS) -> None:
        self.unit_of, self.n_units = dead_time_units(scanner)
        self.bin_ps = int(bin_ps)
        self._open: tuple[int, np.ndarray] | None = None
        """The bin being counted and the units' totals when it was entered."""
        self._rows: list[np.ndarray] = []
        """Finished bins not handed over yet."""
        self._next_bin = 0
        """The bin of ``_rows[0]``."""
        self._span = [0, 0]
        """The first single's time and the last's + 1 (ps)."""
        self.history: list[RateTable] = []
        """Every table handed over, in order (the live frames read them)."""

    def bin_edges_in(self, t_ps: np.ndarray) -> np.ndarray:
        """Indices that cut time-ordered singles at the bins' edges (for :func:`np.split`)."""
        first, last = int(t_ps[0]) // self.bin_ps, int(t_ps[-1]) // self.bin_ps
        if first == last:
            return np.empty(0, np.int64)
        return np.searchsorted(t_ps, np.arange(first + 1, last + 1) * self.bin_ps)

    def enter(self, t_ps: np.ndarray, totals: Callable[[], np.ndarray]) -> None:
        """Before counting a segment of singles that lie in one bin (times ``t_ps``):
        ``totals()`` gives every unit's singles counted so far. A segment of a later bin
        finishes the open one (and any empty bins between); one of an earlier bin (late
        singles) is counted in the open one."""
        if t_ps.size == 0:
            return
        b = int(t_ps[0]) // self.bin_ps
        if self._open is None:
            self._open, self._next_bin = (b, totals()), b
            self._span = [int(t_ps[0]), int(t_ps[-1]) + 1]
        elif b > self._open[0]:
            now = totals()
            self._rows.append(now - self._open[1])
            self._rows += [np.zeros(self.n_units, np.int64)] * (b - self._open[0] - 1)
            self._open = (b, now)
        self._span[1] = max(self._span[1], int(t_ps[-1]) + 1)

    def finish(self, totals: Callable[[], np.ndarray]) -> None:
        """The end of the singles: finish the open bin."""
        if self._open is not None:
            self._rows.append(totals() - self._open[1])
            self._open = None

    def take(self) -> RateTable | None:
        """Hand over the finished bins (None when there are none)."""
        if not self._rows:
            return None
        n = len(self._rows)
        last = self._open is None
        end = self._span[1] if last else (self._next_bin + n) * self.bin_ps
        out = RateTable(self.bin_ps, self._next_bin, np.array(self._rows, np.uint32),
                        max(self._span[0], self._next_bin * self.bin_ps), end)
        self._rows, self._next_bin = [], self._next_bin + n
        self.history.append(out)
        return out

    def handed_over(self) -> RateTable | None:
        """Every bin handed over so far as one table, as the list-mode file holds them (safe to
        call from another thread); None before the first."""
        parts = list(self.history)
        if not parts:
            return None
        return RateTable(self.bin_ps, parts[0].first_bin,
                         np.concatenate([p.counts for p in parts]), parts[0].start_ps,
                         parts[-1].end_ps)


@numba.njit(nogil=True, cache=True)
def _count(t, crystal, unit_of, bin_ps, first_bin, rows):
    """Count each time-ordered single into ``rows[bin - first_bin, unit]`` (the bin is computed
    again only when a time leaves the current one)."""
    b, b_lo, b_hi = -1, 0, 0
    for i in range(t.size):
        ti = t[i]
        if ti >= b_hi or ti < b_lo:
            b = ti // bin_ps - first_bin
            b_lo = (b + first_bin) * bin_ps
            b_hi = b_lo + bin_ps
        if 0 <= b < rows.shape[0]:
            rows[b, unit_of[crystal[i]]] += 1


def rate_table(scanner: Scanner, t_ps: np.ndarray, crystal: np.ndarray,
               bin_ps: int = RATE_BIN_PS) -> RateTable | None:
    """The singles rates of a whole set of time-ordered singles, as the DAQ keeps them; None
    without singles."""
    if len(t_ps) == 0:
        return None
    t = np.ascontiguousarray(t_ps, np.int64)
    unit_of, n_units = dead_time_units(scanner)
    first = int(t[0]) // bin_ps
    rows = np.zeros((int(t[-1]) // bin_ps - first + 1, n_units), np.uint32)
    _count(t, np.ascontiguousarray(crystal, np.int32), unit_of, bin_ps, first, rows)
    return RateTable(bin_ps, first, rows, max(int(t[0]), first * bin_ps), int(t[-1]) + 1)
