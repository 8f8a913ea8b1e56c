"""Decays of a positron emitter (or any gamma emitter) seen by a PET ring: numba kernels.

For each decay: with the nuclide's positron fraction, a positron travels its range and
annihilates into two 511 keV photons, back to back up to a 0.5 deg FWHM acollinearity (2-D
Gaussian); each prompt gamma line is emitted with its yield. Every photon flies through the
phantom (:mod:`emulator.flight`) and into the ring (:mod:`emulator.ring`); each crystal it leaves
energy in becomes a deposit, kept with the crystal efficiency.
"""

from __future__ import annotations

import math

import numpy as np

from emulator import records
from emulator.flight import fly
from emulator.jit import inline, kernel
from emulator.physics import isotropic, positron_path
from emulator.ring import MAX_HITS, TIME_PER_MM_PS, track
from emulator.rng import normal, uniform

#: Acollinearity: sigma (rad) of each of the two transverse angles, 0.5 deg FWHM.
ACOLLINEARITY_SIGMA = math.radians(0.5) / 2.3548
ANNIHILATION_KEV = 510.998950


def work_arrays() -> tuple[np.ndarray]:
    """Scratch of the photon kernels (a photon's crystal hits), allocated once per call."""
    return (np.empty((MAX_HITS, 3)),)


@inline
def write_hits(rs, dep, n_dep, n_hits, hits, t0, decay, photon, kind, scatters, x, y, z, efficiency,
               counters):
    """Append a photon's crystal deposits to ``dep``, each kept with the crystal efficiency."""
    for q in range(n_hits):
        counters[records.DEPOSITS] += 1
        if uniform(rs) >= efficiency:
            counters[records.REJECTED] += 1
            continue
        r = dep[n_dep]
        r.t = t0 + int(hits[q, 2] * TIME_PER_MM_PS + 0.5)
        r.crystal = int(hits[q, 0])
        r.energy = hits[q, 1]
        r.decay = decay
        r.photon = photon
        r.kind = kind
        r.scatters = min(scatters, 255)
        r.x, r.y, r.z = x, y, z
        n_dep += 1
    return n_dep


@inline
def _photon(rs, md, ring, crystal, efficiency, px, py, pz, ux, uy, uz, energy, t0, decay, photon,
            kind, dep, n_dep, counters, hits):
    counters[records.PHOTONS] += 1
    energy, qx, qy, qz, ux, uy, uz, path, scatters = fly(rs, md, px, py, pz, ux, uy, uz, energy)
    if scatters:
        counters[records.SCATTERED] += 1
    if energy <= 0.0:
        counters[records.ABSORBED] += 1
        return n_dep
    n_hits = track(rs, ring, crystal, qx, qy, qz, ux, uy, uz, energy, path, -1, -1, hits)
    if n_hits == 0:
        counters[records.ESCAPED] += 1
    return write_hits(rs, dep, n_dep, n_hits, hits, t0, decay, photon, kind, scatters, px, py, pz,
                      efficiency, counters)


@kernel
def decays(times, pos, first_id, start, positron_fraction, prange, lines, md, ring, crystal,
           efficiency, dep, n_dep, counters, rs, hits):
    """Simulate decays ``start..`` (times ps, positions mm) into deposits ``dep[n_dep:]``.

    Stops before a decay whose photons might overflow ``dep``; returns (next decay, n_dep).
    """
    n_lines = lines.shape[0]
    per_decay = (2 + n_lines) * MAX_HITS
    # the photons of one decay: x, y, z, ux, uy, uz, keV, photon id, kind
    ph = np.empty((2 + n_lines, 9))
    for i in range(start, times.size):
        if n_dep + per_decay > dep.size:
            return i, n_dep
        x, y, z = pos[i, 0], pos[i, 1], pos[i, 2]
        n_ph = 0
        if uniform(rs) < positron_fraction:
            dx, dy, dz = positron_path(rs, prange)
            ux, uy, uz = isotropic(rs)
            # acollinearity: an isotropic 3-D Gaussian of the angular sigma, its component
            # along u removed, is the 2-D Gaussian deviation across u
            gx = ACOLLINEARITY_SIGMA * normal(rs)
            gy = ACOLLINEARITY_SIGMA * normal(rs)
            gz = ACOLLINEARITY_SIGMA * normal(rs)
            along = gx * ux + gy * uy + gz * uz
            vx = -ux + gx - along * ux
            vy = -uy + gy - along * uy
            vz = -uz + gz - along * uz
            nrm = 1.0 / math.sqrt(vx * vx + vy * vy + vz * vz)
            for p in range(2):
                ph[p, 0], ph[p, 1], ph[p, 2] = x + dx, y + dy, z + dz
                ph[p, 6], ph[p, 7], ph[p, 8] = ANNIHILATION_KEV, p, records.ANNIHILATION
            ph[0, 3], ph[0, 4], ph[0, 5] = ux, uy, uz
            ph[1, 3], ph[1, 4], ph[1, 5] = vx * nrm, vy * nrm, vz * nrm
            n_ph = 2
        for q in range(n_lines):
            if uniform(rs) < lines[q, 1]:
                ph[n_ph, 0], ph[n_ph, 1], ph[n_ph, 2] = x, y, z
                ph[n_ph, 3], ph[n_ph, 4], ph[n_ph, 5] = isotropic(rs)
                ph[n_ph, 6], ph[n_ph, 7], ph[n_ph, 8] = lines[q, 0], 2 + q, records.GAMMA
                n_ph += 1
        for p in range(n_ph):
            n_dep = _photon(rs, md, ring, crystal, efficiency, ph[p, 0], ph[p, 1], ph[p, 2],
                            ph[p, 3], ph[p, 4], ph[p, 5], ph[p, 6], times[i], first_id + i,
                            int(ph[p, 7]), int(ph[p, 8]), dep, n_dep, counters, hits)
    return times.size, n_dep
