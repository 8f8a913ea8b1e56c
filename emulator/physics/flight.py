"""A photon's flight through the phantom: attenuation, Compton and coherent scattering,
photo-electric absorption (for SPECT's scalar kernels; PET's photons fly on the SIMD lanes of
:mod:`emulator.physics.lanes`, which share :func:`density_at` and :func:`box_exit`).

The phantom's attenuating regions are painted in order (see :mod:`emulator.phantoms.model`): at a
point, the density is that of the last region covering it; a voxel phantom's density is that of
the voxel holding the point (:mod:`emulator.phantoms.voxelpack`). Flights use delta (Woodcock) tracking:
tentative interactions at the rate of the densest region (``rho_max`` x water's mu), each real
with probability density / rho_max, until the photon leaves the box around every region. This is
exact (Woodcock et al. 1965) and costs a point lookup per tentative interaction instead of every
region's intersection with every flight segment. A real interaction is photo-electric, coherent or
Compton in water's proportions at the photon's energy.

:func:`optical_depth` integrates mu along a whole line (forced detection in SPECT): there the
regions' boundaries along the line are found (``work``, a scratch array of :func:`work_size`
floats), and a voxel phantom's voxels are walked one by one (Amanatides & Woo's traversal, exact
path lengths: Siddon's sum). Delta tracking needs only a point lookup, so the flights stay as
cheap in voxels as in shapes; a line integral needs every voxel crossed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import types
from numba.extending import overload

from emulator.jit import JIT_OPTIONS, inline, kernel
from emulator.phantoms.shapes import ROW, ray_interval, row_behind, row_contains
from emulator.phantoms.voxelpack import VoxelDensity, no_density
from emulator.physics.interactions import CUTOFF_KEV, deflect, klein_nishina, rayleigh_cos
from emulator.physics.slabs import inverse, slab, slab_exit
from emulator.rng import exponential, uniform
from emulator.simd import sel, tab, vmax, vmin

#: The typed bodies' options (compiled into their callers, so never cached on their own).
TYPED_OPTIONS = {k: v for k, v in JIT_OPTIONS.items() if k != "cache"}


class Medium(NamedTuple):
    """The phantom's attenuation as a photon sees it."""

    layers: np.ndarray   # (L, ROW + 1) attenuating regions in painter's order, density last
    lo: np.ndarray       # (3,) mm, low corner of a box around every layer
    hi: np.ndarray       # (3,) mm, high corner
    rho_max: float       # the largest density (water = 1)
    water: np.ndarray    # (keV, 3) mu (1/mm), photo-electric and coherent fractions of water
    vox_rho: np.ndarray | None  # a voxel phantom's densities, None for shapes alone
    vox_map: np.ndarray  # (12,) scanner mm -> voxel index from the box's low corner
    vox_n: np.ndarray    # (3,) int64 voxels of its box
    vox_lo: np.ndarray   # (3,) mm, the box around them
    vox_hi: np.ndarray   # (3,) mm
    vox_max: float       # their largest density (0: no voxels)


def medium(layers: np.ndarray, boxes: np.ndarray, water: np.ndarray,
           voxels: VoxelDensity | None = None) -> Medium:
    """The medium of packed ``layers`` with their bounding ``boxes`` (L, 2, 3) mm, and of a
    voxel phantom's densities ``voxels``."""
    v = voxels if voxels is not None else no_density()
    lows, highs = [b[0] for b in boxes], [b[1] for b in boxes]
    if v.rho_max > 0:
        lows.append(v.lo)
        highs.append(v.hi)
    rho_max = max(float(layers[:, ROW].max()) if layers.shape[0] else 0.0, v.rho_max)
    lo = np.min(lows, axis=0) if lows else np.zeros(3)
    hi = np.max(highs, axis=0) if highs else np.zeros(3)
    return Medium(layers, np.asarray(lo, np.float64), np.asarray(hi, np.float64), rho_max,
                  water, v.rho if v.rho_max > 0 else None, v.to_corner, v.n, v.lo, v.hi,
                  v.rho_max)


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
def optical_depth(md, mu_water, px, py, pz, ux, uy, uz, work):
    """Line integral of mu (dimensionless) from p to infinity along u (a unit vector) at water
    attenuation ``mu_water`` (1/mm), through the layers and the voxels (a phantom holds one
    or the other)."""
    layers = md.layers
    nb = path_through(layers, px, py, pz, ux, uy, uz, work)
    base = 2 * layers.shape[0]
    total = 0.0
    for b in range(nb - 1):
        a, c = work[base + b], work[base + b + 1]
        if c > a:
            total += _density(layers, work, 0.5 * (a + c)) * (c - a)
    total += voxel_path(md, px, py, pz, ux, uy, uz)
    return total * mu_water


@inline
def _to_voxels(m, x, y, z):
    """Index coordinates (from the box's low corner) of the scanner point (x, y, z) mm."""
    return (tab(m, 0) * x + tab(m, 1) * y + tab(m, 2) * z + tab(m, 3),
            tab(m, 4) * x + tab(m, 5) * y + tab(m, 6) * z + tab(m, 7),
            tab(m, 8) * x + tab(m, 9) * y + tab(m, 10) * z + tab(m, 11))


