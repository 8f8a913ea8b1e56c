"""Photon transport for PET on SIMD lanes: the lanes' layout and their vectorised kernels.

A pool of lanes (a few hundred) each holds one photon in flight. :func:`step` advances every lane
by one event in a loop that LLVM vectorises (:mod:`emulator.simd`): in the phantom one tentative
interaction of delta tracking (Woodcock: at the densest layer's or voxel's rate inside the
phantom's box, real with probability density / densest), in a module one tentative interaction
at the crystal's attenuation (real when it falls in a crystal, not in the reflector between
crystals). A photon whose tentative point lies where its ray meets no layer again has left the
phantom (no virtual events across the air in the box's corners; a voxel phantom's photons leave
by its box). A real one
is photo-electric absorption, coherent scattering (phantom) or Compton scattering, chosen with
the medium's fractions at the photon's energy; Compton angles by Kahn's rejection method, two
trials in the step (when both fail, the photon's next step draws two more where it is, so the
law stays exact). Photons that leave the phantom's box or a module find the module they enter
next in one vectorised pass over just them (:func:`enter`,
:func:`emulator.detector.ring.front_entry`). :mod:`emulator.physics.transport` drives the steps and does what
is rare or irregular in plain code.

Every lane draws from its own generator (xoshiro256++), seeded per block of decays, so results
do not depend on the number of threads. Positions mm, energies keV.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from emulator.detector.ring import front_entry
from emulator.jit import inline, kernel
from emulator.physics.flight import behind_all, medium_density
from emulator.physics.interactions import CUTOFF_KEV, kahn_trial, rotate
from emulator.physics.media import TABLE_KEV
from emulator.rng import draw, draw3
from emulator.simd import (
    at,
    get,
    keep,
    log,
    put,
    sel,
    sincos_turn,
    tab,
    unit,
    unit_open,
    vmax,
    vmin,
    words,
)

#: Lanes in flight (a multiple of the widest SIMD vector).
LANES = 256

# float64 lane fields: position mm, direction, energy keV, path mm since emission, in the phantom
# the distance gone past the position by virtual events (the position stays at the last real
# one, so that a photon leaving the phantom's box starts into the ring from inside the phantom,
# never from a box corner that reaches into a module), and this step's deposit (keV) with the
# path at it; FOUND_T is a row of results of :func:`enter`, indexed by the position in its list
# of lanes (not by lane)
X, Y, Z, UX, UY, UZ, E, PATH, TRAV, DEP_E, DEP_PATH, FOUND_T = range(12)
N_FLOAT = 12
# int64 lane fields: stage, module (sector, module ring; -1 in the phantom), this step's deposit
# crystal (-1 none), 1 while a Compton scattering's angle is still to draw where the photon is
# (its Kahn trials all failed: the next step draws again, without moving), the photon's source
# slot, its scatterings in the phantom, its deposits so far, the module it last left; FOUND_M
# and FOUND_K rows of results of :func:`enter` like FOUND_T
(STAGE, M, K, DEP_C, AGAIN, SRC, SCAT, HITS, EX_M, EX_K, FOUND_M, FOUND_K) = range(12)
N_INT = 12

# stages: moving (the step advances them), then those plain code handles (a photon looking for
# its next module, a coherent scattering), then ended
PHANTOM, MODULE, RING, COHERENT, DONE, ABSORBED, EMPTY = range(7)

# photon sources, one slot per possible photon: float fields X..E (the emission point is the
# start), int fields: the stage it starts in (EMPTY: no photon), its module, photon id, kind
SRC_FLOAT = 7
START, START_M, START_K, PHOTON, KIND = range(5)
SRC_INT = 5


class Scratch(NamedTuple):
    """The transport's working arrays (:func:`scratch`)."""

    F: np.ndarray        # (N_FLOAT, LANES) float lane fields
    I: np.ndarray        # (N_INT, LANES) int lane fields
    R: np.ndarray        # (4, LANES) uint64 the lanes' generator states
    need: np.ndarray     # (LANES,) int64 lanes looking for a module
    later: np.ndarray    # (LANES,) int64 lanes with a coherent scattering left to plain code
    free: np.ndarray     # (LANES,) int64 lanes whose photon ended
    src_f: np.ndarray    # (SRC_FLOAT, slots) photon sources
    src_i: np.ndarray    # (SRC_INT, slots)
    order: np.ndarray    # (slots,) int64 the slots that hold a photon, in order
    log_f: np.ndarray    # (2, entries) the deposits of all photons: keV, path mm
    log_i: np.ndarray    # (3, entries) int64: source slot, crystal, scatterings in the phantom


