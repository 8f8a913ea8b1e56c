"""A PET ring as the photon sees it: flat modules of crystal arrays, and where a photon enters one.

Each module is a box: depth ``d`` (0 at the front face, at ``radius`` from the axis) by width
``s`` (tangential) by ``z`` (one module ring). Its crystals fill cells of one pitch, centred in
them; what lies between crystals (reflector) does not stop photons (the photons inside a module
are followed in :mod:`emulator.physics.lanes`). A photon from the bore finds the module it enters in one
step (:func:`front_entry`, branch-free, so the lanes vectorise it); others (from beyond the
ring's ends, between modules, leaving a module sideways) by the general search
(:func:`find_module`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from emulator.jit import inline
from emulator.physics.slabs import inverse, slab
from emulator.simd import sel, tab, vmax, vmin
from hw.scanner import Scanner


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
    z_lo: float                 # low z edge of the first module ring's crystal cells
    z_hi: float                 # high z edge of the last one's
    mr_pitch: float             # from one module ring to the next (their length + the gap)
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
        z_lo=float(z_first[0] - pitch_a / 2), z_hi=float(z_first[-1] - pitch_a / 2 + ca * pitch_a),
        mr_pitch=float(z_first[1] - z_first[0]) if n_mr > 1 else ca * pitch_a, mr_len=ca * pitch_a,
        cos_sec=np.cos(phi), sin_sec=np.sin(phi),
        per_ring=scanner.crystals_per_ring,
    )
    if not backs_clear(ring):
        raise ValueError(f"scanner {scanner.name}: its modules overlap (each must lie on the "
                         f"bore's side of every other module's back face)")
    predicted = crystal_centres(ring)
    if not np.allclose(predicted, c, atol=1e-6):
        raise ValueError(f"scanner {scanner.name}: crystal layout is not a ring of flat modules")
    return ring


def backs_clear(ring: Ring) -> bool:
    """Whether every module lies on the bore's side of the plane of every other module's back
    face (true of modules that do not overlap): then a photon that leaves a module through its
    back face, moving out, meets no module again."""
    theta = 2.0 * np.pi * np.arange(1, ring.n_sec) / ring.n_sec
    outer = ring.radius + ring.depth
    reach = np.maximum(ring.radius * np.cos(theta), outer * np.cos(theta)) \
        + ring.half_w * np.abs(np.sin(theta))
    return bool(np.all(reach < outer - 1e-9))


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
    z = ring.z_lo + k * ring.mr_pitch + (j + 0.5) * ring.pitch_a
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
    """atan2(y, x) to about 2e-4 rad (a polynomial on the octant, no libm call; branch-free)."""
    ax, ay = abs(x), abs(y)
    a = vmin(ax, ay) / vmax(vmax(ax, ay), 1e-300)
    s = a * a
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * a + a
    r = sel(ay > ax, 0.5 * math.pi - r, r)
    r = sel(x < 0.0, math.pi - r, r)
    return sel(y < 0.0, -r, r)


@inline
def _wrap(m, n):
    """m modulo n for m in [-n, 2n)."""
    return sel(m < 0, m + n, sel(m >= n, m - n, m))


@inline
def _sector(g, x, y, step):
    """The sector around the point (x, y); when the point lies within 1e-3 of a sector
    boundary, the sector before it in the direction ``step`` (so no module is skipped)."""
    f = _angle(x, y) / (2.0 * math.pi / g.n_sec) + 0.5
    m = np.int64(math.floor(f))
    frac = f - m
    m = sel(((step > 0) & (frac < 1e-3)) | ((step < 0) & (frac > 1.0 - 1e-3)), m - step, m)
    return _wrap(m, g.n_sec)


@inline
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
    z_lo, z_hi = g.z_lo, g.z_hi
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
                    z0 = g.z_lo + k * g.mr_pitch
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
def past_an_end(g, z, uz):
    """Whether a photon at axial position z (mm) is beyond an axial end of the ring's modules
    and moving away from them."""
    return ((z > g.z_hi) & (uz >= 0.0)) | ((z < g.z_lo) & (uz <= 0.0))


@inline
def module_ring(g, z):
    """(k, inside): the module ring k nearest the axial position z (mm), and whether z lies
    within its crystals' cells (not in a gap between module rings or beyond an end)."""
    k = vmin(vmax(np.int64(math.floor((z - g.z_lo) / g.mr_pitch)), 0), g.n_mr - 1)
    z0 = g.z_lo + k * g.mr_pitch
    return k, (z0 <= z) & (z <= z0 + g.mr_len)


@inline
def front_entry(g, px, py, pz, ux, uy, uz):
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
    sector further round). Branch-free (SIMD lanes)."""
    a = ux * ux + uy * uy
    b = px * ux + py * uy
    c = px * px + py * py - g.radius * g.radius
    disc = b * b - a * c
    m_p = _sector(g, px, py, 0)
    # outside the circle, the shortcut needs a photon inside the prism heading into the circle
    into = (b < 0.0) & (disc > 0.0) & (
        px * tab(g.cos_sec, m_p) + py * tab(g.sin_sec, m_p) <= g.radius + 1e-6)
    applies = (a >= 1e-18) & ((c < 0.0) | into)
    t_c = (-b + math.sqrt(vmax(disc, 0.0))) / vmax(a, 1e-300)
    gone = past_an_end(g, pz + t_c * uz, uz)       # the prism is left at least this far along
    m0 = _sector(g, px + t_c * ux, py + t_c * uy, 0)
    m, t = np.int64(-1), np.inf
    for dm in range(-1, 2):
        q = _wrap(m0 + dm, g.n_sec)
        cq, sq = tab(g.cos_sec, q), tab(g.sin_sec, q)
        un = ux * cq + uy * sq
        tq = (g.radius - px * cq - py * sq) / un
        better = (un > 0.0) & (tq < t)
        m, t = sel(better, q, m), sel(better, tq, t)
    mm = vmax(m, 0)
    s = -(px + t * ux) * tab(g.sin_sec, mm) + (py + t * uy) * tab(g.cos_sec, mm)
    z = pz + t * uz
    k, in_ring = module_ring(g, z)
    on_face = (m >= 0) & (abs(s) <= g.half_w)
    hit = applies & ~gone & on_face & in_ring
    away = applies & (gone | (on_face & ~in_ring & past_an_end(g, z, uz)))
    return sel(hit, m, sel(away, -2, -1)), sel(hit, k, -1), sel(hit, vmax(t, 0.0), 0.0)
