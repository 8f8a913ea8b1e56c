"""A photon's flight through the phantom: attenuation, Compton and coherent scattering,
photo-electric absorption.

The phantom's attenuating regions are painted in order (see :mod:`emulator.phantoms.model`): along
the photon's line, the density on each stretch between region boundaries is that of the last
region covering it. An exponential optical depth is spent along the line; where it runs out the
photon interacts (photo-electric, coherent or Compton, in water's proportions at its energy).

``layers`` is :attr:`PackedPhantom.layers` (one packed shape row per attenuating region, the
density last); ``water`` the (keV, 3) table of mu (1/mm), photo-electric and coherent fractions;
``work`` a scratch array of :func:`work_size` floats.
"""

from __future__ import annotations

import math

import numpy as np

from emulator.jit import inline, kernel
from emulator.phantoms.shapes import ROW, ray_interval
from emulator.physics import CUTOFF_KEV, klein_nishina, rayleigh_cos, rotate
from emulator.rng import exponential, uniform


def work_size(n_layers: int) -> int:
    """Floats of scratch space the flight functions need for ``n_layers`` regions."""
    return 4 * n_layers + 2


@inline
def _insert(values, offset, n, v):
    """Insert ``v`` into the sorted ``values[offset:offset + n]``; returns n + 1."""
    w = n
    while w > 0 and values[offset + w - 1] > v:
        values[offset + w] = values[offset + w - 1]
        w -= 1
    values[offset + w] = v
    return n + 1


@inline
def path_through(layers, px, py, pz, ux, uy, uz, work):
    """Each layer's entry/exit distance ahead of p (``work[:L]``, ``work[L:2L]``, inf where
    missed) and the sorted boundaries (``work[2L:]``); returns the number of boundaries."""
    n_l = layers.shape[0]
    nb = 0
    for q in range(n_l):
        a, b = ray_interval(layers, q, px, py, pz, ux, uy, uz)
        a = max(a, 0.0)
        if b > a:
            work[q], work[n_l + q] = a, b
            nb = _insert(work, 2 * n_l, nb, a)
            nb = _insert(work, 2 * n_l, nb, b)
        else:
            work[q], work[n_l + q] = np.inf, -np.inf
    return nb


@inline
def _density(layers, work, t):
    n_l = layers.shape[0]
    for q in range(n_l - 1, -1, -1):
        if work[q] <= t <= work[n_l + q]:
            return layers[q, ROW]
    return 0.0


@kernel
def optical_depth(layers, mu_water, px, py, pz, ux, uy, uz, work):
    """Line integral of mu (dimensionless) from p to infinity along u at water attenuation
    ``mu_water`` (1/mm)."""
    nb = path_through(layers, px, py, pz, ux, uy, uz, work)
    base = 2 * layers.shape[0]
    total = 0.0
    for b in range(nb - 1):
        a, c = work[base + b], work[base + b + 1]
        if c > a:
            total += _density(layers, work, 0.5 * (a + c)) * (c - a)
    return total * mu_water


@inline
def next_interaction(rs, layers, mu_water, px, py, pz, ux, uy, uz, work):
    """Distance (mm) to the next interaction along u, or -1 when the photon leaves the phantom."""
    nb = path_through(layers, px, py, pz, ux, uy, uz, work)
    if nb == 0:
        return -1.0
    base = 2 * layers.shape[0]
    tau = exponential(rs)
    for b in range(nb - 1):
        a, c = work[base + b], work[base + b + 1]
        if c <= a:
            continue
        mu = _density(layers, work, 0.5 * (a + c)) * mu_water
        if mu > 0.0:
            if tau <= mu * (c - a):
                return a + tau / mu
            tau -= mu * (c - a)
    return -1.0


@inline
def interact(rs, water, energy, ux, uy, uz):
    """One interaction in water: (energy after keV, direction after); energy 0 when absorbed."""
    e_idx = min(int(energy), water.shape[0] - 1)
    r = uniform(rs)
    if r < water[e_idx, 1]:
        return 0.0, ux, uy, uz
    if r < water[e_idx, 1] + water[e_idx, 2]:
        cos_t = rayleigh_cos(rs, energy)
    else:
        energy, cos_t = klein_nishina(rs, energy)
        if energy < CUTOFF_KEV:
            return 0.0, ux, uy, uz
    ux, uy, uz = rotate(ux, uy, uz, cos_t, 2.0 * math.pi * uniform(rs))
    return energy, ux, uy, uz


@inline
def fly(rs, layers, water, px, py, pz, ux, uy, uz, energy, work):
    """Follow a photon through the phantom until it leaves it or is absorbed.

    Returns (energy keV, 0 when absorbed; position; direction; path mm; scatterings).
    """
    path = 0.0
    scatters = 0
    while True:
        d = next_interaction(rs, layers, water[min(int(energy), water.shape[0] - 1), 0], px, py, pz,
                             ux, uy, uz, work)
        if d < 0.0:
            break
        px += d * ux
        py += d * uy
        pz += d * uz
        path += d
        energy, ux, uy, uz = interact(rs, water, energy, ux, uy, uz)
        if energy <= 0.0:
            break
        scatters += 1
    return energy, px, py, pz, ux, uy, uz, path, scatters
