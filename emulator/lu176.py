"""The crystals' own radioactivity: Lu-176 decays inside lutetium-based scintillators.

Lu-176 beta-decays (99.7 %) to the 597 keV level of Hf-176, which cascades to the ground state by
306.8, 201.8 and 88.3 keV transitions, emitted as gammas with yields 93.6, 78.0 and 14.5 % and
otherwise internally converted (energy left locally). The beta (end point 593 keV) and the
conversion energy are deposited in the decaying crystal; the gammas are followed through the ring,
so they can leave energy in other crystals at the same time (intrinsic coincidences).
"""

from __future__ import annotations

import numpy as np

from emulator import lanes, records, transport
from emulator.jit import kernel
from emulator.lanes import (
    EMPTY,
    KIND,
    MODULE,
    PHOTON,
    START,
    START_K,
    START_M,
    UX,
    UY,
    UZ,
    E,
    X,
    Y,
    Z,
)
from emulator.physics import isotropic
from emulator.rng import uniform
from emulator.simd import seed_lanes
from emulator.transport import kept, record
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
def emit(times, crystals, first_id, ring, efficiency, beta_icdf, src_f, src_i, dep, n_dep,
         counters, rs):
    """Lu-176 decays at ``times`` (ps) in ``crystals``: the local energy (beta and converted
    transitions) as a deposit in the decaying crystal (photon 0, kept with the crystal
    ``efficiency``), cascade gamma q of decay d into the source slot ``q n + d`` (photon 1 + q;
    empty when not emitted). ``dep`` must have room for one deposit a decay; returns the new n_dep."""
    g = ring
    size_t = g.pitch_t - 2.0 * g.margin_t
    size_a = g.pitch_a - 2.0 * g.margin_a
    nq = beta_icdf.size - 1
    for i in range(times.size):
        c = crystals[i]
        row, tang = c // g.per_ring, c % g.per_ring
        m, it = tang // g.ct, tang % g.ct
        k, j = row // g.ca, row % g.ca
        s = it * g.pitch_t + g.margin_t + size_t * uniform(rs) - g.half_w
        d = g.radius + g.depth * uniform(rs)
        x = d * g.cos_sec[m] - s * g.sin_sec[m]
        y = d * g.sin_sec[m] + s * g.cos_sec[m]
        z = g.z_lo + k * g.mr_pitch + j * g.pitch_a + g.margin_a + size_a * uniform(rs)
        u = uniform(rs) * nq
        b = int(u)
        local = beta_icdf[b] + (u - b) * (beta_icdf[min(b + 1, nq)] - beta_icdf[b])
        for q in range(CASCADE.shape[0]):
            slot = q * times.size + i
            if uniform(rs) >= CASCADE[q, 1]:
                local += CASCADE[q, 0]
                src_i[START, slot] = EMPTY
                continue
            src_f[X, slot], src_f[Y, slot], src_f[Z, slot] = x, y, z
            src_f[UX, slot], src_f[UY, slot], src_f[UZ, slot] = isotropic(rs)
            src_f[E, slot] = CASCADE[q, 0]
            src_i[START, slot], src_i[START_M, slot], src_i[START_K, slot] = MODULE, m, k
            src_i[PHOTON, slot], src_i[KIND, slot] = 1 + q, records.LU176
        if kept(rs, efficiency, counters):
            n_dep = record(dep, n_dep, times[i], c, local, first_id + i, 0, records.LU176, 0, x, y,
                           z)
    return n_dep


def decays(times: np.ndarray, crystals: np.ndarray, first_id: int, start: int, ring,
           table: np.ndarray, efficiency: float, beta_icdf: np.ndarray, md,
           dep: np.ndarray, n_dep: int, counters: np.ndarray, rs: np.ndarray) -> tuple[int, int]:
    """Lu-176 decays at ``times`` (ps) in ``crystals`` into deposits ``dep[n_dep:]``, their
    gammas followed through the ring on SIMD lanes (``md`` and ``table`` as for
    :func:`emulator.pet.decays`; these photons start in a module and never enter the phantom);
    returns (decays done, n_dep) like :func:`emulator.pet.decays`."""
    per = CASCADE.shape[0]
    if n_dep + times.size > dep.size:
        return start, n_dep
    work = lanes.scratch(per * times.size)
    n_dep = emit(times, crystals, first_id, ring, efficiency, beta_icdf, work.src_f, work.src_i,
                 dep, n_dep, counters, rs)
    seed_lanes(rs, work.R)
    n = transport.transport(times, first_id, md, tuple(range(md.layers.shape[0])), ring, table,
                            efficiency, work, dep, n_dep, counters, rs)
    if n == -2:
        lanes.grow_log()
    return (times.size, n) if n >= 0 else (start, n_dep)


@kernel
def crystals_of(rs, n, n_crystals):
    """``n`` crystals drawn uniformly (all crystals have the same volume)."""
    out = np.empty(n, np.int32)
    for i in range(n):
        out[i] = min(int(uniform(rs) * n_crystals), n_crystals - 1)
    return out

