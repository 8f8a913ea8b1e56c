"""MIRD self-dose of a region from its time-integrated activity, with the S value of a sphere of
the region's mass (unit-density soft tissue, the sphere model of OLINDA and IDAC-Dose).

``D = TIA x S``, ``S = sum_i Delta_i phi_i / m``: electrons deposit all their energy (phi = 1;
Lu-177's betas range under 2 mm, far less than any region this scanner resolves); each gamma
line deposits the fraction ``phi = 1 - exp(-mu_en r_mean)`` of its energy, with ``r_mean = 3 r /
4`` the mean distance from a point of the sphere to its surface and ``mu_en`` water's energy
absorption coefficient (NIST XCOM/Hubbell-Seltzer). Cross-doses between regions are left out.
"""

from __future__ import annotations

import math

import numpy as np

from hw import nuclides
from infra.errors import UserError

#: Mean energy of the electrons (betas, conversion and Auger electrons) per decay, keV
#: (ICRP 107).
ELECTRON_KEV_PER_DECAY = {"Lu-177": 147.9, "Y-90": 932.9, "I-131": 191.6, "Tc-99m": 15.2}
#: Water's mass energy-absorption coefficient (cm2/g) against photon energy (keV), NIST.
_MU_EN_WATER = np.array([[50, 0.04223], [80, 0.02597], [100, 0.02546], [150, 0.02764],
                         [200, 0.02967], [300, 0.03192], [400, 0.03279], [500, 0.03299],
                         [662, 0.03284], [1000, 0.03103]])
JOULE_PER_KEV = 1.602176634e-16


def photon_absorbed_fraction(energy_kev: float, mass_g: float, density_g_ml: float = 1.0
                             ) -> float:
    """The fraction of a photon line's energy a sphere of ``mass_g`` absorbs from a uniform
    source in it (see the module docstring)."""
    mu_en = float(np.exp(np.interp(math.log(energy_kev), np.log(_MU_EN_WATER[:, 0]),
                                   np.log(_MU_EN_WATER[:, 1]))))
    radius_cm = (3 * mass_g / density_g_ml / (4 * math.pi)) ** (1 / 3)
    return -math.expm1(-mu_en * density_g_ml * 0.75 * radius_cm)


def sphere_s_gy_per_mbq_h(nuclide: str, mass_g: float, density_g_ml: float = 1.0) -> float:
    """Self-dose S value of a sphere of ``mass_g`` (Gy per MBq h)."""
    if nuclide not in ELECTRON_KEV_PER_DECAY:
        raise UserError(f"no electron energy per decay for {nuclide}: dosimetry knows "
                        f"{', '.join(ELECTRON_KEV_PER_DECAY)}")
    if not mass_g > 0:
        raise UserError(f"a region's mass must be > 0 g, got {mass_g}")
    n = nuclides.get(nuclide)
    kev = ELECTRON_KEV_PER_DECAY[nuclide] + sum(
        y * e * photon_absorbed_fraction(e, mass_g, density_g_ml)
        for e, y in zip(n.gamma_kev, n.gamma_yield, strict=True))
    decays_per_mbq_h = 1e6 * 3600.0
    return kev * JOULE_PER_KEV * decays_per_mbq_h / (mass_g / 1000.0)