@inline
def voxel_density(md, x, y, z):
    """The density of the voxel holding (x, y, z) mm, 0 beyond the box (branch-free); 0 for a
    medium without voxels, decided when the kernel compiles (``md.vox_rho`` is None): a
    lookup at a computed index is a gather, which keeps LLVM from vectorising the lanes' loop,
    so a phantom of shapes must not carry one."""
    return _voxel_density(md.vox_rho, md, x, y, z)


def _voxel_density(rho, md, x, y, z):
    """(the typed body of :func:`voxel_density`)"""


@overload(_voxel_density, inline="always", jit_options=TYPED_OPTIONS)
def _voxel_density_typed(rho, md, x, y, z):
    if isinstance(rho, types.NoneType):
        return lambda rho, md, x, y, z: 0.0

    def lookup(rho, md, x, y, z):
        n0, n1, n2 = tab(md.vox_n, 0), tab(md.vox_n, 1), tab(md.vox_n, 2)
        fi, fj, fk = _to_voxels(md.vox_map, x, y, z)
        i, j, k = np.int64(math.floor(fi)), np.int64(math.floor(fj)), np.int64(math.floor(fk))
        inside = (i >= 0) & (i < n0) & (j >= 0) & (j < n1) & (k >= 0) & (k < n2)
        flat = ((vmin(vmax(i, 0), n0 - 1) * n1 + vmin(vmax(j, 0), n1 - 1)) * n2
                + vmin(vmax(k, 0), n2 - 1))
        return sel(inside, tab(rho, flat), 0.0)
    return lookup


@inline
def _walk_start(a, d, t_mid, size):
    """A voxel walk's start along one axis: (cell, step, t of the next boundary, t per
    cell), the line a + t d (index units) at t_mid."""
    c = min(max(np.int64(math.floor(a + t_mid * d)), 0), size - 1)
    if d > 0.0:
        return c, 1, (c + 1 - a) / d, 1.0 / d
    if d < 0.0:
        return c, -1, (c - a) / d, -1.0 / d
    return c, 0, np.inf, np.inf


@inline
def voxel_path(md, px, py, pz, ux, uy, uz):
    """Integral of the voxels' density (water = 1) x length (mm) along p + t u, t >= 0 (u a
    unit vector): each voxel's density times the length of the line in it (0 without
    voxels, see :func:`voxel_density`)."""
    return _voxel_path(md.vox_rho, md, px, py, pz, ux, uy, uz)


def _voxel_path(rho, md, px, py, pz, ux, uy, uz):
    """(the typed body of :func:`voxel_path`)"""


@overload(_voxel_path, inline="always", jit_options=TYPED_OPTIONS)
def _voxel_path_typed(rho, md, px, py, pz, ux, uy, uz):
    if isinstance(rho, types.NoneType):
        return lambda rho, md, px, py, pz, ux, uy, uz: 0.0
    return _walk


def _walk(rho, md, px, py, pz, ux, uy, uz):
    """Amanatides & Woo's walk through the voxels (see :func:`voxel_path`)."""
    m, n0, n1, n2 = md.vox_map, md.vox_n[0], md.vox_n[1], md.vox_n[2]
    a0, a1, a2 = _to_voxels(m, px, py, pz)
    d0 = m[0] * ux + m[1] * uy + m[2] * uz
    d1 = m[4] * ux + m[5] * uy + m[6] * uz
    d2 = m[8] * ux + m[9] * uy + m[10] * uz
    s0, s1 = slab(a0, inverse(d0), 0.0, float(n0))
    r0, r1 = slab(a1, inverse(d1), 0.0, float(n1))
    q0, q1 = slab(a2, inverse(d2), 0.0, float(n2))
    t0, t1 = max(max(max(s0, r0), q0), 0.0), min(min(s1, r1), q1)
    if t1 <= t0:
        return 0.0
    t_mid = t0 + 0.5 * min(t1 - t0, 1e-3)
    i, si, ti, di = _walk_start(a0, d0, t_mid, n0)
    j, sj, tj, dj = _walk_start(a1, d1, t_mid, n1)
    k, sk, tk, dk = _walk_start(a2, d2, t_mid, n2)
    total, t = 0.0, t0
    while t < t1:
        t_end = min(min(min(ti, tj), tk), t1)
        total += rho[(i * n1 + j) * n2 + k] * (t_end - t)
        t = t_end
        if ti <= tj and ti <= tk:
            i += si
            ti += di
            if i < 0 or i >= n0:
                break
        elif tj <= tk:
            j += sj
            tj += dj
            if j < 0 or j >= n1:
                break
        else:
            k += sk
            tk += dk
            if k < 0 or k >= n2:
                break
    return total


@inline
def medium_density(md, n_layers, x, y, z):
    """Density (water = 1) at (x, y, z) mm: a voxel phantom's voxel, the first ``n_layers``
    layers painted over it (:func:`density_at`). Branch-free."""
    return density_at(md.layers, n_layers, x, y, z, voxel_density(md, x, y, z))


@inline
def density_at(layers, n_layers, x, y, z, under=0.0):
    """Density (water = 1) at the point (x, y, z) mm: the last of the first ``n_layers`` layers
    covering it, or ``under`` (air). Branch-free: with a constant ``n_layers`` the SIMD lanes
    unroll it."""
    rho = under
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
        rho = medium_density(md, md.layers.shape[0], px + t * ux, py + t * uy, pz + t * uz)
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
