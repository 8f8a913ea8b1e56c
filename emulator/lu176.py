"""The crystals' own radioactivity: Lu-176 decays inside lutetium-based scintillators.

Lu-176 beta-decays (99.7 %) to the 597 keV level of Hf-176, which cascades to the ground state by
306.8, 201.8 and 88.3 keV transitions, emitted as gammas with yields 93.6, 78.0 and 14.5 % and
otherwise internally converted (energy left locally). The beta (end point 593 keV) and the
conversion energy are deposited in the decaying crystal; the gammas are followed through the ring,
so they can leave energy in other crystals at the same time (intrinsic coincidences).
"""

from __future__ import annotations

import numpy as np

from emulator import records
from emulator.jit import kernel
from emulator.pet import write_hits
from emulator.physics import isotropic
from emulator.ring import MAX_HITS, track
from emulator.rng import uniform
from hw.scanner import Scanner

BETA_END_POINT_KEV = 593.0
#: (energy keV, gamma yield per decay) of the cascade, top down.
CASCADE = np.array([[306.8, 0.936], [201.8, 0.780], [88.3, 0.145]])
_Z_DAUGHTER = 72
_ELECTRON_KEV = 510.998950
_ALPHA = 1.0 / 137.036


def beta_inverse_cdf(n: int = 4096) -> np.ndarray:
    """Kinetic energies (keV) at n equally spaced quantiles of the allowed beta spectrum
    N(T) ~ F(Z, W) p W (Q - T)^2 with the non-relativistic Fermi function."""
    t = np.linspace(0.0, BETA_END_POINT_KEV, 20001)[1:-1]
    w = t + _ELECTRON_KEV
    p = np.sqrt(w * w - _ELECTRON_KEV ** 2)
    eta = _Z_DAUGHTER * _ALPHA * w / p
    fermi = 2 * np.pi * eta / (1 - np.exp(-2 * np.pi * eta))
    density = fermi * p * w * (BETA_END_POINT_KEV - t) ** 2
    cdf = np.concatenate([[0.0], np.cumsum(density)])
    cdf /= cdf[-1]
    grid = np.concatenate([[0.0], t])
    return np.interp(np.linspace(0.0, 1.0, n), cdf, grid)


def crystal_volume_cm3(scanner: Scanner) -> float:
    """Volume of one crystal (cm3)."""
    a, b, c = scanner.crystal_size_mm
    return a * b * c * 1e-3


@kernel
def decays(times, crystals, first_id, start, ring, crystal, efficiency, beta_icdf, dep, n_dep,
           counters, rs, hits):
    """Lu-176 decays ``start..`` at ``times`` (ps) in ``crystals`` into deposits ``dep[n_dep:]``;
    returns (next decay, n_dep) like :func:`emulator.pet.decays`."""
    g = ring
    size_t = g.pitch_t - 2.0 * g.margin_t
    size_a = g.pitch_a - 2.0 * g.margin_a
    local_hit = np.zeros((1, 3))
    nq = beta_icdf.size - 1
    for i in range(start, times.size):
        if n_dep + (1 + CASCADE.shape[0]) * MAX_HITS > dep.size:
            return i, n_dep
        c = crystals[i]
        row, tang = c // g.per_ring, c % g.per_ring
        m, it = tang // g.ct, tang % g.ct
        k, j = row // g.ca, row % g.ca
        s = it * g.pitch_t + g.margin_t + size_t * uniform(rs) - g.half_w
        d = g.radius + g.depth * uniform(rs)
        x = d * g.cos_sec[m] - s * g.sin_sec[m]
        y = d * g.sin_sec[m] + s * g.cos_sec[m]
        z = g.mr_z0[k] + j * g.pitch_a + g.margin_a + size_a * uniform(rs)
        u = uniform(rs) * nq
        b = int(u)
        local = beta_icdf[b] + (u - b) * (beta_icdf[min(b + 1, nq)] - beta_icdf[b])
        decay = first_id + i
        t0 = times[i]
        local_hit[0, 0] = c
        local_hit[0, 1] = local
        first = n_dep
        n_dep = write_hits(rs, dep, n_dep, 1, local_hit, t0, decay, 0, records.LU176, 0, x, y, z,
                           efficiency, counters)
        kept = n_dep > first
        for q in range(CASCADE.shape[0]):
            if uniform(rs) >= CASCADE[q, 1]:
                local += CASCADE[q, 0]
                continue
            counters[records.PHOTONS] += 1
            ux, uy, uz = isotropic(rs)
            n_hits = track(rs, g, crystal, x, y, z, ux, uy, uz, CASCADE[q, 0], 0.0, m, k, hits)
            if n_hits == 0:
                counters[records.ESCAPED] += 1
            n_dep = write_hits(rs, dep, n_dep, n_hits, hits, t0, decay, 1 + q, records.LU176, 0, x,
                               y, z, efficiency, counters)
        if kept:
            dep[first].energy = local
    return times.size, n_dep


@kernel
def crystals_of(rs, n, n_crystals):
    """``n`` crystals drawn uniformly (all crystals have the same volume)."""
    out = np.empty(n, np.int32)
    for i in range(n):
        out[i] = min(int(uniform(rs) * n_crystals), n_crystals - 1)
    return out

