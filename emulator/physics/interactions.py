"""Photon interaction physics for the numba kernels: directions, Compton (Klein-Nishina) and
coherent (Rayleigh) scattering. Energies keV, directions unit vectors, lengths mm.

Random numbers come from the generator state ``rs`` the caller passes (:mod:`emulator.rng`).
"""

from __future__ import annotations

import math

import numpy as np

from emulator.jit import inline, kernel
from emulator.rng import bits, uniform
from emulator.simd import exp, log, sel, sincos_turn, unit_open, vmax

CUTOFF_KEV = 10.0
"""Photons below this energy (keV) are absorbed where they are."""

ELECTRON_KEV = 510.998950
SPEED_OF_LIGHT_MM_PER_PS = 0.299792458
#: keV x Angstrom: wavelength = HC / E
_HC_KEV_ANGSTROM = 12.398
#: Effective form-factor width of water (1/Angstrom) for coherent scattering.
_X0_WATER = 0.6


@inline
def isotropic_from(u1, u2):
    """The direction uniform on the sphere given by two uniforms in [0, 1): cos theta = 1 - 2 u1
    (Archimedes), azimuth 2 pi u2. Branch-free (SIMD lanes)."""
    w = 1.0 - 2.0 * u1
    r = math.sqrt(vmax(0.0, 1.0 - w * w))
    c, s = sincos_turn(u2)
    return r * c, r * s, w


@inline
def isotropic(rs):
    """:func:`isotropic_from` drawn from the generator ``rs``."""
    return isotropic_from(uniform(rs), uniform(rs))


@inline
def normal_pair(u1, u2):
    """Two independent standard normal variates from a uniform u1 in (0, 1] and one u2 in
    [0, 1) (Box & Muller 1958). Branch-free (SIMD lanes)."""
    r = math.sqrt(-2.0 * log(u1))
    c, s = sincos_turn(u2)
    return r * c, r * s


@inline
def positron_offset(prange, u_branch, u1, u2, u3, u4):
    """Where a positron annihilates relative to its emission (mm), from uniforms (u1, u2 in
    (0, 1], the others in [0, 1)): the nuclide's bi-exponential range model ``prange`` = (C, k1,
    k2) (1/mm), a radius r ~ k^2 r exp(-k r) (a sum of two exponentials over k) with k = k1 with
    probability C else k2, in a direction uniform on the sphere. Branch-free (SIMD lanes)."""
    c_range, k1, k2 = prange
    r = -(log(u1) + log(u2)) / sel(u_branch < c_range, k1, k2)
    dx, dy, dz = isotropic_from(u3, u4)
    return r * dx, r * dy, r * dz


@inline
def positron_path(rs, prange):
    """:func:`positron_offset` drawn from the generator ``rs``."""
    return positron_offset(prange, uniform(rs), unit_open(bits(rs)), unit_open(bits(rs)),
                           uniform(rs), uniform(rs))


@inline
def rotate(ux, uy, uz, cos_t, cos_p, sin_p):
    """The direction at polar angle acos(cos_t) and azimuth (cos_p, sin_p) about (ux, uy, uz)
    (branch-free: the transport's SIMD lanes use it too)."""
    sin_t = math.sqrt(vmax(0.0, 1.0 - cos_t * cos_t))
    pole = abs(uz) > 0.99999
    r = math.sqrt(vmax(1.0 - uz * uz, 1e-300))
    a, b = sin_t * cos_p / r, sin_t * sin_p / r
    vx = sel(pole, sin_t * cos_p, a * ux * uz - b * uy + ux * cos_t)
    vy = sel(pole, sin_t * sin_p, a * uy * uz + b * ux + uy * cos_t)
    vz = sel(pole, sel(uz > 0.0, cos_t, -cos_t), -a * r * r + uz * cos_t)
    # one Newton step to unit length keeps the rounding from accumulating over scatterings
    n2 = vx * vx + vy * vy + vz * vz
    f = 1.5 - 0.5 * n2
    return vx * f, vy * f, vz * f


@inline
def deflect(rs, ux, uy, uz, cos_t):
    """The direction after a scattering by polar angle acos(cos_t), azimuth uniform."""
    cos_p, sin_p = sincos_turn(uniform(rs))
    return rotate(ux, uy, uz, cos_t, cos_p, sin_p)


@inline
def kahn_trial(energy, r1, r2, r3):
    """One trial of Kahn's rejection method (1954, as in EGS and MCNP) for a Compton scattering
    of a photon of ``energy`` keV on a free electron, with the uniforms r1, r2, r3: (accepted,
    scattered energy keV, cos theta). Branch-free, for the SIMD lanes as for :func:`klein_nishina`;
    three divisions, two of them shared by trials at one energy."""
    two_k = energy * (2.0 / ELECTRON_KEV)
    a = 1.0 + two_k
    first = r1 * (9.0 + two_k) <= a                  # r1 <= (1 + 2k) / (9 + 2k)
    d = 1.0 + two_k * r2
    inv_d = 1.0 / d
    xi = sel(first, d, a * inv_d)                    # a: 1 + 2k r2; b: (1 + 2k) / (1 + 2k r2)
    cos_t = 1.0 - (xi - 1.0) * (ELECTRON_KEV / energy)
    ok = sel(first, r3 * d * d <= 4.0 * (d - 1.0), 2.0 * r3 * xi <= cos_t * cos_t * xi + 1.0)
    return ok, sel(first, energy * inv_d, energy * d * (1.0 / a)), cos_t


