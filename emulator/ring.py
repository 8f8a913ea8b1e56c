"""A PET ring as the photon sees it: flat modules of crystal arrays, and photon tracking in them.

Each module is a box: depth ``d`` (0 at the front face, at ``radius`` from the axis) by width
``s`` (tangential) by ``z`` (one module ring). Its crystals fill cells of one pitch, centred in
them; what lies between crystals (reflector) does not stop photons. Inside a module a photon is
followed by delta tracking (tentative interactions at the crystal's attenuation, the ones that
fall in the reflector void), so it interacts at an exponential depth in crystal (parallax
follows), is photo-absorbed with the material's photo-electric fraction or Compton-scatters
(Klein-Nishina) and is followed on, into neighbouring crystals and modules. Each crystal's deposits
of one photon are summed. A photon from the bore finds the module it enters in one step
(:func:`_front_entry`); others (from beyond the ring's ends, between modules) by the general
search (:func:`find_module`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from emulator.jit import inline, kernel
from emulator.physics import SPEED_OF_LIGHT_MM_PER_PS, crystal_interaction
from emulator.rng import exponential
from emulator.slabs import inverse, slab, slab_exit
from hw.scanner import Scanner

#: Below this energy (keV) a photon deposits what it has left where it is.
#: The most crystals one photon's deposits are kept apart in.
MAX_HITS = 8


class Ring(NamedTuple):
    """Module geometry of a PET scanner, mm."""

    n_sec: int
    n_mr: int
    ct: int
    ca: int
    pitch_t: float
    pitch_a: float
    margin_t: float      # (pitch - crystal size) / 2
    margin_a: float
    depth: float
    radius: float
    half_w: float
    r_max: float
    mr_z0: np.ndarray           # (n_mr,) low z edge of each module ring's crystal cells
    mr_len: float
    cos_sec: np.ndarray         # (n_sec,) direction of each sector's axis
    sin_sec: np.ndarray
    per_ring: int


def ring_of(scanner: Scanner) -> Ring:
    """The module geometry of a PET scanner, checked against its crystal centres."""
    n_sec, n_mr = scanner.n_modules, scanner.n_module_rings
    ct, ca = scanner.crystals_per_ring // n_sec, scanner.n_rings // n_mr
    c = scanner.crystal_centres
    pitch_t = float(np.linalg.norm(c[1] - c[0])) if ct > 1 else scanner.crystal_size_mm[0]
    pitch_a = float(c[scanner.crystals_per_ring, 2] - c[0, 2]) if ca > 1 else \
        scanner.crystal_size_mm[1]
    size_t, size_a, depth = scanner.crystal_size_mm
    z_first = c[np.arange(n_mr) * ca * scanner.crystals_per_ring, 2]
    phi = 2.0 * np.pi * np.arange(n_sec) / n_sec
    ring = Ring(
        n_sec=n_sec, n_mr=n_mr, ct=ct, ca=ca, pitch_t=pitch_t, pitch_a=pitch_a,
        margin_t=(pitch_t - size_t) / 2, margin_a=(pitch_a - size_a) / 2, depth=depth,
        radius=scanner.ring_radius_mm, half_w=ct * pitch_t / 2,
        r_max=math.hypot(scanner.ring_radius_mm + depth, ct * pitch_t / 2),
        mr_z0=np.asarray(z_first - pitch_a / 2, dtype=np.float64), mr_len=ca * pitch_a,
        cos_sec=np.cos(phi), sin_sec=np.sin(phi),
        per_ring=scanner.crystals_per_ring,
    )
    predicted = crystal_centres(ring)
    if not np.allclose(predicted, c, atol=1e-6):
        raise ValueError(f"scanner {scanner.name}: crystal layout is not a ring of flat modules")
    return ring


def crystal_centres(ring: Ring) -> np.ndarray:
    """(N, 3) crystal centres of the ring model, in the scanner's crystal numbering."""
    n = ring.per_ring * ring.n_mr * ring.ca
    idx = np.arange(n)
    row, tang = idx // ring.per_ring, idx % ring.per_ring
    sec, i = tang // ring.ct, tang % ring.ct
    k, j = row // ring.ca, row % ring.ca
    d = ring.radius + ring.depth / 2
    s = (i + 0.5) * ring.pitch_t - ring.half_w
    cos, sin = np.asarray(ring.cos_sec)[sec], np.asarray(ring.sin_sec)[sec]
    x = d * cos - s * sin
    y = d * sin + s * cos
    z = np.asarray(ring.mr_z0)[k] + (j + 0.5) * ring.pitch_a
    return np.stack([x, y, z], axis=1)


@inline
def _prism(g, m, px, py, ux, uy):
    """(t0, t1) of the line inside sector m's module prism (depth x width, any z)."""
    c, s = g.cos_sec[m], g.sin_sec[m]
    a0, a1 = slab(px * c + py * s - g.radius, inverse(ux * c + uy * s), 0.0, g.depth)
    b0, b1 = slab(-px * s + py * c, inverse(-ux * s + uy * c), -g.half_w, g.half_w)
    return max(a0, b0), min(a1, b1)


