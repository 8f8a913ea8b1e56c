"""SPECT: energy windows, the triple-energy-window (TEW) scatter estimate, projection binning.

No coincidences in SPECT: each single is energy-windowed and counted in the projection of its head
at the gantry view of its time. Step-and-shoot acquisition: view ``k`` covers ``[start + k T,
start + (k + 1) T)`` with ``T`` the view duration (ps); head ``h`` at view ``k`` sits at gantry
angle ``scanner.spect.view_angles_deg(h)[k]``. Pixels: ``crystal = head * rows * columns + row *
columns + column`` (``hw.scanner``). Projections are ``[window, head, view, row, column]`` with
the windows in the order (lower scatter, photopeak, upper scatter), one such triple per photopeak
(Lu-177: 208 keV, then 113 keV; window ``3 k + PEAK`` is photopeak k's). Energy windows are
half-open, ``lo <= E < hi`` (keV), so adjacent windows never count a single twice; the triples
of different photopeaks must not overlap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numba
import numpy as np

from hw.scanner import Scanner, SpectGeometry
from infra.errors import UserError

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


def edges_of(windows: EnergyWindows | tuple[EnergyWindows, ...]) -> np.ndarray:
    """(3 n, 2) float64 ``[lo, hi)`` of the windows of one or more photopeaks, in order; a
    one-line error where two photopeaks' windows overlap."""
    triples = (windows,) if isinstance(windows, EnergyWindows) else tuple(windows)
    if not triples:
        raise UserError("no photopeak windows")
    ranges = sorted((t.lower[0], t.upper[1]) for t in triples)
    for (lo0, hi0), (lo1, hi1) in itertools.pairwise(ranges):
        if lo1 < hi0:
            raise UserError(f"photopeak windows overlap: {lo0:.1f}-{hi0:.1f} keV and "
                            f"{lo1:.1f}-{hi1:.1f} keV (scatter windows included)")
    return np.concatenate([t.edges_kev for t in triples])


def triple(edges_kev: np.ndarray, k: int) -> EnergyWindows:
    """Photopeak ``k``'s windows from the (3 n, 2) edges of :func:`edges_of`."""
    rows = np.asarray(edges_kev, np.float64)[3 * k:3 * k + 3]
    if rows.shape != (3, 2):
        raise UserError(f"no photopeak {k} in {len(edges_kev) // 3} photopeak window(s)")
    return EnergyWindows(*(tuple(float(v) for v in row) for row in rows))


#: Smoothing of the TEW scatter estimate (Gaussian sigma): in pixels across a view, in views
#: along a head's rotation. The scatter windows hold a few counts per pixel or fewer; unsmoothed,
#: their noise in the model's additive term biases EM high (1.4x on a Lu-177 cylinder).
SCATTER_SIGMA_PX, SCATTER_SIGMA_VIEWS = 3.0, 2.0


def select_photopeak(edges_kev: np.ndarray, photopeak_kev: float | None) -> int:
    """Which photopeak of the (3 n, 2) window edges to reconstruct: the one whose window holds
    ``photopeak_kev`` (None: the first, the strongest)."""
    if photopeak_kev is None:
        return 0
    peaks = np.asarray(edges_kev, np.float64)[PEAK::3]
    hit = np.flatnonzero((peaks[:, 0] <= photopeak_kev) & (photopeak_kev < peaks[:, 1]))
    if hit.size == 0:
        have = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in peaks)
        raise UserError(f"no photopeak window holds {photopeak_kev:g} keV: this run has {have} keV")
    return int(hit[0])


def smooth_scatter(scatter: np.ndarray, sigma_px: float = SCATTER_SIGMA_PX,
                   sigma_views: float = SCATTER_SIGMA_VIEWS) -> np.ndarray:
    """A scatter estimate ``[..., view, row, column]`` smoothed by a separable Gaussian (each
    output a weighted mean of its neighbours: no loss at the edges; counts kept to rounding)."""
    out = np.asarray(scatter, np.float64)
    for axis, sigma in ((-3, sigma_views), (-2, sigma_px), (-1, sigma_px)):
        if sigma <= 0:
            continue
        i = np.arange(out.shape[axis])
        d = i[:, None] - i[None, :]
        weights = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= math.ceil(3 * sigma))
        weights /= weights.sum(axis=1, keepdims=True)
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis % out.ndim])), 0, axis)
    return out


def projection_shape(scanner: Scanner, photopeaks: int = 1) -> tuple[int, int, int, int, int]:
    """``(3 windows x photopeaks, heads, views, rows, columns)`` for a SPECT scanner."""
    s = _geometry(scanner)
    return (3 * photopeaks, s.n_heads, s.views_per_head, s.rows, s.columns)


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


def bin_projections(singles: np.ndarray, scanner: Scanner,
                    windows: EnergyWindows | tuple[EnergyWindows, ...],
                    view_duration_ps: int, *, start_ps: int = 0,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Count windowed singles into projections ``[window, head, view, row, column]`` (the
    windows of one photopeak, or of several in turn).

    ``out`` (integer array of :func:`projection_shape`) is added to, so a DAQ can accumulate
    chunk by chunk; a new int64 array is made when it is None. Singles before ``start_ps`` or
    after the last view are not counted.
    """
    edges = edges_of(windows)
    shape = projection_shape(scanner, len(edges) // 3)
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
    _bin(singles["t"], crystal, singles["energy"], edges, int(start_ps),
         int(view_duration_ps), out)
    return out
