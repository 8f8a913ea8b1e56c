"""Radionuclides: half-life, positron branching and range, prompt gamma lines (physics data shared
by the emulator, the reconstruction and the console).

Half-lives and yields from the NNDC/ENSDF evaluations (rounded). The positron range is modelled as
an isotropic 3-D displacement whose 1-D projection is the bi-exponential of Derenzo / Levin &
Hoffman (PMB 44:781), p(x) = C k1/2 exp(-k1|x|) + (1-C) k2/2 exp(-k2|x|). For that projection the
3-D radial density is a mixture of Gamma(2, 1/k_i) laws, so a displacement is cheap to sample
exactly. F-18's (C, k1, k2) reproduce its 0.10 mm FWHM / 1.0 mm FWTM (DOMAIN.md); the other
nuclides scale it by their mean positron range in water relative to F-18 (Conti & Eriksson,
EJNMMI Phys 3:8, 2016: F-18 0.6, C-11 1.2, Ga-68 2.9, Cu-64 0.56 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError

_F18_RANGE = (0.15, 24.98, 2.548)  # C, k1 (1/mm), k2 (1/mm)
_F18_MEAN_RANGE_MM = 0.6


@dataclass(frozen=True)
class Nuclide:
    """A radionuclide: its decay, its positrons and its gamma lines."""

    name: str
    half_life_s: float
    positron_fraction: float
    """Probability that a decay emits a positron (then two 511 keV annihilation photons)."""
    mean_range_mm: float
    """Mean positron range in water (mm); 0 for nuclides without positrons."""
    gamma_kev: tuple[float, ...] = ()
    """Prompt gamma lines (keV), each emitted independently with its yield per decay."""
    gamma_yield: tuple[float, ...] = ()

    @property
    def decay_constant_per_s(self) -> float:
        """lambda = ln 2 / T_1/2 (1/s)."""
        return math.log(2.0) / self.half_life_s

    @property
    def is_positron_emitter(self) -> bool:
        return self.positron_fraction > 0.0

    def positron_range(self) -> tuple[float, float, float]:
        """(C, k1, k2) of the projected bi-exponential range model, k in 1/mm."""
        if not self.is_positron_emitter:
            return (1.0, 1e9, 1e9)
        s = self.mean_range_mm / _F18_MEAN_RANGE_MM
        c, k1, k2 = _F18_RANGE
        return (c, k1 / s, k2 / s)

    def lines(self) -> np.ndarray:
        """(n, 2) float64 array of (energy keV, yield per decay)."""
        return np.array(list(zip(self.gamma_kev, self.gamma_yield, strict=True)),
                        dtype=np.float64).reshape(-1, 2)

    def activity_mbq(self, a0_mbq: float, t_s: float) -> float:
        """Activity (MBq) ``t_s`` seconds after the reference time where it was ``a0_mbq``."""
        return a0_mbq * math.exp(-self.decay_constant_per_s * t_s)


_TABLE: dict[str, Nuclide] = {
    n.name: n
    for n in (
        Nuclide("F-18", 109.77 * 60, 0.9686, 0.6),
        Nuclide("C-11", 20.364 * 60, 0.9976, 1.2),
        Nuclide("Ga-68", 67.71 * 60, 0.8891, 2.9, (1077.3,), (0.0322,)),
        Nuclide("Cu-64", 12.701 * 3600, 0.1752, 0.56, (1345.8,), (0.00475,)),
        Nuclide("Tc-99m", 6.0067 * 3600, 0.0, 0.0, (140.5,), (0.885,)),
        Nuclide("I-123", 13.2235 * 3600, 0.0, 0.0, (159.0, 528.96), (0.833, 0.0139)),
        Nuclide("Lu-177", 6.647 * 86400, 0.0, 0.0, (112.95, 208.37), (0.0620, 0.1036)),
    )
}


def names() -> list[str]:
    """Names of the known nuclides."""
    return list(_TABLE)


def get(name: str | Nuclide) -> Nuclide:
    """The nuclide called ``name`` (case-insensitive); :class:`UserError` naming the known ones."""
    if isinstance(name, Nuclide):
        return name
    for key, nuclide in _TABLE.items():
        if key.lower() == str(name).strip().lower():
            return nuclide
    raise UserError(f"unknown nuclide '{name}': known nuclides are {', '.join(_TABLE)}")
