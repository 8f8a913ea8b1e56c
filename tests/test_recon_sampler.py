"""A test fixture, not physics: list-mode PET data from known emission points by pure geometry.

Each emission point sends a back-to-back pair along an isotropic direction; both ends are followed
to the module planes at the crystals' mean depth of interaction (the surface on which the
reconstruction puts its LOR endpoints, :func:`recon.pet.lors.lor_endpoints`), the crystals hit there
form the coincidence, and ``dt`` is the true time-of-flight difference blurred by the scanner's
CTR. No attenuation, scatter, randoms, penetration or energy: what the reconstruction gets back is
only what the geometry put in, which is what the projector and image-quality tests need while they
must not depend on the emulator. The tests in this file check the sampler itself.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from hw import COINC_DTYPE, SPEED_OF_LIGHT_MM_PER_PS
from hw.scanner import Scanner
from recon.pet.lors import FWHM_PER_SIGMA, lor_endpoints, mean_interaction_depth_mm


def _ring_layout(scanner: Scanner):
    """Module angles, crystals per module, tangential pitch and the axial crystal-row centres."""
    n_mod = scanner.n_modules
    per_module = scanner.crystals_per_ring // n_mod
    c = scanner.crystal_centres
    pitch_t = float(np.linalg.norm(c[1, :2] - c[0, :2])) if per_module > 1 else 1.0
    ring_z = c[np.arange(scanner.n_rings) * scanner.crystals_per_ring, 2].copy()
    return 2 * np.pi * np.arange(n_mod) / n_mod, per_module, pitch_t, ring_z


@numba.njit(cache=True)
def _hit_crystals(p, u, sign, phi, per_module, pitch_t, ring_z, radius, half_t, half_a,
                  crystals_per_ring):
    """Crystal hit by each ray p + t sign u (t > 0) on the module planes at ``radius`` (-1 where
    none, e.g. in the gap between two crystals) and the distance t."""
    n = p.shape[0]
    crystal = np.full(n, -1, np.int64)
    dist = np.zeros(n)
    pitch_a = ring_z[1] - ring_z[0] if ring_z.size > 1 else 2 * half_a
    for i in range(n):
        ux, uy, uz = sign * u[i, 0], sign * u[i, 1], sign * u[i, 2]
        best, module = np.inf, -1
        for m in range(phi.size):
            nx, ny = np.cos(phi[m]), np.sin(phi[m])
            un = ux * nx + uy * ny
            if un > 1e-12:
                t = (radius - p[i, 0] * nx - p[i, 1] * ny) / un
                if t < best:
                    best, module = t, m
        if module < 0:
            continue
        hx, hy, hz = p[i, 0] + best * ux, p[i, 1] + best * uy, p[i, 2] + best * uz
        offset = -hx * np.sin(phi[module]) + hy * np.cos(phi[module])
        local = int(np.floor(offset / pitch_t + per_module / 2))
        ring = int(np.floor((hz - ring_z[0]) / pitch_a + 0.5))
        if local < 0 or local >= per_module or ring < 0 or ring >= ring_z.size:
            continue
        if (abs(offset - (local + 0.5 - per_module / 2) * pitch_t) > half_t
                or abs(hz - ring_z[ring]) > half_a):
            continue
        crystal[i] = ring * crystals_per_ring + module * per_module + local
        dist[i] = best
    return crystal, dist


def isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unit vectors, uniform on the sphere."""
    u = rng.standard_normal((n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def sample_coinc(scanner: Scanner, points: np.ndarray, rng: np.random.Generator,
                 directions: np.ndarray | None = None, t_step_ps: int = 1000) -> np.ndarray:
    """COINC_DTYPE prompts of annihilations at ``points`` (n, 3) mm along ``directions`` (n, 3)
    unit vectors (isotropic when None); undetected ones dropped."""
    n = len(points)
    u = isotropic(rng, n) if directions is None else directions
    phi, per_module, pitch_t, ring_z = _ring_layout(scanner)
    geometry = (phi, per_module, pitch_t, ring_z,
                scanner.ring_radius_mm + mean_interaction_depth_mm(scanner),
                scanner.crystal_size_mm[0] / 2, scanner.crystal_size_mm[1] / 2,
                scanner.crystals_per_ring)
    a, ta = _hit_crystals(points, u, 1.0, *geometry)
    b, tb = _hit_crystals(points, u, -1.0, *geometry)
    k = scanner.acquisition["min_sector_difference"]
    ok = (a >= 0) & (b >= 0)
    ok[ok] &= scanner.sector_difference(a[ok], b[ok]) >= k
    sigma_t = scanner.response.ctr_ps / FWHM_PER_SIGMA
    dt = (tb - ta) / SPEED_OF_LIGHT_MM_PER_PS + sigma_t * rng.standard_normal(n)
    a, b, dt = a[ok], b[ok], dt[ok]
    swap = dt < 0
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    out = np.zeros(len(a), COINC_DTYPE)
    out["t"] = np.arange(len(a), dtype=np.int64) * t_step_ps
    out["crystal_a"], out["crystal_b"] = a, b
    out["energy_a"] = out["energy_b"] = 511.0
    out["dt"] = np.rint(np.abs(dt)).astype(np.int32)
    return out


def points_in_sphere(rng: np.random.Generator, n: int, centre, diameter_mm: float) -> np.ndarray:
    """``n`` points uniform in a sphere (mm)."""
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = diameter_mm / 2 * rng.random(n) ** (1 / 3)
    return np.asarray(centre, float) + v * r[:, None]


def points_in_cylinder(rng: np.random.Generator, n: int, radius_mm: float, length_mm: float,
                       centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """``n`` points uniform in a z-aligned cylinder (mm)."""
    r = radius_mm * np.sqrt(rng.random(n))
    phi = 2 * np.pi * rng.random(n)
    z = length_mm * (rng.random(n) - 0.5)
    return np.asarray(centre, float) + np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


# ------------------------------------------------------------------------- tests of the sampler


def test_lines_pass_through_the_emission_point(brain):
    rng = np.random.default_rng(3)
    p = np.array([[12.0, -30.0, 8.0]] * 2000)
    coinc = sample_coinc(brain, p, rng)
    assert len(coinc) > 500
    ends = lor_endpoints(brain)
    ca, cb = ends[coinc["crystal_a"]], ends[coinc["crystal_b"]]
    d = cb - ca
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    w = p[0] - ca
    dist = np.linalg.norm(w - np.einsum("ij,ij->i", w, d)[:, None] * d, axis=1)
    # the hit is within a crystal of its centre: 3.2 mm pitch, 3 mm crystals
    assert np.percentile(dist, 95) < 2.5


def test_tof_points_to_the_emission_point(brain):
    rng = np.random.default_rng(4)
    p = np.array([[0.0, 60.0, 0.0]] * 4000)
    coinc = sample_coinc(brain, p, rng)
    ends = lor_endpoints(brain)
    ca, cb = ends[coinc["crystal_a"]], ends[coinc["crystal_b"]]
    mid = (ca + cb) / 2
    towards_a = ca - mid
    towards_a /= np.linalg.norm(towards_a, axis=1, keepdims=True)
    est = mid + towards_a * (coinc["dt"] * SPEED_OF_LIGHT_MM_PER_PS / 2)[:, None]
    # 22 mm TOF sigma over 4000 events; a wrong sign of dt would give -60
    assert np.median(est[:, 1]) == pytest.approx(60.0, abs=2.0)
    assert np.all(coinc["dt"] >= 0)