@inline
def _angle(x, y):
    """atan2(y, x) to about 2e-4 rad (a polynomial on the octant, no libm call)."""
    ax, ay = abs(x), abs(y)
    a = min(ax, ay) / max(ax, ay, 1e-300)
    s = a * a
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * a + a
    if ay > ax:
        r = 0.5 * math.pi - r
    if x < 0.0:
        r = math.pi - r
    return -r if y < 0.0 else r


@inline
def _sector(g, x, y, step):
    """The sector around the point (x, y); when the point lies within 1e-3 of a sector
    boundary, the sector before it in the direction ``step`` (so no module is skipped)."""
    f = _angle(x, y) / (2.0 * math.pi / g.n_sec) + 0.5
    m = math.floor(f)
    frac = f - m
    if (step > 0 and frac < 1e-3) or (step < 0 and frac > 1.0 - 1e-3):
        m -= step
    return m % g.n_sec


@kernel
def find_module(g, px, py, pz, ux, uy, uz, ex_m, ex_k):
    """The first module ahead of p along u other than (ex_m, ex_k): (m, k, t_in, t_out), m = -1
    when the photon leaves the ring."""
    a = ux * ux + uy * uy
    if a < 1e-18:
        return -1, -1, 0.0, 0.0
    b = px * ux + py * uy
    rr = px * px + py * py
    disc_o = b * b - a * (rr - g.r_max * g.r_max)
    if disc_o <= 0.0:
        return -1, -1, 0.0, 0.0
    so = math.sqrt(disc_o)
    to0, to1 = (-b - so) / a, (-b + so) / a
    if to1 <= 0.0:
        return -1, -1, 0.0, 0.0
    lo = max(to0, 0.0)
    z_lo, z_hi = g.mr_z0[0], g.mr_z0[g.n_mr - 1] + g.mr_len
    za, zb = pz + lo * uz, pz + to1 * uz
    if (za > z_hi and zb > z_hi) or (za < z_lo and zb < z_lo):
        return -1, -1, 0.0, 0.0
    inv_uz = inverse(uz)
    # the ray is in the annulus radius .. r_max on up to two stretches
    ta0, tb0, ta1, tb1 = lo, to1, 1.0, 0.0
    disc_i = b * b - a * (rr - g.radius * g.radius)
    if disc_i > 0.0:
        si = math.sqrt(disc_i)
        ta0, tb0, ta1, tb1 = lo, (-b - si) / a, max((-b + si) / a, 0.0), to1
    step = 1 if px * uy - py * ux > 0.0 else -1
    for q in range(2):
        ta, tb = (ta0, tb0) if q == 0 else (ta1, tb1)
        if tb <= ta:
            continue
        m = _sector(g, px + ta * ux, py + ta * uy, step)
        m_end = _sector(g, px + tb * ux, py + tb * uy, -step)
        for _ in range(g.n_sec):
            p0, p1 = _prism(g, m, px, py, ux, uy)
            if p1 > p0 and p1 > 1e-9:
                best_k, best_t, best_out = -1, np.inf, 0.0
                for k in range(g.n_mr):
                    if m == ex_m and k == ex_k:
                        continue
                    z0 = g.mr_z0[k]
                    c0, c1 = slab(pz, inv_uz, z0, z0 + g.mr_len)
                    t0, t1 = max(p0, c0), min(p1, c1)
                    if t1 > t0 and t1 > 1e-9 and t0 < best_t:
                        best_k, best_t, best_out = k, max(t0, 0.0), t1
                if best_k >= 0:
                    return m, best_k, best_t, best_out
            if m == m_end:
                break
            m = (m + step) % g.n_sec
    return -1, -1, 0.0, 0.0


@inline
def _past_an_end(g, z, uz):
    """Whether a photon at axial position z (mm) is beyond an axial end of the ring's modules
    and moving away from them."""
    return (z > g.mr_z0[g.n_mr - 1] + g.mr_len and uz >= 0.0) or (z < g.mr_z0[0] and uz <= 0.0)


