"""SPECT: energy windows, the triple-energy-window (TEW) scatter estimate, projection binning.

No coincidences in SPECT: each single is energy-windowed and counted in the projection of its head
at the gantry view of its time. Step-and-shoot acquisition: view ``k`` covers ``[start + k T,
start + (k + 1) T)`` with ``T`` the view duration (ps); head ``h`` at view ``k`` sits at gantry
angle ``scanner.spect.view_angles_deg(h)[k]``. Pixels: ``crystal = head * rows * columns + row *
columns + column`` (``hw.scanner``). Projections are ``[window, head, view, row, column]`` with
the windows in the order (lower scatter, photopeak, upper scatter). Energy windows are half-open,
``lo <= E < hi`` (keV), so adjacent windows never count a single twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from hw.errors import UserError
from hw.scanner import Scanner, SpectGeometry

#: Window order in projection arrays.
LOWER, PEAK, UPPER = 0, 1, 2


@dataclass(frozen=True)
class EnergyWindows:
    """The photopeak window and the scatter windows adjacent to it, ``(lo, hi)`` keV each."""

    lower: tuple[float, float]
    peak: tuple[float, float]
    upper: tuple[float, float]

    @property
    def edges_kev(self) -> np.ndarray:
        """(3, 2) float64: ``[lo, hi)`` of the lower, photopeak and upper windows."""
        return np.array([self.lower, self.peak, self.upper], np.float64)

    @property
    def widths_kev(self) -> np.ndarray:
        """(3,) window widths (keV)."""
        e = self.edges_kev
        return e[:, 1] - e[:, 0]


def energy_windows(photopeak_kev: float, peak_fraction: float = 0.20,
                   scatter_fraction: float = 0.07) -> EnergyWindows:
    """A photopeak window of ``peak_fraction * E0`` centred on ``E0`` and two scatter windows of
    ``scatter_fraction * E0`` just below and above it (e.g. Tc-99m: 126-154 keV, 116.2-126 and
    154-163.8 keV)."""
    e0, fp, fs = (float(v) for v in (photopeak_kev, peak_fraction, scatter_fraction))
    if not (math.isfinite(e0) and e0 > 0):
        raise UserError(f"photopeak energy must be a positive number of keV, got {photopeak_kev!r}")
    if not 0 < fp < 2:
        raise UserError(f"photopeak window fraction must be in (0, 2), got {peak_fraction!r}")
    lo, hi = e0 * (1 - fp / 2), e0 * (1 + fp / 2)
    if not (fs > 0 and lo - fs * e0 >= 0):
        raise UserError(f"scatter window fraction must be > 0 and leave the lower window above "
                        f"0 keV, got {scatter_fraction!r}")
    return EnergyWindows((lo - fs * e0, lo), (lo, hi), (hi, hi + fs * e0))


def tew_scatter(projections: np.ndarray, windows: EnergyWindows) -> np.ndarray:
    """Triple-energy-window scatter estimate in the photopeak window, bin by bin (float64):
    ``S = (C_low / W_low + C_up / W_up) * W_peak / 2`` from projections ``[window, ...]``."""
    p = np.asarray(projections)
    if p.ndim < 1 or p.shape[0] != 3:
        raise UserError(f"projections must have the 3 energy windows first, got shape {p.shape}")
    w_low, w_peak, w_up = windows.widths_kev
    return (p[LOWER] / w_low + p[UPPER] / w_up) * (w_peak / 2)


def projection_shape(scanner: Scanner) -> tuple[int, int, int, int, int]:
    """``(3 windows, heads, views, rows, columns)`` for a SPECT scanner."""
    s = _geometry(scanner)
    return (3, s.n_heads, s.views_per_head, s.rows, s.columns)


def _geometry(scanner: Scanner) -> SpectGeometry:
    if scanner.kind != "spect" or scanner.spect is None:
        raise UserError(f"scanner '{scanner.name}' is not a SPECT scanner")
    return scanner.spect


@numba.njit(nogil=True, cache=True)
def _bin(t, crystal, energy, edges, start, view_ps, out):
    """Add each single (crystal ids already checked) to ``out[window, head, view, row,
    column]``."""
    n_win, _, n_views, rows, columns = out.shape
    pixels = rows * columns
    for i in range(t.size):
        dt = t[i] - start
        if dt < 0 or dt // view_ps >= n_views:
            continue
        c = crystal[i]
        e = energy[i]
        for w in range(n_win):
            if edges[w, 0] <= e < edges[w, 1]:
                out[w, c // pixels, dt // view_ps, (c % pixels) // columns, c % columns] += 1


def bin_projections(singles: np.ndarray, scanner: Scanner, windows: EnergyWindows,
                    view_duration_ps: int, *, start_ps: int = 0,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Count windowed singles into projections ``[window, head, view, row, column]``.

    ``out`` (integer array of :func:`projection_shape`) is added to, so a DAQ can accumulate
    chunk by chunk; a new int64 array is made when it is None. Singles before ``start_ps`` or
    after the last view are not counted.
    """
    shape = projection_shape(scanner)
    if not (isinstance(view_duration_ps, int | np.integer) and view_duration_ps > 0):
        raise UserError(f"view duration must be a positive integer number of ps, got "
                        f"{view_duration_ps!r}")
    if out is None:
        out = np.zeros(shape, np.int64)
    elif out.shape != shape or not np.issubdtype(out.dtype, np.integer):
        raise UserError(f"projection array must be integer with shape {shape}, got "
                        f"{out.dtype} {out.shape}")
    crystal = singles["crystal"]
    outside = np.flatnonzero((crystal < 0) | (crystal >= scanner.n_crystals))
    if outside.size:
        i = int(outside[0])
        raise UserError(f"single {i} has crystal id {int(crystal[i])}, outside "
                        f"0..{scanner.n_crystals - 1} of scanner '{scanner.name}'")
    _bin(singles["t"], crystal, singles["energy"], windows.edges_kev, int(start_ps),
         int(view_duration_ps), out)
    return out
