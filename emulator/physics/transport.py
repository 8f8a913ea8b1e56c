"""Driving the SIMD lanes (:mod:`emulator.physics.lanes`) from photon sources to crystal deposits.

Each round: the lanes whose photon has ended take the next photons from the sources
(:func:`emulator.physics.lanes.refill`); :func:`emulator.physics.lanes.step` advances every lane by
one event; a branch-free pass appends this step's crystal deposits to a log and lists the lanes that
need plain code: a coherent scattering (its angle from the form factor, drawn with the lane's own
generator), or a photon looking for its next module (:func:`emulator.physics.lanes.enter`,
vectorised over just those, then the general module search where the one-step entry does not apply).
A photon that has just left a module (a crystal's own Lu-176 gamma, a photon scattered back out of
a module) and whose ray meets a layer of the phantom before that next module crosses the phantom
first, as a photon from the phantom does (:func:`_into_phantom`). When every photon has ended, the
log is grouped by photon and each photon's deposits are summed per crystal into deposit records
(:func:`_write`). Positions mm, energies keV, times ps.
"""

from __future__ import annotations

import numpy as np

from emulator import records
from emulator.detector.ring import find_module
from emulator.jit import inline, kernel
from emulator.phantoms.shapes import ray_interval
from emulator.physics.interactions import SPEED_OF_LIGHT_MM_PER_PS, deflect, rayleigh_cos
from emulator.physics.lanes import (
    ABSORBED,
    COHERENT,
    DEP_C,
    DEP_E,
    DEP_PATH,
    DONE,
    EMPTY,
    EX_K,
    EX_M,
    FOUND_K,
    FOUND_M,
    FOUND_T,
    HITS,
    KIND,
    MODULE,
    PATH,
    PHANTOM,
    PHOTON,
    RING,
    SCAT,
    SRC,
    STAGE,
    START,
    TRAV,
    UX,
    UY,
    UZ,
    E,
    K,
    M,
    X,
    Y,
    Z,
    enter,
    refill,
    step,
)
from emulator.physics.slabs import inverse, slab
from emulator.rng import bits, keyed_unit

#: The most crystals one photon's deposits are kept apart in (beyond, into the last).
MAX_HITS = 8
TIME_PER_MM_PS = 1.0 / SPEED_OF_LIGHT_MM_PER_PS
#: How far (mm) past the point where its ray enters the phantom's first layer a photon from a
#: module is put, so that it starts inside that layer.
HAIR_MM = 1e-6


@inline
def _log(work, n_log, i):
    """Append lane i's deposit of this step (``DEP_*``) to the log; returns the new length."""
    work.log_i[0, n_log], work.log_i[1, n_log] = work.I[SRC, i], work.I[DEP_C, i]
    work.log_i[2, n_log] = work.I[SCAT, i]
    work.log_f[0, n_log], work.log_f[1, n_log] = work.F[DEP_E, i], work.F[DEP_PATH, i]
    return n_log + 1


@inline
def _coherent(work, i):
    """The coherent scattering the step left to lane i (in the phantom: the crystals have none),
    its angle drawn with the lane's generator from the form factor."""
    F, I = work.F, work.I
    rs = work.R[:, i]
    cos_t = rayleigh_cos(rs, F[E, i])
    F[UX, i], F[UY, i], F[UZ, i] = deflect(rs, F[UX, i], F[UY, i], F[UZ, i], cos_t)
    I[SCAT, i] += 1
    I[STAGE, i] = PHANTOM


@inline
def _move_into(F, I, i, m, k, t):
    """Move lane i by t mm into module (m, k); m < 0: it meets none, it is done."""
    if m < 0:
        I[STAGE, i] = DONE
        return
    for a in range(3):
        F[X + a, i] += t * F[UX + a, i]
    F[PATH, i] += t
    I[M, i], I[K, i], I[STAGE, i] = m, k, MODULE