_LOCAL = threading.local()


def scratch(slots: int, entries: int = 0) -> Scratch:
    """Working arrays with room for ``slots`` photon sources and ``entries`` deposits (at
    least 2 a slot), kept per thread and reused (fresh pages cost more than the transport's own
    work on them). The sources' arrays hold a slot more than asked, so the views handed out are
    never contiguous: numba compiles a kernel once per array layout, and a fresh array's first
    block would otherwise be of another layout than every later block's."""
    entries = max(entries, 2 * slots, 4 * LANES)
    have = getattr(_LOCAL, "scratch", None)
    if have is None or have.src_f.shape[1] <= slots or have.log_f.shape[1] < entries:
        room = slots + 1
        have = Scratch(np.zeros((N_FLOAT, LANES)), np.zeros((N_INT, LANES), np.int64),
                       np.zeros((4, LANES), np.uint64), np.zeros(LANES, np.int64),
                       np.zeros(LANES, np.int64), np.zeros(LANES, np.int64),
                       np.zeros((SRC_FLOAT, room)), np.zeros((SRC_INT, room), np.int64),
                       np.zeros(room, np.int64), np.zeros((2, entries)),
                       np.zeros((3, entries), np.int64))
        _LOCAL.scratch = have
    return have._replace(src_f=have.src_f[:, :slots], src_i=have.src_i[:, :slots],
                         order=have.order[:slots])


def grow_log() -> None:
    """Double this thread's deposit log (after :func:`emulator.physics.transport.transport` found it
    too small)."""
    have = _LOCAL.scratch
    scratch(have.src_f.shape[1] - 1, 2 * have.log_f.shape[1])


#: Columns of :func:`medium_table`: per medium (phantom, crystal) the mean free path, the
#: photo-electric fraction and photo-electric plus coherent.
MEDIUM_COLUMNS = 6


@inline
def source(src_f, src_i, slot, x, y, z, ux, uy, uz, energy, start, m, k, photon, kind):
    """Fill photon source ``slot``: start (emission) point mm, direction, energy keV, the stage
    it starts in (EMPTY: no photon), its module (-1, -1 outside the ring), photon id and kind."""
    put(src_f, X, slot, x)
    put(src_f, Y, slot, y)
    put(src_f, Z, slot, z)
    put(src_f, UX, slot, ux)
    put(src_f, UY, slot, uy)
    put(src_f, UZ, slot, uz)
    put(src_f, E, slot, energy)
    put(src_i, START, slot, start)
    put(src_i, START_M, slot, m)
    put(src_i, START_K, slot, k)
    put(src_i, PHOTON, slot, photon)
    put(src_i, KIND, slot, kind)


def medium_table(water: np.ndarray, rho_max: float, crystal: np.ndarray) -> np.ndarray:
    """(TABLE_KEV, 6) per-keV table the step looks up: the phantom's delta-tracking mean free
    path (mm, 1 / (densest x mu water); 1e300 without layers), water's photo-electric fraction
    and photo-electric plus coherent, then the crystal's mean free path, photo-electric fraction
    (twice: no coherent scattering in the crystal)."""
    out = np.empty((TABLE_KEV, MEDIUM_COLUMNS))
    out[:, 0] = 1.0 / (rho_max * water[:, 0]) if rho_max > 0 else 1e300
    out[:, 1] = water[:, 1]
    out[:, 2] = water[:, 1] + water[:, 2]
    out[:, 3] = 1.0 / crystal[:, 0]
    out[:, 4] = crystal[:, 1]
    out[:, 5] = crystal[:, 1]
    return out


@inline
def _exit(p, inv_u, lo, hi):
    """Distance (mm) at which p + t u leaves [lo, hi], given 1 / u (no division here)."""
    return (sel(inv_u > 0.0, hi, lo) - p) * inv_u


