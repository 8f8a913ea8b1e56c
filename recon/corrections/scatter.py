"""PET scatter estimate: single-scatter simulation (Watson 2000) scaled to the tails.

For a pair of detectors A, B and a scatter point S in the attenuating object, one photon of an
annihilation on the line S-A reaches A unscattered while the other is Compton-scattered at S
towards B (or the other way round). The expected once-scattered coincidences of (A, B) are

    sum over S of  V_S mu_S  KN(theta) / sigma_KN(511)  g_SA g_SB
        [ eps(511) eps(E') exp(-mu_SA - k(E') mu_SB) lambda_SA
        + eps(E') eps(511) exp(-k(E') mu_SA - mu_SB) lambda_SB ]

with theta the scattering angle, E' = 511 / (2 - cos theta) keV, KN the Klein-Nishina cross
section, ``g_SD = cos(incidence) / |D - S|^2``, ``mu_SD`` and ``lambda_SD`` the integrals of the
attenuation (511 keV) and of the emission estimate from S to D, ``k(E')`` the ratio of the
Compton cross sections at E' and 511 keV (soft tissue and water attenuate by Compton scattering
here), and ``eps(E)`` the detection probability: absorption in the crystal times the fraction of
the energy response inside the sorter's window.

The simulation runs on sampled detectors (every :data:`TANGENTIAL_STEP`-th crystal of
:data:`SAMPLED_RINGS` rings) and scatter points on a :data:`POINT_GRID_MM` grid of the mu-map,
and is interpolated to any crystal pair. Its scale (what the constants left out and multiple
scatter add) is fitted to the prompts minus delayeds whose lines pass outside the object (the
tails), where nothing but scatter and randoms lands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError
from recon.grid import Grid
from recon.pet.lors import LORs, lor_endpoints
from recon.pet.system import PairFactor, sample_pairs, valid_pair_count

TANGENTIAL_STEP = 8
SAMPLED_RINGS = 7
POINT_GRID_MM = 12.0
#: Attenuation (1/mm) above which a point of the mu-map belongs to the object.
OBJECT_MU_PER_MM = 0.002
#: Lines passing this far (mm) outside the object's transaxial radius make the tails.
TAIL_MARGIN_MM = 8.0
TAIL_SAMPLES = 1_000_000
_STEP_MM = 3.0


@dataclass(frozen=True)
class ScatterShape:
    """The simulation on sampled detectors: ``table[ta, ra, tb, rb]`` (relative units), the
    sampled rings, and the object's transaxial radius (mm) that defines the tails."""

    table: np.ndarray
    rings: np.ndarray
    tangential_step: int
    object_radius_mm: float


def klein_nishina(cos_theta: float) -> float:
    """Klein-Nishina differential cross section at 511 keV (relative: r_e^2 / 2 left out)."""
    return float(_kn(float(cos_theta)))


def compton_total(energy_kev: np.ndarray | float) -> np.ndarray:
    """Klein-Nishina total cross section per electron (relative: Thomson's is 4 / 3)."""
    return np.vectorize(_sigma)(np.asarray(energy_kev, np.float64))


def _efficiency_table(scanner: Scanner, window_kev: tuple[float, float]) -> np.ndarray:
    """eps(E) at E = 0, 1, ..., 511 keV: crystal absorption times the window's acceptance."""
    e = np.arange(512, dtype=np.float64)
    e[0] = 1.0
    sigma = scanner.response.fwhm_kev(e) / 2.3548200450309493
    lo, hi = window_kev
    accept = 0.5 * (np.vectorize(math.erf)((hi - e) / (sigma * math.sqrt(2)))
                    - np.vectorize(math.erf)((lo - e) / (sigma * math.sqrt(2))))
    absorb = -np.expm1(-scanner.material.mu(e) * scanner.crystal_size_mm[2])
    return (accept * absorb).astype(np.float64)