@inline
def _into_phantom(md, F, I, i, t_module):
    """Whether lane i, a photon that has just left a module and is looking for the next one
    (``t_module`` mm ahead, inf when none), crosses the phantom first: when its ray meets a layer
    of the phantom (``md``, with layers) nearer than that module, it is moved a hair into the
    first layer it meets and handed to the step in the phantom (delta tracking from there, no
    distance gone yet), forgetting the module it left: it then leaves the phantom as a photon from
    the phantom does, and only leaving a module again can send it back in. Geometry only, no
    draw: the lanes' results stay independent of the threads."""
    px, py, pz = F[X, i], F[Y, i], F[Z, i]
    ux, uy, uz = F[UX, i], F[UY, i], F[UZ, i]
    # the box around every layer first (most rays from a module that miss the phantom miss it)
    t0, t1 = slab(px, inverse(ux), md.lo[0], md.hi[0])
    for a in range(1, 3):
        a0, a1 = slab(F[X + a, i], inverse(F[UX + a, i]), md.lo[a], md.hi[a])
        t0, t1 = max(t0, a0), min(t1, a1)
    t0 = max(t0, 0.0)
    if t1 <= t0 or t0 >= t_module:
        return False
    # the box reaches into the modules where it is wider than the bore: the first layer it meets
    t_in = np.inf
    for q in range(md.layers.shape[0]):
        a0, a1 = ray_interval(md.layers, q, px, py, pz, ux, uy, uz)
        a0 = max(a0, 0.0)
        if a1 > a0 and a0 < t_in:
            t_in = a0
    if md.vox_max > 0.0:   # a voxel phantom: where the ray enters its voxels' box
        v0, v1 = slab(px, inverse(ux), md.vox_lo[0], md.vox_hi[0])
        for a in range(1, 3):
            a0, a1 = slab(F[X + a, i], inverse(F[UX + a, i]), md.vox_lo[a], md.vox_hi[a])
            v0, v1 = max(v0, a0), min(v1, a1)
        v0 = max(v0, 0.0)
        if v1 > v0 and v0 < t_in:
            t_in = v0
    if t_in >= t_module:
        return False
    t_in += HAIR_MM
    F[X, i], F[Y, i], F[Z, i] = px + t_in * ux, py + t_in * uy, pz + t_in * uz
    F[PATH, i] += t_in
    F[TRAV, i] = 0.0
    I[STAGE, i], I[M, i], I[K, i] = PHANTOM, -1, -1
    I[EX_M, i], I[EX_K, i] = -1, -1
    return True


@kernel
def _ended(I, n_run, free, counters):
    """Count how the photons of lanes [0, n_run) that ended did, list those lanes (and the
    empty ones) in ``free`` and empty them, without branches; returns how many. Absorbed in
    the phantom and escaped count the photons that left no deposit (a photon scattered out of a
    module can end in the phantom after a deposit), so that every photon is counted once: in
    one of them or among those with deposits."""
    n_free, absorbed, escaped, scattered = 0, 0, 0, 0
    for i in range(n_run):
        stage = I[STAGE, i]
        ended = (stage == DONE) | (stage == ABSORBED)
        none = I[HITS, i] == 0
        absorbed += (stage == ABSORBED) & none
        escaped += (stage == DONE) & none
        scattered += ended & (I[SCAT, i] > 0)
        free[n_free] = i
        n_free += stage >= DONE
        I[STAGE, i] = EMPTY if stage >= DONE else stage
    counters[records.ABSORBED] += absorbed
    counters[records.ESCAPED] += escaped
    counters[records.SCATTERED] += scattered
    return n_free