@inline
def _front_entry(g, px, py, pz, ux, uy, uz):
    """(m, k, t) of the module whose front face a photon crosses where it leaves the prism the
    modules' faces bound, for a photon inside the inscribed circle of the faces or inside the
    prism and heading into that circle (one leaving a module's front face for the bore); m = -2
    when it leaves the prism beyond an axial end of the ring moving away from it (it meets no
    module), m = -1 when this shortcut does not apply (it leaves between two modules or module
    rings, along the axis, towards the ring from beyond its end, or from outside the circle
    without crossing it).

    Every module lies outside that convex prism, so the face it is left through is the first
    module met. The face is the one of least positive crossing distance among the three around
    the sector where the line leaves the inscribed circle (the prism reaches at most half a
    sector further round)."""
    a = ux * ux + uy * uy
    if a < 1e-18:
        return -1, -1, 0.0
    b = px * ux + py * uy
    c = px * px + py * py - g.radius * g.radius
    disc = b * b - a * c
    if c >= 0.0:                        # outside the circle: inside the prism, heading in?
        m_p = _sector(g, px, py, 0)
        if b >= 0.0 or disc <= 0.0 or \
                px * g.cos_sec[m_p] + py * g.sin_sec[m_p] > g.radius + 1e-6:
            return -1, -1, 0.0
    t_c = (-b + math.sqrt(disc)) / a
    if _past_an_end(g, pz + t_c * uz, uz):   # the prism is left at least this far along
        return -2, -1, 0.0
    m0 = _sector(g, px + t_c * ux, py + t_c * uy, 0)
    m, t = -1, np.inf
    for dm in range(-1, 2):
        q = (m0 + dm) % g.n_sec
        un = ux * g.cos_sec[q] + uy * g.sin_sec[q]
        if un > 0.0:
            tq = (g.radius - px * g.cos_sec[q] - py * g.sin_sec[q]) / un
            if tq < t:
                m, t = q, tq
    if m < 0:
        return -1, -1, 0.0
    s = -(px + t * ux) * g.sin_sec[m] + (py + t * uy) * g.cos_sec[m]
    if abs(s) > g.half_w:
        return -1, -1, 0.0
    z = pz + t * uz
    for k in range(g.n_mr):
        if g.mr_z0[k] <= z <= g.mr_z0[k] + g.mr_len:
            return m, k, max(t, 0.0)
    if _past_an_end(g, z, uz):
        return -2, -1, 0.0
    return -1, -1, 0.0


@inline
def _in_module(rs, g, m, k, px, py, pz, ux, uy, uz, mu):
    """Delta tracking through the crystals of module (m, k) from p (inside it) along u at the
    crystal's attenuation ``mu`` (1/mm); the reflector between crystals does not attenuate.
    Returns (crystal, t) of the next interaction, or (-1, t) where the photon leaves the module."""
    c, s = g.cos_sec[m], g.sin_sec[m]
    d0, ud = px * c + py * s - g.radius, ux * c + uy * s
    s0, us = -px * s + py * c + g.half_w, -ux * s + uy * c
    a0, ua = pz - g.mr_z0[k], uz
    t_out = min(slab_exit(d0, ud, 0.0, g.depth), slab_exit(s0, us, 0.0, 2.0 * g.half_w),
                slab_exit(a0, ua, 0.0, g.mr_len))
    t = 0.0
    while True:
        t += exponential(rs) / mu
        if t >= t_out:
            return -1, t_out
        sv, av = s0 + t * us, a0 + t * ua
        i = min(max(math.floor(sv / g.pitch_t), 0), g.ct - 1)
        j = min(max(math.floor(av / g.pitch_a), 0), g.ca - 1)
        fs, fa = sv - i * g.pitch_t, av - j * g.pitch_a
        if (g.margin_t <= fs <= g.pitch_t - g.margin_t
                and g.margin_a <= fa <= g.pitch_a - g.margin_a):
            return (k * g.ca + j) * g.per_ring + m * g.ct + i, t


@inline
def track(rs, g, table, px, py, pz, ux, uy, uz, energy, path, m, k, hits):
    """Follow a photon into and through the ring. ``table`` is the crystal's (keV, 2) table of
    mu and photo-electric fraction; ``m, k`` the module p lies in (-1 when outside the ring);
    ``path`` the distance (mm) already travelled since emission.

    Fills ``hits`` (MAX_HITS, 3) with the per-crystal deposits (crystal, keV, path mm at the
    first deposit there) and returns their number (0 when the photon escapes).
    """
    n = 0
    inside = m >= 0
    ex_m, ex_k = -1, -1
    for _ in range(64):
        if not inside:
            m, k, t_in = _front_entry(g, px, py, pz, ux, uy, uz)
            if m == -2:
                return n
            if m < 0:
                m, k, t_in, _ = find_module(g, px, py, pz, ux, uy, uz, ex_m, ex_k)
                if m < 0:
                    return n
            px += t_in * ux
            py += t_in * uy
            pz += t_in * uz
            path += t_in
            inside = True
        e_idx = min(int(energy), table.shape[0] - 1)
        crystal, t = _in_module(rs, g, m, k, px, py, pz, ux, uy, uz, table[e_idx, 0])
        px += t * ux
        py += t * uy
        pz += t * uz
        path += t
        if crystal < 0:
            inside = False
            ex_m, ex_k = m, k
            continue
        deposit, energy, ux, uy, uz = crystal_interaction(rs, energy, table[e_idx, 1], ux, uy, uz)
        slot = n
        for q in range(n):
            if hits[q, 0] == crystal:
                slot = q
                break
        if slot == n:
            if n == MAX_HITS:
                slot = n - 1
            else:
                hits[n, 0], hits[n, 1], hits[n, 2] = crystal, 0.0, path
                n += 1
        hits[slot, 1] += deposit
        if energy <= 0.0:
            return n
    return n


TIME_PER_MM_PS = 1.0 / SPEED_OF_LIGHT_MM_PER_PS
