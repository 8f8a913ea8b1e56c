"""Where and when decays happen: decay times of a decaying source, positions in a phantom.

Decay times of a source of activity A(t) = A0 exp(-lambda t) follow the non-homogeneous Poisson
process: unit-rate arrivals in the cumulative intensity, mapped back through its inverse, so the
physical decay over the run is exact and the times come out sorted.
"""

from __future__ import annotations

import math

from emulator.jit import inline, kernel
from emulator.phantoms.shapes import row_contains
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
            if arg < 1e-4:     # -log1p(-x) to double precision without a logarithm
                tau = arg * (1.0 + arg * (0.5 + arg * (1.0 / 3.0 + 0.25 * arg))) / lam_per_s
            else:
                tau = -math.log1p(-arg) / lam_per_s
        else:
            tau = cum / rate0_bq
        if tau >= length_s:
            break
        out[n] = t0_ps + int(tau * 1e12)
        n += 1
    return n


@inline
def _pick(rs, cdf):
    """An index drawn with the probabilities of the cumulative ``cdf`` (last entry 1)."""
    u = uniform(rs)
    n = cdf.size
    for i in range(n - 1):
        if u < cdf[i]:
            return i
    return n - 1


@inline
def _in_regions(rs, shapes, g):
    """A point (mm) drawn with the regions' painted concentration (see
    :mod:`emulator.phantoms.voxels`)."""
    n = g.voxels.size
    while True:
        u = uniform(rs) * n
        v = int(u)
        if u - v >= g.voxels[v].prob:
            v = g.voxels[v].alias
        vx = g.voxels[v]
        x = vx.x + g.size[0] * uniform(rs)
        y = vx.y + g.size[1] * uniform(rs)
        z = vx.z + g.size[2] * uniform(rs)
        r = vx.first
        if r < 0:
            return x, y, z
        a = vx.base
        while g.regions[r] >= 0:
            q = g.regions[r]
            if row_contains(shapes, q, x, y, z):
                a = g.activity[q]
                break
            r += 1
        if uniform(rs) * vx.majorant < a:
            return x, y, z


@inline
def _in_voxels(rs, vs):
    """A point (mm) drawn from a voxel phantom's activity (:mod:`emulator.phantoms.voxelpack`):
    a voxel by its activity, a point uniform in it."""
    n = vs.prob.size
    u = uniform(rs) * n
    v = int(u)
    if u - v >= vs.prob[v]:
        v = vs.alias[v]
    f = vs.index[v]
    nj, nk = vs.shape[1], vs.shape[2]
    i = f // (nj * nk) + uniform(rs) - 0.5
    j = (f // nk) % nj + uniform(rs) - 0.5
    k = f % nk + uniform(rs) - 0.5
    a = vs.affine
    return (a[0] * i + a[1] * j + a[2] * k + a[3], a[4] * i + a[5] * j + a[6] * k + a[7],
            a[8] * i + a[9] * j + a[10] * k + a[11])


@kernel
def picks(rs, cdf, out):
    """Fill ``out`` with indices drawn with the probabilities of the cumulative ``cdf``."""
    for i in range(out.size):
        out[i] = _pick(rs, cdf)


@kernel
def positions(rs, pk, out):
    """Fill ``out`` (n, 3) with decay positions (mm) drawn from the packed phantom ``pk``."""
    for i in range(out.shape[0]):
        s = _pick(rs, pk.src_cdf)
        kind = pk.src_kind[s]
        if kind == 0:
            out[i, 0], out[i, 1], out[i, 2] = pk.src_a[s, 0], pk.src_a[s, 1], pk.src_a[s, 2]
        elif kind == 1:
            f = uniform(rs)
            for c in range(3):
                out[i, c] = pk.src_a[s, c] + f * (pk.src_b[s, c] - pk.src_a[s, c])
        elif kind == 2:
            out[i, 0], out[i, 1], out[i, 2] = _in_regions(rs, pk.shapes, pk.grid)
        else:
            out[i, 0], out[i, 1], out[i, 2] = _in_voxels(rs, pk.vox)
