"""Photon interaction physics for the numba kernels: directions, Compton (Klein-Nishina) and
coherent (Rayleigh) scattering. Energies keV, directions unit vectors, lengths mm.

Random numbers come from the generator state ``rs`` the caller passes (:mod:`emulator.rng`).
"""

from __future__ import annotations

import math

import numpy as np

from emulator.jit import inline, kernel
from emulator.rng import disc, uniform

CUTOFF_KEV = 10.0
"""Photons below this energy (keV) are absorbed where they are."""

ELECTRON_KEV = 510.998950
SPEED_OF_LIGHT_MM_PER_PS = 0.299792458
#: keV x Angstrom: wavelength = HC / E
_HC_KEV_ANGSTROM = 12.398
#: Effective form-factor width of water (1/Angstrom) for coherent scattering.
_X0_WATER = 0.6


@inline
def isotropic(rs):
    """A direction uniform on the sphere (Marsaglia 1972: no trigonometry)."""
    a, b, s = disc(rs)
    f = 2.0 * math.sqrt(1.0 - s)
    return a * f, b * f, 1.0 - 2.0 * s


@inline
def rotate(ux, uy, uz, cos_t, phi):
    """The direction at polar angle acos(cos_t) and azimuth ``phi`` about (ux, uy, uz)."""
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    cp, sp = math.cos(phi), math.sin(phi)
    if abs(uz) > 0.99999:
        sign = 1.0 if uz > 0 else -1.0
        return sin_t * cp, sin_t * sp, sign * cos_t
    r = math.sqrt(1.0 - uz * uz)
    vx = sin_t * (ux * uz * cp - uy * sp) / r + ux * cos_t
    vy = sin_t * (uy * uz * cp + ux * sp) / r + uy * cos_t
    vz = -sin_t * r * cp + uz * cos_t
    n = math.sqrt(vx * vx + vy * vy + vz * vz)
    return vx / n, vy / n, vz / n


@kernel
def klein_nishina(rs, energy):
    """Sample a Compton scattering of a photon of ``energy`` keV on a free electron.

    Returns (scattered energy keV, cos theta). Geant4's G4KleinNishinaCompton sampling.
    """
    k = energy / ELECTRON_KEV
    eps0 = 1.0 / (1.0 + 2.0 * k)
    eps0sq = eps0 * eps0
    alpha1 = -math.log(eps0)
    alpha2 = 0.5 * (1.0 - eps0sq)
    while True:
        if alpha1 > (alpha1 + alpha2) * uniform(rs):
            eps = math.exp(-alpha1 * uniform(rs))
            epssq = eps * eps
        else:
            epssq = eps0sq + (1.0 - eps0sq) * uniform(rs)
            eps = math.sqrt(epssq)
        onecost = (1.0 - eps) / (eps * k)
        sint2 = onecost * (2.0 - onecost)
        if 1.0 - eps * sint2 / (1.0 + epssq) >= uniform(rs):
            return eps * energy, 1.0 - onecost


@inline
def crystal_interaction(rs, energy, photo_fraction, ux, uy, uz):
    """One interaction of a photon of ``energy`` keV in a detector crystal: photo-electric
    absorption with probability ``photo_fraction``, else a Compton scatter (Klein-Nishina) that
    leaves the electron's energy and turns the photon; a photon left below CUTOFF_KEV is absorbed
    on the spot. Returns (energy deposited keV, photon energy after keV (0: gone), direction)."""
    if uniform(rs) < photo_fraction:
        return energy, 0.0, ux, uy, uz
    scattered, cos_t = klein_nishina(rs, energy)
    ux, uy, uz = rotate(ux, uy, uz, cos_t, 2.0 * math.pi * uniform(rs))
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


@kernel
def rayleigh_cos(rs, energy):
    """cos theta of a coherent scattering in water: Thomson x a form factor F^2 = (1 +
    x^2/x0^2)^-4 with x = sin(theta/2)/lambda, sampled in x^2 and accepted on Thomson."""
    lam = _HC_KEV_ANGSTROM / energy
    umax = 1.0 / (lam * lam)              # x^2 at theta = pi
    a = 1.0 / (_X0_WATER * _X0_WATER)
    cmax = 1.0 - (1.0 + a * umax) ** -3
    while True:
        u = ((1.0 - cmax * uniform(rs)) ** (-1.0 / 3.0) - 1.0) / a
        cos_t = 1.0 - 2.0 * lam * lam * u
        if 2.0 * uniform(rs) <= 1.0 + cos_t * cos_t:
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