@inline
def klein_nishina(rs, energy):
    """Sample a Compton scattering of a photon of ``energy`` keV on a free electron.

    Returns (scattered energy keV, cos theta). Kahn's rejection method: exact, with no
    transcendental function, 1.6-1.7 trials a sample from 30 to 511 keV.
    """
    while True:
        ok, scattered, cos_t = kahn_trial(energy, uniform(rs), uniform(rs), uniform(rs))
        if ok:
            return scattered, cos_t


@inline
def crystal_interaction(rs, energy, photo_fraction, ux, uy, uz):
    """One interaction of a photon of ``energy`` keV in a detector crystal: photo-electric
    absorption with probability ``photo_fraction``, else a Compton scatter (Klein-Nishina) that
    leaves the electron's energy and turns the photon; a photon left below CUTOFF_KEV is absorbed
    on the spot. Returns (energy deposited keV, photon energy after keV (0: gone), direction)."""
    if uniform(rs) < photo_fraction:
        return energy, 0.0, ux, uy, uz
    scattered, cos_t = klein_nishina(rs, energy)
    ux, uy, uz = deflect(rs, ux, uy, uz, cos_t)
    if scattered < CUTOFF_KEV:
        return energy, 0.0, ux, uy, uz
    return energy - scattered, scattered, ux, uy, uz


@kernel
def klein_nishina_pdf(energy, cos_t):
    """Angular density of Compton scattering, per steradian (integrates to 1 over 4 pi)."""
    k = energy / ELECTRON_KEV
    ratio = 1.0 / (1.0 + k * (1.0 - cos_t))
    ds = ratio * ratio * (ratio + 1.0 / ratio - (1.0 - cos_t * cos_t))
    # total cross-section / (pi r_e^2), Klein-Nishina
    l2 = math.log(1.0 + 2.0 * k)
    sigma = 2.0 * ((1.0 + k) / (k * k) * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - l2 / k)
                   + l2 / (2.0 * k) - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2)
    return 0.5 * ds / (math.pi * sigma)


@inline
def rayleigh_trial(energy, r1, r2):
    """One trial for the cos theta of a coherent scattering in water with the uniforms r1, r2:
    (accepted, cos theta). Thomson x a form factor F^2 = (1 + x^2/x0^2)^-4 with x =
    sin(theta/2)/lambda, sampled in x^2 and accepted on Thomson. Branch-free."""
    lam = _HC_KEV_ANGSTROM / energy
    a = 1.0 / (_X0_WATER * _X0_WATER)
    q = 1.0 + a / (lam * lam)                           # 1 + a x^2 at theta = pi
    cmax = 1.0 - 1.0 / (q * q * q)
    u = (exp(-log(1.0 - cmax * r1) / 3.0) - 1.0) / a
    cos_t = 1.0 - 2.0 * lam * lam * u
    return 2.0 * r2 <= 1.0 + cos_t * cos_t, cos_t


@kernel
def rayleigh_cos(rs, energy):
    """cos theta of a coherent scattering in water (:func:`rayleigh_trial` until accepted)."""
    while True:
        ok, cos_t = rayleigh_trial(energy, uniform(rs), uniform(rs))
        if ok:
            return cos_t


@kernel
def rayleigh_pdf(energy, cos_t, norm):
    """Angular density of :func:`rayleigh_cos` per steradian; ``norm`` from
    :func:`rayleigh_norms` at ``int(energy)``."""
    lam = _HC_KEV_ANGSTROM / energy
    u = (1.0 - cos_t) / (2.0 * lam * lam)
    return (1.0 + cos_t * cos_t) * (1.0 + u / (_X0_WATER * _X0_WATER)) ** -4 / (2.0 * math.pi
                                                                              * norm)


def rayleigh_norms(n_kev: int) -> np.ndarray:
    """The integral over cos theta of :func:`rayleigh_cos`'s law at 0.5, 1.5, ... keV."""
    e = np.arange(n_kev) + 0.5
    lam = _HC_KEV_ANGSTROM / e
    b = 1.0 / (_X0_WATER * _X0_WATER * 2.0 * lam * lam)
    y = np.geomspace(1e-9, 2.0, 4000)[None, :]                    # y = 1 - cos theta
    f = (1.0 + (1.0 - y) ** 2) * (1.0 + b[:, None] * y) ** -4
    head = 2.0 * 1e-9                                             # y in [0, 1e-9]: f ~ 2
    return head + np.sum(0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(y, axis=1), axis=1)