@kernel
def _compact(F, I, R, n_run):
    """Move the photons in flight to the first lanes (the others are empty); returns how many
    lanes to run, rounded up to a multiple of 8 (the rest marked empty)."""
    w = 0
    for i in range(n_run):
        if I[STAGE, i] == EMPTY:
            continue
        if w != i:
            F[:, w], I[:, w], R[:, w] = F[:, i], I[:, i], R[:, i]
            I[STAGE, i] = EMPTY
        w += 1
    n = min(n_run, (w + 7) // 8 * 8)
    for i in range(w, n):
        I[STAGE, i] = EMPTY
    return n


@kernel
def transport(times, first_id, md, layer_ids, g, table, efficiency, work, n_log, dep, n_dep,
              counters, rs):
    """Follow every photon of the sources in ``work`` (:class:`emulator.physics.lanes.Scratch`: slot
    ``q`` belongs to decay ``d = q mod n`` of the n at ``times``, emitted at ``times[d]`` with id
    ``first_id + d``; the lanes' generators seeded) to its end, writing its crystal deposits to
    ``dep[n_dep:]`` (each kept with its crystal's ``efficiency``, (N,), from the generator ``rs``).
    ``md``, ``layer_ids``, ``g`` and ``table`` as in :func:`emulator.physics.lanes.step`; the deposit
    log holds ``n_log`` entries already. Photons that start in a module (Lu-176) or scatter out of
    one cross the phantom on their way to the next module where their line meets it. Returns the
    new n_dep; -1 when ``dep`` is too small, -2 when the deposit log is."""
    F, I, R, order = work.F, work.I, work.R, work.order
    n_src = 0
    for q in range(order.size):
        order[n_src] = q
        n_src += work.src_i[START, q] != EMPTY
    counters[records.PHOTONS] += n_src
    I[STAGE, :] = EMPTY
    n_run, nxt, cap = F.shape[1], 0, work.log_f.shape[1]
    crossing = md.rho_max > 0.0              # the phantom has layers a photon can cross
    while True:
        n_free = _ended(I, n_run, work.free, counters)
        take = min(n_free, n_src - nxt)
        refill(F, I, work.free, take, work.src_f, work.src_i, order, nxt)
        nxt += take
        if n_free - take == n_run:
            break
        if n_log + 2 * n_run > cap:
            return -2
        step(F, I, R, n_run, md, layer_ids, g, table)
        n_need, n_later = 0, 0
        for i in range(n_run):
            n_log = _log(work, n_log, i) - (I[DEP_C, i] < 0)
            stage = I[STAGE, i]
            work.need[n_need] = i
            n_need += stage == RING
            work.later[n_later] = i
            n_later += stage == COHERENT
        for j in range(n_later):
            _coherent(work, work.later[j])
        enter(F, I, work.need, n_need, g)
        for j in range(n_need):
            i = work.need[j]
            m, k, t = I[FOUND_M, j], I[FOUND_K, j], F[FOUND_T, j]
            if m == -1:
                m, k, t, _ = find_module(g, F[X, i], F[Y, i], F[Z, i], F[UX, i], F[UY, i],
                                         F[UZ, i], I[EX_M, i], I[EX_K, i])
            # a photon from a module (EX_M set; a photon leaving the phantom has none) may
            # cross the phantom before its next module
            if crossing and I[EX_M, i] >= 0 and _into_phantom(md, F, I, i,
                                                               t if m >= 0 else np.inf):
                continue
            _move_into(F, I, i, m, k, t)
        if nxt == n_src and 2 * (n_run - n_free + take) <= n_run:
            n_run = _compact(F, I, R, n_run)
    return _write(times, first_id, work.src_f, work.src_i, work.log_f, work.log_i, n_log, efficiency, dep,
                  n_dep, counters, rs)


@kernel
def _write(times, first_id, src_f, src_i, log_f, log_i, n_log, efficiency, dep, n_dep, counters,
           rs):
    """The deposit log (rows: source slot, crystal, scatterings in the phantom; keV, path mm)
    grouped by photon (a counting sort on the slot, stable, so each photon's deposits stay in
    the order they happened) and summed per crystal on the way (:func:`_add`), each photon's
    crystals kept with their crystal's ``efficiency`` (per crystal), into ``dep[n_dep:]`` slot
    after slot (each photon's deposits in time order); returns n_dep, or -1 when ``dep`` is too small."""
    n_slots = src_i.shape[1]
    start = np.zeros(n_slots + 1, np.int64)
    for e in range(n_log):
        start[log_i[0, e] + 1] += 1
    for q in range(n_slots):
        start[q + 1] += start[q]
    # each photon's crystals (first deposit's path, summed keV), copied in photon order: the
    # loop below then reads them in sequence (reading the log through an index missed the
    # cache at every entry)
    end = start[:n_slots].copy()
    crystal, energy, path = np.empty(n_log, np.int64), np.empty(n_log), np.empty(n_log)
    scatters = np.empty(n_log, np.int64)     # at a photon's first: its scatterings in the phantom
    for e in range(n_log):
        q = log_i[0, e]
        if end[q] == start[q]:
            scatters[start[q]] = log_i[2, e]
        end[q] = _add(crystal, energy, path, start[q], end[q], log_i[1, e], log_f[0, e],
                      log_f[1, e])
    n_decays = times.size
    salt = bits(rs)
    for p in range(n_slots // n_decays):
        for d in range(n_decays):
            q = p * n_decays + d
            a, b = start[q], end[q]
            if a == b:
                continue
            if n_dep + (b - a) > dep.size:
                return -1
            for h in range(a, b):
                if kept(salt, d, crystal[h], efficiency, counters):
                    n_dep = record(dep, n_dep, times[d] + int(path[h] * TIME_PER_MM_PS + 0.5),
                                   crystal[h], energy[h], first_id + d, src_i[PHOTON, q],
                                   src_i[KIND, q], scatters[a], src_f[X, q], src_f[Y, q],
                                   src_f[Z, q])
    return n_dep


@inline
def _add(crystal, energy, path, a, b, c, kev, mm):
    """Add a deposit (crystal c, kev, path mm) to a photon's crystals ``[a, b)`` (at most
    MAX_HITS crystals kept apart; beyond, into the last); returns the new b."""
    for h in range(a, b):
        if crystal[h] == c:
            energy[h] += kev
            return b
    if b - a == MAX_HITS:
        energy[b - 1] += kev
        return b
    crystal[b], energy[b], path[b] = c, kev, mm
    return b + 1


@inline
def kept(salt, decay, crystal, efficiency, counters):
    """Whether a crystal deposit is kept with its crystal's ``efficiency``; the draw is fixed by
    (``salt``, ``decay``, ``crystal``), ``salt`` drawn once a block and ``decay`` the decay's
    index in the block, so a decay's photons in one crystal (Lu-176's beta and its cascade
    gammas absorbed where it decayed) are kept or lost together, as one light pulse is, and the
    same whatever the decays' ids (a shard's slice is emulated with ids from 0); counted in
    ``counters``."""
    counters[records.DEPOSITS] += 1
    if keyed_unit(salt, decay, crystal) < efficiency[crystal]:
        return True
    counters[records.REJECTED] += 1
    return False


@inline
def record(dep, n_dep, t, crystal, energy, decay, photon, kind, scatters, x, y, z):
    """Write deposit ``dep[n_dep]`` (DEPOSIT_DTYPE: t ps, crystal, keV, the decay, photon and
    kind, scatterings in the phantom, emission point mm); returns n_dep + 1."""
    r = dep[n_dep]
    r.t, r.crystal, r.energy = t, crystal, energy
    r.decay, r.photon, r.kind, r.scatters = decay, photon, kind, min(scatters, 255)
    r.x, r.y, r.z = x, y, z
    return n_dep + 1