@kernel
def step(F, I, R, n, md, layer_ids, g, table):
    """Advance lanes [0, n) by one event (see the module docstring). ``md`` the phantom's medium
    (:class:`emulator.physics.flight.Medium`), ``layer_ids`` the tuple ``(0, .., layers - 1)`` (its
    length, a compile-time constant, unrolls the loop over the layers), ``g`` the ring,
    ``table`` the :func:`medium_table`."""
    n_tab = table.shape[0] - 1
    rho_max = md.rho_max
    no_layers = rho_max <= 0.0
    no_voxels = md.vox_max <= 0.0       # a voxel phantom: the photon leaves by its box
    box = (tab(md.lo, 0), tab(md.lo, 1), tab(md.lo, 2), tab(md.hi, 0), tab(md.hi, 1),
           tab(md.hi, 2))
    for i in range(n):
        stage = get(I, STAGE, i)
        px, py, pz = get(F, X, i), get(F, Y, i), get(F, Z, i)
        vx, vy, vz = get(F, UX, i), get(F, UY, i), get(F, UZ, i)
        en, pa, trav = get(F, E, i), get(F, PATH, i), get(F, TRAV, i)
        m, k, scat, hits = get(I, M, i), get(I, K, i), get(I, SCAT, i), get(I, HITS, i)
        a0, a1, a2, a3 = words(R, i)
        in_ph, in_mod = stage == PHANTOM, stage == MODULE
        again = get(I, AGAIN, i) != 0            # only a Compton angle to draw, here
        moving = (in_ph | in_mod) & ~again
        # ---------------------------------------------------------------- the medium here
        col = MEDIUM_COLUMNS * vmin(np.int64(en), n_tab) + sel(in_ph, 0, 3)
        mfp, pe, pe_coh = tab(table, col), tab(table, col + 1), tab(table, col + 2)
        ix, iy, iz = 1.0 / vx, 1.0 / vy, 1.0 / vz
        t_box = vmin(vmin(_exit(px, ix, box[0], box[3]), _exit(py, iy, box[1], box[4])),
                     _exit(pz, iz, box[2], box[5]))
        mm = vmax(m, 0)
        c, s = tab(g.cos_sec, mm), tab(g.sin_sec, mm)
        d0, i_d = px * c + py * s - g.radius, 1.0 / (vx * c + vy * s)
        s0, us = -px * s + py * c + g.half_w, -vx * s + vy * c
        w0 = pz - (g.z_lo + k * g.mr_pitch)
        t_d, t_w = _exit(d0, i_d, 0.0, g.depth), _exit(w0, iz, 0.0, g.mr_len)
        t_s = _exit(s0, 1.0 / us, 0.0, 2.0 * g.half_w)
        t_mod = vmin(vmin(t_d, t_s), t_w)
        t_exit = sel(in_ph, t_box, t_mod)
        # a module left out through its back face (:func:`emulator.detector.ring.backs_clear`), or
        # through an end face of the ring, is left for good: no search for a next module
        by_back = (i_d > 0.0) & (t_d <= t_s) & (t_d <= t_w)
        by_end = (t_w <= t_d) & (t_w <= t_s) & (((k == g.n_mr - 1) & (vz > 0.0))
                                                  | ((k == 0) & (vz < 0.0)))
        gone = in_mod & (by_back | by_end)
        # ---------------------------------------------------------------- one tentative event
        r, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
        t = sel(again, 0.0, sel(in_ph, trav, 0.0) - log(unit_open(r)) * mfp)
        # (in the phantom: the density there, and whether the ray meets no layer from there)
        qx, qy, qz = px + t * vx, py + t * vy, pz + t * vz
        rho = medium_density(md, len(layer_ids), qx, qy, qz)
        behind = no_voxels & behind_all(md.layers, len(layer_ids), qx, qy, qz, vx, vy, vz)
        leaves = moving & ((t >= t_exit) | (in_ph & (no_layers | behind)))
        t = sel(leaves & in_mod, vmax(t_exit, 0.0), t)
        r, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
        dense = (rho >= rho_max) | (unit(r) * rho_max < rho)
        sv, av = s0 + t * us, w0 + t * vz
        ci = vmin(vmax(np.int64(math.floor(sv / g.pitch_t)), 0), g.ct - 1)
        cj = vmin(vmax(np.int64(math.floor(av / g.pitch_a)), 0), g.ca - 1)
        fs, fa = sv - ci * g.pitch_t, av - cj * g.pitch_a
        in_cell = ((g.margin_t <= fs) & (fs <= g.pitch_t - g.margin_t)
                   & (g.margin_a <= fa) & (fa <= g.pitch_a - g.margin_a))
        real = again | (moving & ~leaves & sel(in_ph, dense, in_cell))
        # in a module every event moves the photon; in the phantom only a real one
        t_move = sel(in_mod | real, t, 0.0)
        px, py, pz = px + t_move * vx, py + t_move * vy, pz + t_move * vz
        pa += t_move
        put(F, TRAV, i, sel(in_ph & ~leaves & ~real, t, 0.0))
        # ---------------------------------------------------------------- what happens there
        r, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
        u_kind = unit(r)
        photo = real & ~again & (u_kind < pe)
        coherent = real & ~again & ~photo & (u_kind < pe_coh)
        compton = real & ~photo & ~coherent
        r1, r2, r3, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
        ok1, e1, c1 = kahn_trial(en, unit(r1), unit(r2), unit(r3))
        r1, r2, r3, a0, a1, a2, a3 = draw3(a0, a1, a2, a3)
        ok2, e2, c2 = kahn_trial(en, unit(r1), unit(r2), unit(r3))
        scatter = compton & (ok1 | ok2)
        e_after, cos_t = sel(ok1, e1, e2), sel(ok1, c1, c2)
        r, a0, a1, a2, a3 = draw(a0, a1, a2, a3)
        cos_p, sin_p = sincos_turn(unit(r))
        nx, ny, nz = rotate(vx, vy, vz, cos_t, cos_p, sin_p)
        vx, vy, vz = sel(scatter, nx, vx), sel(scatter, ny, vy), sel(scatter, nz, vz)
        low = e_after < CUTOFF_KEV
        ends = photo | (scatter & low)
        crystal_id = (k * g.ca + cj) * g.per_ring + m * g.ct + ci
        deposit = in_mod & (photo | scatter)
        put(I, DEP_C, i, sel(deposit, crystal_id, -1))
        put(I, HITS, i, hits + sel(deposit, 1, 0))
        put(F, DEP_E, i, sel(ends, en, en - e_after))
        put(F, DEP_PATH, i, pa)
        en = sel(ends, 0.0, sel(scatter, e_after, en))
        scat += sel(in_ph & scatter, 1, 0)
        put(I, AGAIN, i, sel(compton & ~scatter, 1, 0))
        stage = sel(leaves, sel(gone, DONE, RING), sel(ends, sel(in_ph, ABSORBED, DONE),
                                                        sel(coherent, COHERENT, stage)))
        put(I, EX_M, i, sel(in_mod & leaves, m, get(I, EX_M, i)))
        put(I, EX_K, i, sel(in_mod & leaves, k, get(I, EX_K, i)))
        put(I, STAGE, i, stage)
        put(F, X, i, px)
        put(F, Y, i, py)
        put(F, Z, i, pz)
        put(F, UX, i, vx)
        put(F, UY, i, vy)
        put(F, UZ, i, vz)
        put(F, E, i, en)
        put(F, PATH, i, pa)
        put(I, SCAT, i, scat)
        keep(R, i, a0, a1, a2, a3)


