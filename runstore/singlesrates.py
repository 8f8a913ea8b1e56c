"""The singles of every module counted in time bins (the dead-time correction's input,
:mod:`hw.deadtime`), handed to the list-mode file bin by bin.

The DAQ counts them as they arrive, before the time merge, into the open bins' table of
whichever worker counts them (:class:`SinglesRates`, :attr:`SinglesRates.counts`), and hands a
bin over once no single can come in it any more. A whole set of singles is counted at once by
:func:`rate_table`.
"""

from __future__ import annotations

import numba
import numpy as np

from hw.deadtime import RATE_BIN_PS, RateTable, dead_time_units
from hw.scanner import Scanner

_MIN_BINS = 64


class SinglesRates:
    """Singles per dead-time unit in bins of ``bin_ps``, counted by ``workers`` threads at once.

    The caller makes the open bins cover the times it is about to count (:meth:`cover`), counts
    each single into ``counts[worker, bin - first_bin, unit_of[crystal]]`` and reports their
    span (:meth:`counted`); :meth:`take` hands over the bins no single can come in any more,
    :meth:`finish` the rest. The table runs from the first single's bin to the last's, empty
    bins between included, whichever order the singles come in and whichever worker counts
    them."""

    def __init__(self, scanner: Scanner, bin_ps: int = RATE_BIN_PS, workers: int = 1) -> None:
        self.unit_of, self.n_units = dead_time_units(scanner)
        self.bin_ps = int(bin_ps)
        self.counts = np.zeros((workers, _MIN_BINS, self.n_units), np.int64)
        """(workers, bins, units): the open bins' singles per worker, from :attr:`first_bin`."""
        self.first_bin = 0
        """The bin of ``counts[:, 0]`` (the first bin not handed over yet)."""
        self._opened = False
        self._span: list[int] | None = None
        """The first single's time and the last's + 1 (ps); None before the first single."""
        self.history: list[RateTable] = []
        """Every table handed over, in order (the live frames read them)."""

    def cover(self, t_min_ps: int, t_max_ps: int) -> None:
        """Open the bins of singles at ``t_min_ps`` to ``t_max_ps`` (never those handed over:
        a single before them is late, the caller's to set apart)."""
        lo, hi = t_min_ps // self.bin_ps, t_max_ps // self.bin_ps
        if not self._opened:
            self.first_bin, self._opened = lo, True
        if lo < self.first_bin:
            if self.history:
                raise ValueError(f"singles rates: bin {lo} was handed over already")
            self._grow(self.first_bin - lo, hi)
        elif hi - self.first_bin >= self.counts.shape[1]:
            self._grow(0, hi)

    def _grow(self, before: int, hi: int) -> None:
        """Room for ``before`` bins before the first and up to bin ``hi``."""
        first = self.first_bin - before
        size = max(2 * self.counts.shape[1], hi - first + 1)
        grown = np.zeros((self.counts.shape[0], size, self.n_units), np.int64)
        grown[:, before:before + self.counts.shape[1]] = self.counts
        self.counts, self.first_bin = grown, first

    def counted(self, t_min_ps: int, t_max_ps: int) -> None:
        """Singles from ``t_min_ps`` to ``t_max_ps`` were counted (their span)."""
        if self._span is None:
            self._span = [t_min_ps, t_max_ps + 1]
        else:
            self._span = [min(self._span[0], t_min_ps), max(self._span[1], t_max_ps + 1)]

    @property
    def last_single_ps(self) -> int:
        """The latest single counted (ps; 0 before the first)."""
        return self._span[1] - 1 if self._span is not None else 0

    def take(self, through_ps: int) -> RateTable | None:
        """Hand over the bins that end at or before ``through_ps`` (no single can come in them
        any more) and lie before the latest single's (as a table grows bin by bin); None when
        there are none."""
        if self._span is None:
            return None
        last = (self._span[1] - 1) // self.bin_ps
        return self._hand_over(min(through_ps // self.bin_ps, last), final=False)

    def finish(self) -> RateTable | None:
        """The end of the singles: hand over every bin through the last single's."""
        if self._span is None:
            return None
        return self._hand_over((self._span[1] - 1) // self.bin_ps + 1, final=True)

    def _hand_over(self, stop_bin: int, final: bool) -> RateTable | None:
        n = stop_bin - self.first_bin
        if n <= 0:
            return None
        assert self._span is not None
        rows = self.counts[:, :n].sum(axis=0).astype(np.uint32)
        end = self._span[1] if final else stop_bin * self.bin_ps
        out = RateTable(self.bin_ps, self.first_bin, rows,
                        max(self._span[0], self.first_bin * self.bin_ps), end)
        keep = self.counts.shape[1] - n
        self.counts[:, :keep] = self.counts[:, n:].copy() if keep > 0 else 0
        self.counts[:, max(keep, 0):] = 0
        self.first_bin = stop_bin
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
