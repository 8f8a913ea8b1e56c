"""Decays of a positron emitter (or any gamma emitter) seen by a PET ring.

For each decay: with the nuclide's positron fraction, a positron travels its range and
annihilates into two 511 keV photons, back to back up to a 0.5 deg FWHM acollinearity (2-D
Gaussian); each prompt gamma line is emitted with its yield. :func:`emit` draws these photons for
a block of decays on SIMD lanes; :func:`emulator.physics.lanes.transport` follows them through the
phantom and the ring into crystal deposits, kept with the crystal efficiency.
"""

from __future__ import annotations

import math

import numpy as np

from emulator import records
from emulator.jit import kernel
from emulator.physics import lanes, transport
from emulator.physics.interactions import isotropic_from, normal_pair, positron_offset
from emulator.physics.lanes import EMPTY, PHANTOM, source
from emulator.rng import draw, draw3
from emulator.simd import keep, seed_lanes, sel, tab, unit, unit_open, words

#: Acollinearity: sigma (rad) of each of the two transverse angles, 0.5 deg FWHM.
ACOLLINEARITY_SIGMA = math.radians(0.5) / 2.3548
ANNIHILATION_KEV = 510.998950


@kernel
def emit(pos, positron_fraction, prange, lines, R, src_f, src_i):
    """The photons of the n decays at ``pos`` (n, 3) mm into source slots: photon p of decay d
    (the annihilation pair p = 0, 1, then gamma line q as p = 2 + q) in slot p n + d, drawn on
    the lanes' generators ``R`` (decay d on lane d mod lanes)."""
    n, n_lanes, n_lines = pos.shape[0], R.shape[1], lines.shape[0]
    for base in range(0, n, n_lanes):
        for lane in range(min(n_lanes, n - base)):
            a0, a1, a2, a3 = words(R, lane)
            d = base + lane
            x, y, z = tab(pos, 3 * d), tab(pos, 3 * d + 1), tab(pos, 3 * d + 2)
            b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
            b3, b4, b5, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
            positron = unit(b0) < positron_fraction
            dx, dy, dz = positron_offset(prange, unit(b1), unit_open(b2), unit_open(b3),
                                         unit(b4), unit(b5))
            x, y, z = x + dx, y + dy, z + dz
            b0, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
            b1, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
            ux, uy, uz = isotropic_from(unit(b0), unit(b1))
            # acollinearity: an isotropic 3-D Gaussian of the angular sigma, its component
            # along u removed, is the 2-D Gaussian deviation across u
            b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
            b3, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
            gx, gy = normal_pair(unit_open(b0), unit(b1))
            gz, _ = normal_pair(unit_open(b2), unit(b3))
            gx, gy, gz = ACOLLINEARITY_SIGMA * gx, ACOLLINEARITY_SIGMA * gy, \
                ACOLLINEARITY_SIGMA * gz
            along = gx * ux + gy * uy + gz * uz
            vx, vy, vz = -ux + gx - along * ux, -uy + gy - along * uy, -uz + gz - along * uz
            nrm = 1.0 / math.sqrt(vx * vx + vy * vy + vz * vz)
            start = sel(positron, PHANTOM, EMPTY)
            source(src_f, src_i, d, x, y, z, ux, uy, uz, ANNIHILATION_KEV, start, -1, -1, 0,
                   records.ANNIHILATION)
            source(src_f, src_i, n + d, x, y, z, vx * nrm, vy * nrm, vz * nrm, ANNIHILATION_KEV,
                   start, -1, -1, 1, records.ANNIHILATION)
            keep(R, lane, a0, a1, a2, a3)
        for q in range(n_lines):
            for lane in range(min(n_lanes, n - base)):
                a0, a1, a2, a3 = words(R, lane)
                d = base + lane
                b0, b1, b2, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
                ux, uy, uz = isotropic_from(unit(b1), unit(b2))
                source(src_f, src_i, (2 + q) * n + d, tab(pos, 3 * d), tab(pos, 3 * d + 1),
                       tab(pos, 3 * d + 2), ux, uy, uz, tab(lines, 2 * q),
                       sel(unit(b0) < tab(lines, 2 * q + 1), PHANTOM, EMPTY), -1, -1, 2 + q,
                       records.GAMMA)
                keep(R, lane, a0, a1, a2, a3)


def decays(times: np.ndarray, pos: np.ndarray, first_id: int, start: int,
           positron_fraction: float, prange: tuple[float, float, float], lines: np.ndarray,
           md, ring, table: np.ndarray, efficiency: np.ndarray, dep: np.ndarray, n_dep: int,
           counters: np.ndarray, rs: np.ndarray) -> tuple[int, int]:
    """Simulate the decays at ``times`` (ps) and ``pos`` (n, 3) mm into deposits
    ``dep[n_dep:]`` (``md`` the phantom's medium, ``table`` the
    :func:`emulator.physics.lanes.medium_table`); returns (decays done, n_dep): all of them, or none
    when ``dep`` is too small (``start`` must be 0: a block is done whole)."""
    per = 2 + lines.shape[0]
    work = lanes.scratch(per * times.size)
    seed_lanes(rs, work.R)
    emit(pos, positron_fraction, prange, lines, work.R, work.src_f, work.src_i)
    n = transport.transport(times, first_id, md, tuple(range(md.layers.shape[0])), ring, table,
                            efficiency, work, 0, dep, n_dep, counters, rs)
    if n == -2:
        lanes.grow_log()
    return (times.size, n) if n >= 0 else (start, n_dep)