def sampled_crystals(scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """(crystal indices [ring sample, tangential sample], the sampled rings)."""
    rings = np.unique(np.round(np.linspace(0, scanner.n_rings - 1, SAMPLED_RINGS)).astype(int))
    tang = np.arange(0, scanner.crystals_per_ring, TANGENTIAL_STEP)
    return rings[:, None] * scanner.crystals_per_ring + tang[None, :], rings


def simulate(scanner: Scanner, grid: Grid, mu: np.ndarray, emission: np.ndarray,
             window_kev: tuple[float, float]) -> ScatterShape:
    """The single-scatter simulation of ``emission`` (any units, on ``grid``) in ``mu``
    (1/mm at 511 keV, on ``grid``)."""
    if mu.shape != tuple(grid.shape) or emission.shape != tuple(grid.shape):
        raise UserError(f"mu-map and emission must be on the grid {grid.shape}")
    crystals, rings = sampled_crystals(scanner)
    ends = lor_endpoints(scanner).astype(np.float64)
    det = ends[crystals.ravel()]
    normals = scanner.crystal_normals[crystals.ravel()].astype(np.float64)
    points, volume = _scatter_points(grid, mu)
    if points.shape[0] == 0:
        raise UserError("the mu-map holds no attenuating object: no scatter to estimate")
    origin = np.asarray(grid.origin_mm, np.float64)
    voxel = np.asarray(grid.voxel_mm, np.float64)
    mu64, em64 = mu.astype(np.float32), np.maximum(emission, 0).astype(np.float32)
    mu_int, em_int, geo = _rays(points[:, :3], det, normals, mu64, em64, origin, voxel, _STEP_MM)
    eff = _efficiency_table(scanner, window_kev)
    table = _pairs(points, volume, det, mu_int, em_int, geo, eff, float(compton_total(511.0)))
    n_r, n_t = crystals.shape
    table = table.reshape(n_r, n_t, n_r, n_t).transpose(1, 0, 3, 2)
    xy = np.hypot(*np.meshgrid(*(grid.origin_mm[i] + grid.voxel_mm[i] * np.arange(grid.shape[i])
                                 for i in (0, 1)), indexing="ij"))
    inside = (mu > OBJECT_MU_PER_MM).any(axis=2)
    return ScatterShape(np.ascontiguousarray(table), rings, TANGENTIAL_STEP,
                        float(xy[inside].max()) if inside.any() else 0.0)


def _scatter_points(grid: Grid, mu: np.ndarray) -> tuple[np.ndarray, float]:
    """Centres of the :data:`POINT_GRID_MM` cells whose mean attenuation marks the object:
    (P, 4) [x, y, z, mean mu], and the cells' volume (mm^3)."""
    f = [max(1, round(POINT_GRID_MM / v)) for v in grid.voxel_mm]
    n = [s // k for s, k in zip(grid.shape, f, strict=True)]
    cells = mu[:n[0] * f[0], :n[1] * f[1], :n[2] * f[2]].reshape(
        n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
    idx = np.argwhere(cells > OBJECT_MU_PER_MM)
    size = np.asarray(grid.voxel_mm) * np.asarray(f)
    centres = np.asarray(grid.origin_mm) + (idx * np.asarray(f) + (np.asarray(f) - 1) / 2) \
        * np.asarray(grid.voxel_mm)
    out = np.column_stack([centres, cells[tuple(idx.T)]]).astype(np.float64)
    return out, float(np.prod(size))


@numba.njit(cache=True, inline="always")
def _sample(vol, x, y, z, origin, voxel):
    i = int((x - origin[0]) / voxel[0] + 0.5)
    j = int((y - origin[1]) / voxel[1] + 0.5)
    k = int((z - origin[2]) / voxel[2] + 0.5)
    if i < 0 or j < 0 or k < 0 or i >= vol.shape[0] or j >= vol.shape[1] or k >= vol.shape[2]:
        return 0.0
    return vol[i, j, k]


@numba.njit(cache=True, parallel=True)
def _rays(points, det, normals, mu, em, origin, voxel, step):
    """Per (point, detector): integrals of mu and of the emission from the point to the
    detector, and cos(incidence) / distance^2."""
    n_p, n_d = points.shape[0], det.shape[0]
    mu_int = np.zeros((n_p, n_d))
    em_int = np.zeros((n_p, n_d))
    geo = np.zeros((n_p, n_d))
    for p in numba.prange(n_p):
        for d in range(n_d):
            dx = det[d, 0] - points[p, 0]
            dy = det[d, 1] - points[p, 1]
            dz = det[d, 2] - points[p, 2]
            length = math.sqrt(dx * dx + dy * dy + dz * dz)
            ux, uy, uz = dx / length, dy / length, dz / length
            n = int(length / step) + 1
            h = length / n
            sm = 0.0
            se = 0.0
            for s in range(n):
                t = (s + 0.5) * h
                x = points[p, 0] + ux * t
                y = points[p, 1] + uy * t
                z = points[p, 2] + uz * t
                sm += _sample(mu, x, y, z, origin, voxel)
                se += _sample(em, x, y, z, origin, voxel)
            mu_int[p, d] = sm * h
            em_int[p, d] = se * h
            c = -(ux * normals[d, 0] + uy * normals[d, 1] + uz * normals[d, 2])
            geo[p, d] = max(c, 0.0) / (length * length)
    return mu_int, em_int, geo


@numba.njit(cache=True, inline="always")
def _kn(c):
    p = 1.0 / (2.0 - c)
    return p * p * (p + 1.0 / p - (1.0 - c * c))


@numba.njit(cache=True, inline="always")
def _sigma(e_kev):
    k = e_kev / 511.0
    a = (1 + k) / (k * k) * (2 * (1 + k) / (1 + 2 * k) - math.log1p(2 * k) / k)
    return a + math.log1p(2 * k) / (2 * k) - (1 + 3 * k) / ((1 + 2 * k) * (1 + 2 * k))


@numba.njit(cache=True, parallel=True)
def _pairs(points, volume, det, mu_int, em_int, geo, eff, sigma511):
    """table[a, b]: the simulation for every pair of sampled detectors."""
    n_p, n_d = points.shape[0], det.shape[0]
    table = np.zeros((n_d, n_d))
    e511 = eff[511]
    for a in numba.prange(n_d):
        for b in range(n_d):
            if a == b:
                continue
            acc = 0.0
            for p in range(n_p):
                ga, gb = geo[p, a], geo[p, b]
                if ga == 0.0 or gb == 0.0:
                    continue
                ax = det[a, 0] - points[p, 0]
                ay = det[a, 1] - points[p, 1]
                az = det[a, 2] - points[p, 2]
                bx = det[b, 0] - points[p, 0]
                by = det[b, 1] - points[p, 1]
                bz = det[b, 2] - points[p, 2]
                la = math.sqrt(ax * ax + ay * ay + az * az)
                lb = math.sqrt(bx * bx + by * by + bz * bz)
                c = -(ax * bx + ay * by + az * bz) / (la * lb)
                energy = 511.0 / (2.0 - c)
                e_s = eff[int(energy)]
                if e_s == 0.0:
                    continue
                k = _sigma(energy) / sigma511
                term = (e511 * e_s * math.exp(-mu_int[p, a] - k * mu_int[p, b]) * em_int[p, a]
                        + e_s * e511 * math.exp(-k * mu_int[p, a] - mu_int[p, b]) * em_int[p, b])
                acc += points[p, 3] * _kn(c) / sigma511 * ga * gb * term
            table[a, b] = acc * volume
    return table


def pair_values(shape: ScatterShape, scanner: Scanner, a: np.ndarray, b: np.ndarray
                ) -> np.ndarray:
    """The simulation interpolated to crystal pairs (a, b) (relative units)."""
    return _interpolate(shape.table, shape.rings.astype(np.float64), shape.tangential_step,
                        scanner.crystals_per_ring, a.astype(np.int64), b.astype(np.int64))


@numba.njit(cache=True, inline="always")
def _axis(ring, rings):
    """(lower sample, fraction) of a ring among the sampled rings."""
    n = rings.size
    if ring <= rings[0]:
        return 0, 0.0
    for i in range(n - 1):
        if ring <= rings[i + 1]:
            return i, (ring - rings[i]) / (rings[i + 1] - rings[i])
    return n - 2, 1.0


@numba.njit(cache=True, parallel=True)
def _interpolate(table, rings, step, per_ring, a, b):
    n_t = table.shape[0]
    out = np.empty(a.size, np.float32)
    for i in numba.prange(a.size):
        ta = (a[i] % per_ring) / step
        tb = (b[i] % per_ring) / step
        ra, fa = _axis(a[i] // per_ring, rings)
        rb, fb = _axis(b[i] // per_ring, rings)
        ia, ib = int(ta), int(tb)
        ua, ub = ta - ia, tb - ib
        acc = 0.0
        for da in range(2):
            wa = ua if da else 1.0 - ua
            for ea in range(2):
                wra = fa if ea else 1.0 - fa
                for db in range(2):
                    wb = ub if db else 1.0 - ub
                    for eb in range(2):
                        wrb = fb if eb else 1.0 - fb
                        w = wa * wra * wb * wrb
                        if w > 0.0:
                            acc += w * table[(ia + da) % n_t, min(ra + ea, rings.size - 1),
                                             (ib + db) % n_t, min(rb + eb, rings.size - 1)]
        out[i] = acc
    return out


def transaxial_distance_mm(scanner: Scanner, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) of each line (a, b) from the scanner's axis, in the transaxial plane."""
    ends = lor_endpoints(scanner)
    pa, pb = ends[a, :2].astype(np.float64), ends[b, :2].astype(np.float64)
    d = pb - pa
    return np.abs(pa[:, 0] * pb[:, 1] - pa[:, 1] * pb[:, 0]) / np.maximum(
        np.hypot(d[:, 0], d[:, 1]), 1e-9)


def tail_scale(shape: ScatterShape, scanner: Scanner, prompts: LORs, delayeds: LORs, k: int,
               seed: int = 7, normalization: PairFactor | None = None) -> float:
    """Counts per simulation unit: the prompts minus delayeds in the tails over the simulation
    summed over every valid tail pair (each pair's value times its ``normalization`` factor,
    as the crystals detect the scattered photons)."""
    edge = shape.object_radius_mm + TAIL_MARGIN_MM
    reach = min(float(scanner.ring_radius_mm), scanner.transaxial_fov_mm / 2)
    if edge >= reach:
        raise UserError(f"the object ({shape.object_radius_mm:.0f} mm) fills the field of view: "
                        "no tails to scale the scatter estimate to")
    measured = (np.count_nonzero(transaxial_distance_mm(scanner, prompts.crystal_a,
                                                        prompts.crystal_b) > edge)
                - np.count_nonzero(transaxial_distance_mm(scanner, delayeds.crystal_a,
                                                          delayeds.crystal_b) > edge))
    simulated = total_over_pairs(shape, scanner, k, edge, seed, normalization)
    return max(float(measured), 0.0) / simulated if simulated > 0 else 0.0


def total_over_pairs(shape: ScatterShape, scanner: Scanner, k: int, beyond_mm: float = -1.0,
                     seed: int = 7, normalization: PairFactor | None = None) -> float:
    """The simulation summed over every valid crystal pair whose line passes beyond
    ``beyond_mm`` of the axis (Monte-Carlo over the valid pairs, seeded: reproducible), each
    pair's value times its ``normalization`` factor where given."""
    sample = sample_pairs(scanner, TAIL_SAMPLES, np.random.default_rng(seed), k)
    keep = transaxial_distance_mm(scanner, sample.crystal_a, sample.crystal_b) > beyond_mm
    values = pair_values(shape, scanner, sample.crystal_a[keep], sample.crystal_b[keep])
    if normalization is not None:
        values = values * normalization.factors(sample.take(keep))
    return float(values.sum(dtype=np.float64)) * valid_pair_count(scanner, k) / TAIL_SAMPLES
