"""CT numbers (Hounsfield units) to attenuation at 511 keV and to water-equivalent density.

The bilinear scaling at 120 kVp (Carney et al., Med Phys 33:976 (2006)): below the break
(:data:`HU_BREAK`, air to water) mu = 9.6e-5 (HU + 1000) /cm, above it a steeper line for bone,
a (HU + 1000) + b. The emulator's medium is water-equivalent, so its density is that mu over
water's on the same line (0.096 /cm at 0 HU): air (-1000 HU) 0, water 1, cortical bone (about
1300 HU) 1.71.
"""

from __future__ import annotations

import numpy as np

HU_BREAK, HU_SLOPE_PER_CM, HU_BONE_A_PER_CM, HU_BONE_B_PER_CM = 47.0, 9.6e-5, 5.10e-5, 4.71e-2
#: Water's mu (1/cm at 511 keV) on the scaling's own line.
WATER_PER_CM = HU_SLOPE_PER_CM * 1000.0


def mu_per_mm(hu: np.ndarray) -> np.ndarray:
    """mu (1/mm at 511 keV) of CT numbers."""
    hu = np.asarray(hu, np.float64)
    per_cm = np.where(hu <= HU_BREAK, HU_SLOPE_PER_CM * (hu + 1000.0),
                      HU_BONE_A_PER_CM * (hu + 1000.0) + HU_BONE_B_PER_CM)
    return (np.clip(per_cm, 0.0, None) / 10.0).astype(np.float32)


def density(hu: np.ndarray) -> np.ndarray:
    """Water-equivalent density (water = 1) of CT numbers."""
    return (mu_per_mm(hu) * (10.0 / WATER_PER_CM)).astype(np.float32)
