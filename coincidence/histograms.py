"""The monitor's histograms, accumulated chunk by chunk into arrays the caller owns.

Every function adds to ``out`` (any integer or float dtype), so a DAQ can keep running totals
chunk by chunk; the binned ones return how many entries fell outside their range (not counted).

- energy spectrum: ``out[n_bins]`` over ``[0, e_max_kev)``, bin width ``e_max_kev / n_bins``;
- per-crystal spectra: ``out[n_crystals, n_bins]``, same bins;
- time differences of coincidences: ``out[n_bins]`` over ``[-window, window)`` ps of the
  *signed* difference ``t(higher crystal id) - t(lower crystal id)``, which, unlike ``dt >= 0``,
  is centred on 0 for a centred source with the width of the scanner's CTR;
- crystal hit map: ``out[n_rings, crystals_per_ring]`` (ring = crystal // crystals_per_ring);
- sinogram: ``out[n_angles, n_radial]``; the LOR joining two crystal centres (transaxial x, y) has
  normal angle ``phi`` in ``[0, pi)`` (bin ``phi / pi * n_angles``) and signed distance
  ``s = x cos(phi) + y sin(phi)`` from the axis, binned over ``[-r, r)`` with ``r`` half the
  transaxial field of view. :func:`sinogram_shape` gives the default size: ``crystals_per_ring
  // 2`` angles and radial bins (bedside-brain: 128 x 128, 1.9 mm radial bins).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hw.dtypes import COINC_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError


@numba.njit(nogil=True, cache=True, inline="always")
def energy_bin(e, e_max, n_bins):
    """The bin of ``e`` over [0, e_max), or -1 (also for NaN)."""
    if e >= 0 and e < e_max:
        return min(int(e * (n_bins / e_max)), n_bins - 1)
    return -1


@numba.njit(nogil=True, cache=True)
def _spectrum(energy, e_max, out):
    outside = 0
    for i in range(energy.size):
        b = energy_bin(energy[i], e_max, out.size)
        if b >= 0:
            out[b] += 1
        else:
            outside += 1
    return outside


@numba.njit(nogil=True, cache=True)
def _crystal_spectra(crystal, energy, e_max, out):
    outside = 0
    for i in range(energy.size):
        b = energy_bin(energy[i], e_max, out.shape[1])
        if b >= 0:
            out[crystal[i], b] += 1
        else:
            outside += 1
    return outside


def accumulate_energy(energy: np.ndarray, out: np.ndarray, e_max_kev: float) -> int:
    """Add energies (keV) to the spectrum ``out[n_bins]`` over ``[0, e_max_kev)``."""
    _check_out(out, 1, "energy spectrum")
    return _spectrum(np.asarray(energy), _positive(e_max_kev), out)


def accumulate_crystal_energy(crystal: np.ndarray, energy: np.ndarray, out: np.ndarray,
                              e_max_kev: float) -> int:
    """Add singles to per-crystal spectra ``out[n_crystals, n_bins]`` over ``[0, e_max_kev)``."""
    _check_out(out, 2, "per-crystal spectra")
    crystal = _checked_crystals(crystal, out.shape[0])
    return _crystal_spectra(crystal, np.asarray(energy), _positive(e_max_kev), out)


@numba.njit(nogil=True, cache=True)
def _dt(crystal_a, crystal_b, dt, delayed, which, window, out):
    n_bins = out.size
    scale = n_bins / (2.0 * window)
    outside = 0
    for i in range(dt.size):
        if which >= 0 and delayed[i] != which:
            continue
        d = dt[i] if crystal_a[i] < crystal_b[i] else -dt[i]
        if -window <= d < window:
            out[min(int((d + window) * scale), n_bins - 1)] += 1
        else:
            outside += 1
    return outside


def accumulate_dt(coinc: np.ndarray, out: np.ndarray, window_ps: int, delayed: int = 0) -> int:
    """Add the signed time differences (ps) of prompts (``delayed=0``), delayeds (1) or both
    (-1) to ``out[n_bins]`` over ``[-window_ps, window_ps)``."""
    _check_out(out, 1, "time-difference histogram")
    c = _coincidences(coinc)
    return _dt(c["crystal_a"], c["crystal_b"], c["dt"], c["delayed"], int(delayed),
               float(_positive(window_ps)), out)


@numba.njit(nogil=True, cache=True)
def _hits(crystal, out):
    per_ring = out.shape[1]
    for i in range(crystal.size):
        c = crystal[i]
        out[c // per_ring, c % per_ring] += 1


def accumulate_hit_map(crystal: np.ndarray, out: np.ndarray) -> None:
    """Count crystal ids (singles, or both ends of coincidences) in ``out[n_rings,
    crystals_per_ring]``. Crystal ids outside it raise :class:`hw.UserError`."""
    _check_out(out, 2, "hit map")
    _hits(_checked_crystals(crystal, out.size), out)


def sinogram_shape(scanner: Scanner) -> tuple[int, int]:
    """Default ``(n_angles, n_radial)``: half the crystals of a ring each."""
    n = max(scanner.crystals_per_ring // 2, 1)
    return n, n


@numba.njit(nogil=True, cache=True)
def _sinogram(crystal_a, crystal_b, delayed, which, x, y, r_max, out):
    n_angles, n_radial = out.shape
    outside = 0
    for i in range(crystal_a.size):
        if which >= 0 and delayed[i] != which:
            continue
        a, b = crystal_a[i], crystal_b[i]
        phi = math.atan2(y[b] - y[a], x[b] - x[a]) + 0.5 * math.pi
        if phi >= math.pi:
            phi -= math.pi
        elif phi < 0:
            phi += math.pi
        s = x[a] * math.cos(phi) + y[a] * math.sin(phi)
        if -r_max <= s < r_max:
            k = min(int(phi / math.pi * n_angles), n_angles - 1)
            out[k, min(int((s + r_max) / (2 * r_max) * n_radial), n_radial - 1)] += 1
        else:
            outside += 1
    return outside


def accumulate_sinogram(coinc: np.ndarray, scanner: Scanner, out: np.ndarray,
                        delayed: int = 0) -> int:
    """Add the transaxial LORs of prompts (``delayed=0``), delayeds (1) or both (-1) to
    ``out[n_angles, n_radial]`` (see the module docstring for the binning)."""
    _check_out(out, 2, "sinogram")
    c = _coincidences(coinc)
    for name in ("crystal_a", "crystal_b"):
        _checked_crystals(c[name], scanner.n_crystals)
    xy = np.ascontiguousarray(scanner.crystal_centres[:, :2].T)
    return _sinogram(c["crystal_a"], c["crystal_b"], c["delayed"], int(delayed), xy[0], xy[1],
                     scanner.transaxial_fov_mm / 2, out)


def _check_out(out: np.ndarray, ndim: int, what: str) -> None:
    if not isinstance(out, np.ndarray) or out.ndim != ndim or out.size == 0:
        raise UserError(f"{what}: out must be a non-empty {ndim}-D numpy array, got "
                        f"{getattr(out, 'shape', type(out).__name__)}")


def _positive(value: float) -> float:
    if not (isinstance(value, int | float | np.integer | np.floating) and value > 0):
        raise UserError(f"histogram range must be a positive number, got {value!r}")
    return float(value)


def _checked_crystals(crystal: np.ndarray, n: int) -> np.ndarray:
    crystal = np.asarray(crystal)
    outside = np.flatnonzero((crystal < 0) | (crystal >= n))
    if outside.size:
        raise UserError(f"crystal id {int(crystal[outside[0]])} is outside the histogram's "
                        f"0..{n - 1}")
    return crystal


def _coincidences(coinc: np.ndarray) -> np.ndarray:
    if not isinstance(coinc, np.ndarray) or coinc.dtype != COINC_DTYPE:
        raise UserError(f"coincidences must be an array of hw.COINC_DTYPE, got "
                        f"{getattr(coinc, 'dtype', type(coinc).__name__)}")
    return coinc
