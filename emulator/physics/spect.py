"""Single-photon emitters seen by rotating parallel-hole gamma cameras (SPECT): numba kernels.

Photons are followed analogously through the phantom (:mod:`emulator.physics.flight`), and *forced
detection* makes the cameras see them: at the emission point and at every scattering, the
expected number of photons that leave towards each head within its collimator's acceptance and
cross the phantom unscattered is ``k x P(direction) x 4 pi g x exp(-integral mu)``, with ``g``
the collimator's geometric efficiency (Cherry, Sorenson & Phelps), ``P`` the angular density of
the emission (isotropic) or of the scattering (Klein-Nishina or coherent, at the head's
direction, energy after scattering), and ``k`` the number of decays one simulated history stands
for. A Poisson number of events with that mean is detected: expectations are exact, and the
acceptance of the holes (transmission falling linearly to zero at ``d / l_eff``) gives the
distance-dependent geometric resolution R_g = d (l_eff + b) / l_eff. In the NaI crystal the photon
interacts at an exponential depth, is photo-absorbed or Compton-scattered and followed in the slab;
its deposits are summed at their energy-weighted position (Anger logic), blurred by the camera's
intrinsic resolution, into a pixel.

The heads step through ``views_per_head`` views over the acquisition: view v lasts from
``v * D / V`` to ``(v + 1) * D / V`` of a run of duration D (:func:`view_of`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from emulator import records
from emulator.jit import kernel
from emulator.physics.flight import interact, next_interaction, optical_depth
from emulator.physics.interactions import (
    ELECTRON_KEV,
    crystal_interaction,
    isotropic,
    klein_nishina_pdf,
    positron_path,
    rayleigh_pdf,
)
from emulator.rng import exponential, normal, uniform
from hw.scanner import Scanner

#: Intrinsic spatial resolution (FWHM mm) of an Anger camera (DOMAIN.md: NaI, 3.6 mm).
NAI_INTRINSIC_FWHM_MM = 3.6
#: Decay ids per history: its detected photons (different decays) get 64 * id + 0..63.
IDS_PER_HISTORY = 64
#: A history's expected detections at the emission point stay below this (sets k).
MAX_EMISSION_MEAN = 0.25


class Heads(NamedTuple):
    """Gamma-camera geometry, mm and radians."""

    n_heads: int
    columns: int
    rows: int
    pixel: float
    ror: float              # axis to collimator face
    hole_length: float
    l_eff: float
    theta_max: float        # hole acceptance d / l_eff (rad)
    four_pi_g: float        # 4 pi x geometric efficiency
    thickness: float
    start: tuple[float, ...]
    step: float             # gantry step per view (rad)
    views: int
    intrinsic_sigma: float


def heads_of(scanner: Scanner) -> Heads:
    s = scanner.spect
    if s is None:
        raise ValueError(f"scanner {scanner.name} has no gamma-camera heads")
    col = s.collimator
    intrinsic = NAI_INTRINSIC_FWHM_MM if "nai" in scanner.material.name.lower() else 0.0
    return Heads(
        n_heads=s.n_heads, columns=s.columns, rows=s.rows, pixel=s.pixel_mm,
        ror=s.radius_of_rotation_mm, hole_length=col.hole_length_mm,
        l_eff=col.effective_length_mm, theta_max=col.hole_diameter_mm / col.effective_length_mm,
        four_pi_g=4.0 * math.pi * col.efficiency, thickness=scanner.crystal_size_mm[2],
        start=tuple(math.radians(a) for a in s.head_start_deg),
        step=math.radians(s.arc_deg / s.views_per_head), views=s.views_per_head,
        intrinsic_sigma=intrinsic / 2.3548,
    )


def history_weight(scanner: Scanner) -> int:
    """Decays one simulated history stands for: the emission's expected detections per head
    (the geometric efficiency g) times k stays below :data:`MAX_EMISSION_MEAN`."""
    return max(1, int(MAX_EMISSION_MEAN / scanner.spect.collimator.efficiency))


def view_of(t_ps: np.ndarray, duration_s: float, views_per_head: int, start_s: float = 0.0
            ) -> np.ndarray:
    """The view (0 .. views_per_head - 1) the heads were at, at times ``t_ps`` of a run of
    ``duration_s`` that started at ``start_s``."""
    view_ps = duration_s * 1e12 / views_per_head
    v = np.floor((np.asarray(t_ps) - start_s * 1e12) / view_ps).astype(np.int64)
    return np.clip(v, 0, views_per_head - 1)


@kernel
def _poisson(rs, mean):
    """A Poisson count of small ``mean`` (inversion)."""
    u = uniform(rs)
    p = math.exp(-mean)
    n, cdf = 0, p
    while u > cdf and n < 64:
        n += 1
        p *= mean / n
        cdf += p
    return n


@kernel
def _camera(rs, hd, crystal, h, energy, b, s, z, t0, decay, photon, scatters, x0, y0, z0,
            efficiency, dep, n_dep, counters):
    """One photon through the holes of head h into its crystal: (n_dep after)."""
    # the holes: radial angle with density ~ (1 - x) x on x = theta / theta_max (the median of
    # three uniforms), azimuth uniform; the photon reaches the crystal displaced accordingly
    a, bb, c = uniform(rs), uniform(rs), uniform(rs)
    x = max(min(a, bb), min(max(a, bb), c))
    psi = 2.0 * math.pi * uniform(rs)
    reach = (b + hd.l_eff) * hd.theta_max * x
    ps, pz = s + reach * math.cos(psi), z + reach * math.sin(psi)
    # the crystal slab: depth along the head's inward normal, photon entering straight
    e_idx = min(int(energy), crystal.shape[0] - 1)
    depth = exponential(rs) / crystal[e_idx, 0]
    if depth > hd.thickness:
        return n_dep
    ux, uy, uz = 0.0, 0.0, 1.0                 # (across, along z, into the crystal)
    qx, qy, qz = ps, pz, depth
    total, cx, cy = 0.0, 0.0, 0.0
    for _ in range(32):
        e_idx = min(int(energy), crystal.shape[0] - 1)
        left, energy, ux, uy, uz = crystal_interaction(rs, energy, crystal[e_idx, 1], ux, uy, uz)
        total += left
        cx += left * qx
        cy += left * qy
        if energy == 0.0:
            break
        step = exponential(rs) / crystal[min(int(energy),
                                                                 crystal.shape[0] - 1), 0]
        qz += step * uz
        if qz < 0.0 or qz > hd.thickness:
            break
        qx += step * ux
        qy += step * uy
    counters[records.DEPOSITS] += 1
    if total <= 0.0 or uniform(rs) >= efficiency:
        counters[records.REJECTED] += 1
        return n_dep
    cx = cx / total + hd.intrinsic_sigma * normal(rs)
    cy = cy / total + hd.intrinsic_sigma * normal(rs)
    col = math.floor(cx / hd.pixel + hd.columns / 2.0)
    row = math.floor(cy / hd.pixel + hd.rows / 2.0)
    if col < 0 or col >= hd.columns or row < 0 or row >= hd.rows:
        return n_dep
    r = dep[n_dep]
    r.t = t0
    r.crystal = (h * hd.rows + row) * hd.columns + col
    r.energy = total
    r.decay = decay
    r.photon = photon
    r.kind = records.GAMMA
    r.scatters = min(scatters, 255)
    r.x, r.y, r.z = x0, y0, z0
    return n_dep + 1


@kernel
def _force(rs, hd, md, crystal, norms, weight, view, vx, vy, vz, ux, uy, uz, energy,
           vertex, t0, spread_ps, decay, n_ev, photon, scatters, x0, y0, z0, efficiency, dep,
           n_dep, counters, work):
    """Forced detection from one vertex (``vertex`` 0: emission, isotropic; 1: a scattering
    of a photon of ``energy`` travelling along u) towards every head. Each detected photon is
    another of the history's decays: its own decay id (``decay + n_ev``) and time (``t0`` plus
    up to ``spread_ps``). Returns (n_dep, n_ev)."""
    water = md.water
    e_idx = min(int(energy), water.shape[0] - 1)
    half_w, half_h = hd.columns * hd.pixel / 2.0, hd.rows * hd.pixel / 2.0
    for h in range(hd.n_heads):
        phi = hd.start[h] + hd.step * view
        rx, ry = math.cos(phi), math.sin(phi)
        b = hd.ror - (vx * rx + vy * ry)
        s = -vx * ry + vy * rx
        if b <= 0.0 or abs(s) > half_w or abs(vz) > half_h:
            continue
        for kind in range(2 if vertex else 1):
            if vertex == 0:
                e_out, density = energy, 1.0 / (4.0 * math.pi)
            else:
                cos_t = ux * rx + uy * ry
                if kind == 0:      # Compton
                    e_out = energy / (1.0 + energy / ELECTRON_KEV * (1.0 - cos_t))
                    frac = 1.0 - water[e_idx, 1] - water[e_idx, 2]
                    density = frac * klein_nishina_pdf(energy, cos_t)
                else:              # coherent
                    e_out = energy
                    density = water[e_idx, 2] * rayleigh_pdf(energy, cos_t, norms[e_idx])
            mu = water[min(int(e_out), water.shape[0] - 1), 0]
            tau = optical_depth(md, mu, vx, vy, vz, rx, ry, 0.0, work)
            mean = weight * density * hd.four_pi_g * math.exp(-tau)
            for _ in range(_poisson(rs, mean)):
                t = t0 + int(spread_ps * uniform(rs))
                n_dep = _camera(rs, hd, crystal, h, e_out, b, s, vz, t, decay + min(n_ev, 63),
                                photon, scatters + vertex, x0, y0, z0, efficiency, dep, n_dep,
                                counters)
                n_ev += 1
    return n_dep, n_ev


@kernel
def decays(times, pos, first_id, start, positron_fraction, prange, lines, md, heads, crystal,
           efficiency, norms, weight, spread_ps, run_start_ps, view_ps, dep, n_dep,
           counters, rs, work):
    """Histories ``start..`` (times ps, positions mm), each standing for ``weight`` decays, into
    deposits ``dep[n_dep:]``; returns (next history, n_dep) like :func:`emulator.physics.pet.decays`.
    A history's detected photons get decay ids ``64 * (first_id + i) + 0..63``."""
    water = md.water
    n_lines = lines.shape[0]
    ph = np.empty((2 + n_lines, 4))         # ux, uy, uz, keV
    for i in range(start, times.size):
        if n_dep + 64 * (2 + n_lines) > dep.size:
            return i, n_dep
        view = min(max((times[i] - run_start_ps) // view_ps, 0), heads.views - 1)
        x, y, z = pos[i, 0], pos[i, 1], pos[i, 2]
        n_ph = 0
        px, py, pz = x, y, z
        if uniform(rs) < positron_fraction:
            dx, dy, dz = positron_path(rs, prange)
            px, py, pz = x + dx, y + dy, z + dz
            ux, uy, uz = isotropic(rs)
            ph[0, 0], ph[0, 1], ph[0, 2], ph[0, 3] = ux, uy, uz, ELECTRON_KEV
            ph[1, 0], ph[1, 1], ph[1, 2], ph[1, 3] = -ux, -uy, -uz, ELECTRON_KEV
            n_ph = 2
        first_line = n_ph
        for q in range(n_lines):
            if uniform(rs) < lines[q, 1]:
                ph[n_ph, 0], ph[n_ph, 1], ph[n_ph, 2] = isotropic(rs)
                ph[n_ph, 3] = lines[q, 0]
                n_ph += 1
        decay = IDS_PER_HISTORY * (first_id + i)
        n_ev = 0
        for p in range(n_ph):
            counters[records.PHOTONS] += 1
            photon = p if p < first_line else 2 + (p - first_line)
            qx, qy, qz = (px, py, pz) if p < first_line else (x, y, z)
            ex, ey, ez = qx, qy, qz
            ux, uy, uz, energy = ph[p, 0], ph[p, 1], ph[p, 2], ph[p, 3]
            n_dep, n_ev = _force(rs, heads, md, crystal, norms, weight, view, qx, qy, qz,
                                 ux, uy, uz, energy, 0, times[i], spread_ps, decay, n_ev,
                                 photon, 0, ex, ey, ez, efficiency, dep, n_dep, counters, work)
            scatters = 0
            while n_dep + 64 <= dep.size:
                d = next_interaction(rs, md, water[min(int(energy), water.shape[0] - 1), 0],
                                     qx, qy, qz, ux, uy, uz)
                if d < 0.0:
                    break
                qx, qy, qz = qx + d * ux, qy + d * uy, qz + d * uz
                # the scattered photon's expected detections from here, before it moves on
                n_dep, n_ev = _force(rs, heads, md, crystal, norms, weight, view, qx, qy,
                                     qz, ux, uy, uz, energy, 1, times[i], spread_ps, decay,
                                     n_ev, photon, scatters, ex, ey, ez, efficiency, dep, n_dep,
                                     counters, work)
                energy, ux, uy, uz = interact(rs, water, energy, ux, uy, uz)
                if energy <= 0.0:
                    counters[records.ABSORBED] += 1
                    break
                scatters += 1
            if scatters:
                counters[records.SCATTERED] += 1
    return times.size, n_dep
