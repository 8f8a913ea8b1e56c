"""The motion signal: the prompts' centroid of distribution (COD) over short intervals, with TOF.

Each prompt's annihilation point is estimated on its line of response by its TOF (the midpoint
without TOF); over an interval the estimates' mean is the centroid of the activity in the field,
which moves with the head (Lu et al., J Nucl Med 2020, used 1 s intervals). The interval's
second moments (the spread along x, y, z and its cross terms) move with a rotation about the
centroid, which leaves the centroid still. Intervals are absolute (``[k dt, (k + 1) dt)`` from
the scan's start), so sums over chunks add up to the sums over the whole scan, whatever the
chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from recon.pet.lors import lor_endpoints

#: The motion signal's interval (s).
INTERVAL_S = 0.5
#: Sums kept per interval: counts, x y z, and xx yy zz xy xz yz.
N_SUMS = 10


@dataclass
class MotionSignal:
    """Per interval of ``interval_s`` from ``t0_s``: prompts, their centroid (mm) and spread."""

    interval_s: float
    sums: np.ndarray
    """(n, :data:`N_SUMS`) float64: counts, sums of x, y, z and of the products."""
    t0_s: float = 0.0

    @property
    def t_s(self) -> np.ndarray:
        """Each interval's middle (s)."""
        return self.t0_s + (np.arange(self.sums.shape[0]) + 0.5) * self.interval_s

    @property
    def counts(self) -> np.ndarray:
        return self.sums[:, 0]

    @property
    def centroid_mm(self) -> np.ndarray:
        """(n, 3) the mean annihilation point; NaN where an interval has no prompt."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[:, 1:4] / self.sums[:, :1]

    @property
    def spread_mm(self) -> np.ndarray:
        """(n, 6) the covariance's xx, yy, zz, xy, xz, yz (mm^2)."""
        c = self.centroid_mm
        with np.errstate(invalid="ignore", divide="ignore"):
            second = self.sums[:, 4:] / self.sums[:, :1]
        pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
        return second - np.stack([c[:, a] * c[:, b] for a, b in pairs], axis=1)


class SignalMaker:
    """Adds prompts' annihilation points into per-interval sums, chunk by chunk."""

    def __init__(self, scanner: Scanner, interval_s: float = INTERVAL_S, tof: bool = True
                 ) -> None:
        self.interval_s = float(interval_s)
        self._ends = lor_endpoints(scanner).astype(np.float64)
        self._tof = bool(tof) and scanner.response.ctr_ps > 0
        self.sums = np.zeros((0, N_SUMS))

    def add(self, coinc: np.ndarray) -> None:
        """Add a chunk of COINC_DTYPE rows (its delayeds are left out), in one pass."""
        if coinc.size == 0:
            return
        interval_ps = round(self.interval_s * 1e12)
        last = int(coinc["t"].max()) // interval_ps
        if last >= self.sums.shape[0]:
            grown = np.zeros((last + 1, N_SUMS))
            grown[:self.sums.shape[0]] = self.sums
            self.sums = grown
        tof_mm_per_ps = SPEED_OF_LIGHT_MM_PER_PS / 2.0 if self._tof else 0.0
        _add(coinc["t"], coinc["crystal_a"], coinc["crystal_b"], coinc["dt"], coinc["delayed"],
             self._ends, interval_ps, tof_mm_per_ps, self.sums)

    def signal(self, upto_s: float | None = None) -> MotionSignal:
        """The intervals so far (those ending by ``upto_s`` when given: complete ones)."""
        n = self.sums.shape[0] if upto_s is None else min(
            self.sums.shape[0], int(np.floor(upto_s / self.interval_s + 1e-9)))
        return MotionSignal(self.interval_s, self.sums[:n].copy())


@numba.njit(nogil=True, cache=True)
def _add(t, a, b, dt, delayed, ends, interval_ps, tof_mm_per_ps, sums):
    """Each prompt's TOF point (the midpoint with ``tof_mm_per_ps`` 0) into its interval's
    sums, in the prompts' order."""
    for i in range(t.size):
        if delayed[i]:
            continue
        k = t[i] // interval_ps
        ax, ay, az = ends[a[i], 0], ends[a[i], 1], ends[a[i], 2]
        bx, by, bz = ends[b[i], 0], ends[b[i], 1], ends[b[i], 2]
        ux, uy, uz = ax - bx, ay - by, az - bz
        norm = np.sqrt(ux * ux + uy * uy + uz * uz)
        shift = dt[i] * tof_mm_per_ps / norm if norm > 0 else 0.0
        x = 0.5 * (ax + bx) + shift * ux
        y = 0.5 * (ay + by) + shift * uy
        z = 0.5 * (az + bz) + shift * uz
        s = sums[k]
        s[0] += 1.0
        s[1] += x
        s[2] += y
        s[3] += z
        s[4] += x * x
        s[5] += y * y
        s[6] += z * z
        s[7] += x * y
        s[8] += x * z
        s[9] += y * z


def motion_signal(coinc: np.ndarray, scanner: Scanner, interval_s: float = INTERVAL_S,
                  tof: bool = True) -> MotionSignal:
    """The signal of a whole run's coincidences."""
    maker = SignalMaker(scanner, interval_s, tof)
    maker.add(coinc)
    return maker.signal()