@kernel
def enter(F, I, need, n, g):
    """The module each of the lanes ``need[:n]`` (photons looking for one) enters next, by
    :func:`emulator.detector.ring.front_entry` vectorised over just these lanes: for the j-th, its sector
    and module ring in ``I[FOUND_M, j]``, ``I[FOUND_K, j]`` (-2: none, -1: search), the distance
    to it (mm) in ``F[FOUND_T, j]``."""
    for j in range(n):
        i = tab(need, j)
        m, k, t = front_entry(g, get(F, X, i), get(F, Y, i), get(F, Z, i), get(F, UX, i),
                              get(F, UY, i), get(F, UZ, i))
        put(I, FOUND_M, j, m)
        put(I, FOUND_K, j, k)
        put(F, FOUND_T, j, t)


@kernel
def refill(F, I, free, n, src_f, src_i, order, first):
    """Give lane ``free[j]`` the photon of source ``order[first + j]``, j < n (LLVM may
    vectorise it with scatters; on AVX-512 here its cost model keeps it scalar)."""
    for j in range(n):
        i = tab(free, j)
        q = tab(order, first + j)
        put(F, X, i, at(src_f, X, q))
        put(F, Y, i, at(src_f, Y, q))
        put(F, Z, i, at(src_f, Z, q))
        put(F, UX, i, at(src_f, UX, q))
        put(F, UY, i, at(src_f, UY, q))
        put(F, UZ, i, at(src_f, UZ, q))
        put(F, E, i, at(src_f, E, q))
        put(F, PATH, i, 0.0)
        put(F, TRAV, i, 0.0)
        put(I, STAGE, i, at(src_i, START, q))
        put(I, M, i, at(src_i, START_M, q))
        put(I, K, i, at(src_i, START_K, q))
        put(I, SCAT, i, 0)
        put(I, HITS, i, 0)
        put(I, AGAIN, i, 0)
        put(I, SRC, i, q)
        put(I, EX_M, i, -1)
        put(I, EX_K, i, -1)
