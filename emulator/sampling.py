"""Where and when decays happen: decay times of a decaying source, positions in a phantom.

Decay times of a source of activity A(t) = A0 exp(-lambda t) follow the non-homogeneous Poisson
process: unit-rate arrivals in the cumulative intensity, mapped back through its inverse, so the
physical decay over the run is exact and the times come out sorted.
"""

from __future__ import annotations

import math

import numpy as np

from emulator.jit import inline, kernel
from emulator.phantoms.shapes import CYLINDER, from_unit, row_contains
from emulator.rng import exponential, uniform


@kernel
def decay_times(rs, t0_ps, length_ps, rate0_bq, lam_per_s, out):
    """Fill ``out`` with the sorted decay times (int64 ps) in [t0, t0 + length) of a source
    whose activity is ``rate0_bq`` at t0 and decays with ``lam_per_s``; returns their number
    (at most ``out.size``)."""
    if rate0_bq <= 0.0:
        return 0
    length_s = length_ps * 1e-12
    cum = 0.0
    n = 0
    while n < out.size:
        cum += exponential(rs)
        if lam_per_s > 0.0:
            arg = lam_per_s * cum / rate0_bq
            if arg >= 1.0:
                break
            tau = -math.log1p(-arg) / lam_per_s
        else:
            tau = cum / rate0_bq
        if tau >= length_s:
            break
        out[n] = t0_ps + int(tau * 1e12)
        n += 1
    return n


@inline
def _in_unit(rs, kind):
    """A point uniform in the unit ball (ellipsoid) or unit cylinder."""
    while True:
        x = 2.0 * uniform(rs) - 1.0
        y = 2.0 * uniform(rs) - 1.0
        if kind == CYLINDER:
            if x * x + y * y <= 1.0:
                return x, y, 2.0 * uniform(rs) - 1.0
        else:
            z = 2.0 * uniform(rs) - 1.0
            if x * x + y * y + z * z <= 1.0:
                return x, y, z


@inline
def _pick(rs, cdf):
    """An index drawn with the probabilities of the cumulative ``cdf`` (last entry 1)."""
    u = uniform(rs)
    n = cdf.size
    if n <= 16:
        for i in range(n - 1):
            if u < cdf[i]:
                return i
        return n - 1
    return min(np.searchsorted(cdf, u, side="right"), n - 1)


@kernel
def positions(rs, pk, out):
    """Fill ``out`` (n, 3) with decay positions (mm) drawn from the packed phantom ``pk``."""
    for i in range(out.shape[0]):
        s = _pick(rs, pk.src_cdf)
        kind = pk.src_kind[s]
        if kind == 0:
            out[i, 0], out[i, 1], out[i, 2] = pk.src_a[s, 0], pk.src_a[s, 1], pk.src_a[s, 2]
            continue
        if kind == 1:
            f = uniform(rs)
            for c in range(3):
                out[i, c] = pk.src_a[s, c] + f * (pk.src_b[s, c] - pk.src_a[s, c])
            continue
        while True:
            v = _pick(rs, pk.vol_cdf)
            r = pk.vol_region[v]
            qx, qy, qz = _in_unit(rs, pk.shapes[r, 0])
            x, y, z = from_unit(pk.shapes, r, qx, qy, qz)
            covered = False
            for q in range(pk.over_ptr[v], pk.over_ptr[v + 1]):
                if row_contains(pk.shapes, pk.over_idx[q], x, y, z):
                    covered = True
                    break
            if not covered:
                out[i, 0], out[i, 1], out[i, 2] = x, y, z
                break
