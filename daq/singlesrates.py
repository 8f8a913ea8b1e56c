"""The singles of every module counted in time bins as the merged singles pass (the dead-time
correction's input, :mod:`hw.deadtime`), handed to the list-mode file bin by bin."""

from __future__ import annotations

import numba
import numpy as np

from hw.deadtime import RATE_BIN_PS, RateTable, dead_time_units
from hw.scanner import Scanner


@numba.njit(nogil=True, cache=True)
def _count(t, crystal, unit_of, bin_ps, first_bin, rows):
    """Count each single into ``rows[bin - first_bin, unit]``; returns how many fell before
    ``first_bin`` (late singles of bins already handed over: not counted)."""
    late = 0
    for i in range(t.size):
        b = t[i] // bin_ps - first_bin
        if b < 0:
            late += 1
        else:
            rows[b, unit_of[crystal[i]]] += 1
    return late


class SinglesRates:
    """Singles per dead-time unit in bins of ``bin_ps``, fed with time-ordered singles."""

    def __init__(self, scanner: Scanner, bin_ps: int = RATE_BIN_PS) -> None:
        self.unit_of, self.n_units = dead_time_units(scanner)
        self.bin_ps = int(bin_ps)
        self.first_bin: int | None = None
        """The bin of ``rows[0]``: the first not yet handed over (None before any single)."""
        self.rows = np.zeros((0, self.n_units), np.uint32)
        self.late = 0
        """Singles older than the bins already handed over (not counted)."""
        self._seen = 0
        """Rows that singles have reached."""
        self._span = [0, 0]
        """The first single's time and the last's + 1 (ps)."""
        self.history: list[RateTable] = []
        """Every table handed over, in order (the live frames read them)."""

    def add(self, t_ps: np.ndarray, crystal: np.ndarray) -> None:
        """Count singles (times in ps, ascending but for late ones; crystal ids)."""
        if t_ps.size == 0:
            return
        last = int(t_ps.max())
        if self.first_bin is None:
            self.first_bin = int(t_ps[0]) // self.bin_ps
            self._span = [int(t_ps[0]), last + 1]
        self._span[1] = max(self._span[1], last + 1)
        need = last // self.bin_ps - self.first_bin + 1
        if need > self.rows.shape[0]:
            grown = np.zeros((max(need, 2 * self.rows.shape[0]), self.n_units), np.uint32)
            grown[:self.rows.shape[0]] = self.rows
            self.rows = grown
        self.late += int(_count(t_ps, crystal, self.unit_of, self.bin_ps, self.first_bin,
                                self.rows))
        self._seen = max(self._seen, need)

    def take(self, before_ps: int | None) -> RateTable | None:
        """Hand over the bins that end at or before ``before_ps`` (None: every bin counted);
        None when there are none."""
        if self.first_bin is None:
            return None
        seen = self._seen
        n = seen if before_ps is None else min(seen, before_ps // self.bin_ps - self.first_bin)
        if n <= 0:
            return None
        start = max(self._span[0], self.first_bin * self.bin_ps)
        end = (self.first_bin + n) * self.bin_ps if before_ps is not None else self._span[1]
        out = RateTable(self.bin_ps, self.first_bin, self.rows[:n].copy(), start, end)
        self.rows = np.ascontiguousarray(self.rows[n:])
        self.first_bin += n
        self._seen = seen - n
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


def rate_table(scanner: Scanner, t_ps: np.ndarray, crystal: np.ndarray,
               bin_ps: int = RATE_BIN_PS) -> RateTable | None:
    """The singles rates of a whole set of time-ordered singles, as the DAQ would keep them."""
    rates = SinglesRates(scanner, bin_ps)
    rates.add(np.ascontiguousarray(t_ps, np.int64), np.ascontiguousarray(crystal, np.int32))
    return rates.take(None)
