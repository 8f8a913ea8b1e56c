"""Attenuation of the phantom medium (water-equivalent) and the 1-keV lookup tables the kernels use.

Water, liquid: NIST XCOM / Hubbell & Seltzer (NISTIR 5632) mass attenuation coefficients (cm2/g),
total with coherent scattering, with the photo-electric and coherent parts. A phantom region of
relative density rho has mu(E) = rho * mu_water(E) (1/mm). Compton scattering is the remainder
(total - photo - coherent), which matches Klein-Nishina on water's 3.34e23 electrons/g to < 1 %.
"""

from __future__ import annotations

import numpy as np

from hw.scanner import Material

#: keV
_E = np.array([10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600, 800, 1000,
               1250, 1500, 2000], dtype=np.float64)
#: cm2/g, total with coherent
_TOTAL = np.array([5.329, 1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505,
                   0.1370, 0.1186, 0.1061, 0.09687, 0.08956, 0.07865, 0.07072, 0.06323, 0.05754,
                   0.04942])
_PHOTO = np.array([4.944, 1.374, 0.5503, 0.1557, 0.06409, 0.03156, 0.01772, 0.00697, 0.00339,
                   0.000933, 0.000375, 0.000107, 4.6e-5, 2.5e-5, 1.6e-5, 8.4e-6, 5.6e-6, 3.9e-6,
                   3.0e-6, 2.1e-6])
_COHERENT = np.array([0.2305, 0.1194, 0.0690, 0.0354, 0.0212, 0.0140, 0.00992, 0.00573, 0.00372,
                      0.00170, 0.000971, 0.000435, 0.000246, 0.000158, 0.000110, 6.2e-5, 4.0e-5,
                      2.6e-5, 1.8e-5, 1.0e-5])
WATER_DENSITY_G_MM3 = 1.0e-3

#: The kernels look tables up at ``int(E_keV)``: 0 .. TABLE_KEV - 1 keV.
TABLE_KEV = 2048


def _loglog(e: np.ndarray | float, table: np.ndarray) -> np.ndarray:
    e = np.clip(np.asarray(e, dtype=np.float64), _E[0], _E[-1])
    return np.exp(np.interp(np.log(e), np.log(_E), np.log(table)))


def mu_water(energy_kev: np.ndarray | float) -> np.ndarray:
    """Linear attenuation coefficient of water (1/mm): 0.0096 at 511 keV, 0.0154 at 140 keV."""
    return _loglog(energy_kev, _TOTAL) * 0.1


def water_table() -> np.ndarray:
    """(TABLE_KEV, 3): mu (1/mm), photo-electric and coherent fractions of water at 0.5, 1.5,
    ... keV."""
    e = np.arange(TABLE_KEV) + 0.5
    total = _loglog(e, _TOTAL)
    return np.stack([total * 0.1, _loglog(e, _PHOTO) / total, _loglog(e, _COHERENT) / total],
                    axis=1)


def crystal_table(material: Material) -> np.ndarray:
    """(TABLE_KEV, 2): mu (1/mm) and photo-electric fraction of a detector material at 0.5, 1.5,
    ... keV."""
    e = np.arange(TABLE_KEV) + 0.5
    return np.stack([material.mu(e), material.photo_fraction(e)], axis=1).astype(np.float64)
