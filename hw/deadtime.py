"""Dead time of a scanner's modules from their measured singles rates, and its correction.

Each module (the electronics' dead-time unit: a sector of one module ring; a SPECT head) loses
events while it integrates and is dead. With ``S`` its measured singles rate (cps), its live
fraction is taken as ``1 - S tau``: a non-paralysable module whose effective dead time per
measured single is ``tau``, the scanner's ``[quantification] singles_dead_time_ns``, fitted to a
count-rate series (it is shorter than the electronics' dead time: several crystals' singles share
one trigger). A coincidence of crystals in modules a and b is kept with probability ``L_a L_b``.

The DAQ counts the singles of every module in bins of :data:`RATE_BIN_PS` and writes them beside
the coincidences (:class:`RateTable`). The correction factor of a set of prompts (a frame, or a
whole run) is the mean of ``1 / (L_a L_b)`` over them, each with its modules' live fractions in
its own bin: what the counts lost, weighted as the counts are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError

#: Width of the singles-rate bins (ps): 50 ms.
RATE_BIN_PS = 50_000_000_000
#: The lowest live fraction the correction believes (beyond it the model does not hold).
MIN_LIVE_FRACTION = 0.3


def dead_time_units(scanner: Scanner) -> tuple[np.ndarray, int]:
    """((N,) int32 dead-time unit of each crystal, the number of units): one per physical module
    (PET: sector x module ring; SPECT: head)."""
    unit = (scanner.crystal_module_ring.astype(np.int64) * scanner.n_modules
            + scanner.crystal_module)
    return unit.astype(np.int32), int(unit.max()) + 1


@dataclass(frozen=True)
class RateTable:
    """Singles per dead-time unit in consecutive bins: row k covers
    ``[(first_bin + k) * bin_ps, (first_bin + k + 1) * bin_ps)`` ps, within the acquired span
    ``[start_ps, end_ps)`` (the first and last bins are partly acquired)."""

    bin_ps: int
    first_bin: int
    counts: np.ndarray
    """(bins, units) uint32."""
    start_ps: int
    end_ps: int

    def seconds(self) -> np.ndarray:
        """(bins,) the acquired time of each bin (s)."""
        edges = (self.first_bin + np.arange(self.counts.shape[0] + 1)) * self.bin_ps
        lo, hi = np.maximum(edges[:-1], self.start_ps), np.minimum(edges[1:], self.end_ps)
        return np.maximum(hi - lo, 1).astype(np.float64) * 1e-12

    def rates_cps(self) -> np.ndarray:
        """(bins, units) float64 singles per second."""
        return self.counts.astype(np.float64) / self.seconds()[:, None]

    def bins_of(self, t_ps: np.ndarray) -> np.ndarray:
        """Row of each time (clipped to the table)."""
        rows = np.asarray(t_ps, np.int64) // self.bin_ps - self.first_bin
        return np.clip(rows, 0, max(0, self.counts.shape[0] - 1))


def live_fractions(table: RateTable, tau_ns: float) -> np.ndarray:
    """(bins, units) live fraction of each unit in each bin, ``1 - S tau``."""
    if not tau_ns >= 0:
        raise UserError(f"the singles dead time must be >= 0 ns, got {tau_ns}")
    return np.maximum(1.0 - table.rates_cps() * tau_ns * 1e-9, MIN_LIVE_FRACTION)


def correction_factor(table: RateTable | None, scanner: Scanner, tau_ns: float | None,
                      t_ps: np.ndarray, crystal_a: np.ndarray, crystal_b: np.ndarray) -> float:
    """The mean of ``1 / (L_a L_b)`` over the prompts (times and crystals): what multiplies their
    image to undo the dead time; 1 without a table, a model or prompts."""
    if table is None or not tau_ns or len(t_ps) == 0 or table.counts.size == 0:
        return 1.0
    units, n_units = dead_time_units(scanner)
    if table.counts.shape[1] != n_units:
        raise UserError(f"the singles rates hold {table.counts.shape[1]} modules, scanner "
                        f"'{scanner.name}' has {n_units}")
    live = live_fractions(table, tau_ns)
    rows = table.bins_of(t_ps)
    pair = live[rows, units[crystal_a]] * live[rows, units[crystal_b]]
    return float(np.mean(1.0 / pair, dtype=np.float64))
