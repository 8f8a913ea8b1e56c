"""A photon's flight through the phantom: attenuation, Compton and coherent scattering,
photo-electric absorption (for SPECT's scalar kernels; PET's photons fly on the SIMD lanes of
:mod:`emulator.physics.lanes`, which share :func:`density_at` and :func:`box_exit`).

The phantom's attenuating regions are painted in order (see :mod:`emulator.phantoms.model`): at a
point, the density is that of the last region covering it. Flights use delta (Woodcock) tracking:
tentative interactions at the rate of the densest region (``rho_max`` x water's mu), each real
with probability density / rho_max, until the photon leaves the box around every region. This is
exact (Woodcock et al. 1965) and costs a point lookup per tentative interaction instead of every
region's intersection with every flight segment. A real interaction is photo-electric, coherent or
Compton in water's proportions at the photon's energy.

:func:`optical_depth` integrates mu along a whole line (forced detection in SPECT): there the
regions' boundaries along the line are found (``work``, a scratch array of :func:`work_size`
floats).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emulator.jit import inline, kernel
from emulator.phantoms.shapes import ROW, ray_interval, row_behind, row_contains
from emulator.physics.interactions import CUTOFF_KEV, deflect, klein_nishina, rayleigh_cos
from emulator.physics.slabs import slab_exit
from emulator.rng import exponential, uniform
from emulator.simd import sel, tab, vmin


class Medium(NamedTuple):
    """The phantom's attenuation as a photon sees it."""

    layers: np.ndarray   # (L, ROW + 1) attenuating regions in painter's order, density last
    lo: np.ndarray       # (3,) mm, low corner of a box around every layer
    hi: np.ndarray       # (3,) mm, high corner
    rho_max: float       # the largest density (water = 1)
    water: np.ndarray    # (keV, 3) mu (1/mm), photo-electric and coherent fractions of water


def medium(layers: np.ndarray, boxes: np.ndarray, water: np.ndarray) -> Medium:
    """The medium of packed ``layers`` with their bounding ``boxes`` (L, 2, 3) mm."""
    if layers.shape[0] == 0:
        return Medium(layers, np.zeros(3), np.zeros(3), 0.0, water)
    return Medium(layers, boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0),
                  float(layers[:, ROW].max()), water)


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
def density_at(layers, n_layers, x, y, z):
    """Density (water = 1) at the point (x, y, z) mm: the last of the first ``n_layers`` layers
    covering it, or air. Branch-free: with a constant ``n_layers`` the SIMD lanes unroll it."""
    rho = 0.0
    for q in range(n_layers):
        rho = sel(row_contains(layers, q, x, y, z), tab(layers, q * layers.shape[1] + ROW), rho)
    return rho


@inline
def behind_all(layers, n_layers, x, y, z, ux, uy, uz):
    """Whether the ray from the point (x, y, z) mm along u meets none of the first ``n_layers``
    layers again (:func:`emulator.phantoms.shapes.row_behind`, a sufficient test): a photon
    there has left the phantom. Branch-free, like :func:`density_at`."""
    behind = True
    for q in range(n_layers):
        behind &= row_behind(layers, q, x, y, z, ux, uy, uz)
    return behind


@inline
def box_exit(md, px, py, pz, ux, uy, uz):
    """Distance (mm) along u at which p leaves the medium's box (<= 0: never inside ahead)."""
    return vmin(vmin(slab_exit(px, ux, tab(md.lo, 0), tab(md.hi, 0)),
                     slab_exit(py, uy, tab(md.lo, 1), tab(md.hi, 1))),
                slab_exit(pz, uz, tab(md.lo, 2), tab(md.hi, 2)))


@inline
def next_interaction(rs, md, mu_water, px, py, pz, ux, uy, uz):
    """Distance (mm) to the next real interaction along u, or -1 when the photon leaves the
    phantom first (delta tracking at the rate ``rho_max x mu_water``, mu_water in 1/mm)."""
    mu_max = md.rho_max * mu_water
    if mu_max <= 0.0:
        return -1.0
    t_exit = box_exit(md, px, py, pz, ux, uy, uz)
    mean_free_path = 1.0 / mu_max
    t = 0.0
    while True:
        t += exponential(rs) * mean_free_path
        if t >= t_exit:
            return -1.0
        rho = density_at(md.layers, md.layers.shape[0], px + t * ux, py + t * uy, pz + t * uz)
        if rho >= md.rho_max or uniform(rs) * md.rho_max < rho:
            return t


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
    ux, uy, uz = deflect(rs, ux, uy, uz, cos_t)
    return energy, ux, uy, uz


@inline
def fly(rs, md, px, py, pz, ux, uy, uz, energy):
    """Follow a photon through the phantom until it leaves it or is absorbed.

    Returns (energy keV, 0 when absorbed; position; direction; path mm; scatterings).
    """
    water = md.water
    path = 0.0
    scatters = 0
    while True:
        d = next_interaction(rs, md, water[min(int(energy), water.shape[0] - 1), 0], px, py, pz,
                             ux, uy, uz)
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
