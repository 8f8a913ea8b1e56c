"""The crystals' own radioactivity: Lu-176 decays inside lutetium-based scintillators.

Lu-176 beta-decays (99.7 %) to the 597 keV level of Hf-176, which cascades to the ground state by
306.8, 201.8 and 88.3 keV transitions, emitted as gammas with yields 93.6, 78.0 and 14.5 % and
otherwise internally converted (energy left locally). The beta (end point 593 keV) and the
conversion energy are deposited in the decaying crystal; the gammas are followed through the ring,
so they can leave energy in other crystals at the same time (intrinsic coincidences). A gamma whose
line crosses the patient on its way to another module crosses the phantom as a 511 keV photon does
(attenuated and scattered there), which is what makes Lu-176 transmission imaging possible.
"""

from __future__ import annotations

import numpy as np

from emulator import records
from emulator.jit import kernel
from emulator.physics import lanes, transport
from emulator.physics.interactions import isotropic_from
from emulator.physics.lanes import (
    EMPTY,
    MODULE,
    START_K,
    START_M,
    X,
    Y,
    Z,
    source,
)
from emulator.rng import draw, draw3
from emulator.simd import get, keep, put, seed_lanes, sel, tab, unit, vmin, words
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
def emit(ring, beta_icdf, R, src_f, src_i, log_f, log_i):
    """The n Lu-176 decays of a block (n = the slots // 4), on the lanes' generators ``R``
    (decay d on lane d mod lanes): each in a crystal drawn uniformly (all have the same
    volume), at a point uniform in it. Cascade gamma q of decay d goes to source slot
    ``(1 + q) n + d`` (photon 1 + q; empty when converted instead); the local energy (beta and
    converted transitions) is the deposit ``log[d]`` of slot d (photon 0, not transported)."""
    g = ring
    n = src_i.shape[1] // (1 + CASCADE.shape[0])
    n_lanes, nq = R.shape[1], beta_icdf.size - 1
    size_t = g.pitch_t - 2.0 * g.margin_t
    size_a = g.pitch_a - 2.0 * g.margin_a
    for base in range(0, n, n_lanes):
        for lane in range(min(n_lanes, n - base)):
            a0, a1, a2, a3 = words(R, lane)
            d = base + lane
            b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
            b3, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
            m = vmin(np.int64(unit(b0) * g.n_sec), g.n_sec - 1)
            k = vmin(np.int64(unit(b1) * g.n_mr), g.n_mr - 1)
            it = vmin(np.int64(unit(b2) * g.ct), g.ct - 1)
            j = vmin(np.int64(unit(b3) * g.ca), g.ca - 1)
            b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
            b3, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
            s = it * g.pitch_t + g.margin_t + size_t * unit(b0) - g.half_w
            r = g.radius + g.depth * unit(b1)
            c, sn = tab(g.cos_sec, m), tab(g.sin_sec, m)
            x, y = r * c - s * sn, r * sn + s * c
            z = g.z_lo + k * g.mr_pitch + j * g.pitch_a + g.margin_a + size_a * unit(b2)
            u = unit(b3) * nq
            b = np.int64(u)
            local = tab(beta_icdf, b) + (u - b) * (tab(beta_icdf, vmin(b + 1, nq)) -
                                                   tab(beta_icdf, b))
            source(src_f, src_i, d, x, y, z, 0.0, 0.0, 1.0, 0.0, EMPTY, m, k, 0, records.LU176)
            put(log_i, 0, d, d)
            put(log_i, 1, d, (k * g.ca + j) * g.per_ring + m * g.ct + it)
            put(log_i, 2, d, 0)
            put(log_f, 0, d, local)
            put(log_f, 1, d, 0.0)
            keep(R, lane, a0, a1, a2, a3)
        for q in range(CASCADE.shape[0]):           # outside the lanes' loop, which vectorises
            for lane in range(min(n_lanes, n - base)):
                a0, a1, a2, a3 = words(R, lane)
                d = base + lane
                b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
                emitted = unit(b0) < tab(CASCADE, 2 * q + 1)
                put(log_f, 0, d, get(log_f, 0, d) + sel(emitted, 0.0, tab(CASCADE, 2 * q)))
                ux, uy, uz = isotropic_from(unit(b1), unit(b2))
                source(src_f, src_i, (1 + q) * n + d, get(src_f, X, d), get(src_f, Y, d),
                       get(src_f, Z, d), ux, uy, uz, tab(CASCADE, 2 * q),
                       sel(emitted, MODULE, EMPTY), get(src_i, START_M, d),
                       get(src_i, START_K, d), 1 + q, records.LU176)
                keep(R, lane, a0, a1, a2, a3)


def decays(times: np.ndarray, _: None, first_id: int, start: int, ring, table: np.ndarray,
           efficiency: np.ndarray, beta_icdf: np.ndarray, md, dep: np.ndarray, n_dep: int,
           counters: np.ndarray, rs: np.ndarray) -> tuple[int, int]:
    """Lu-176 decays at ``times`` (ps) into deposits ``dep[n_dep:]``, their gammas followed
    through the ring on SIMD lanes (``md`` and ``table`` as for :func:`emulator.physics.pet.decays`;
    these photons start in a crystal and cross the phantom where their line meets it on the way to
    another module); returns (decays done, n_dep) like :func:`emulator.physics.pet.decays`."""
    work = lanes.scratch((1 + CASCADE.shape[0]) * times.size)
    seed_lanes(rs, work.R)
    emit(ring, beta_icdf, work.R, work.src_f, work.src_i, work.log_f, work.log_i)
    n = transport.transport(times, first_id, md, tuple(range(md.layers.shape[0])), ring, table,
                            efficiency, work, times.size, dep, n_dep, counters, rs)
    if n == -2:
        lanes.grow_log()
    return (times.size, n) if n >= 0 else (start, n_dep)
