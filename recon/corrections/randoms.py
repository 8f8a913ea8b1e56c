"""Expected randoms per LOR from the delayed-window coincidences (fan-sum estimator).

The delayed coincidences count randoms without trues, but a few per LOR at most: using each LOR's
own delayed count as its randoms estimate would be unbiased but extremely noisy. Randoms of a
crystal pair follow ``R_ab = 2 tau S_a S_b`` (S the singles rates), so the estimate is the
rank-one model ``R_ab = s_a s_b`` fitted to the delayeds' *fan sums* (Casey & Hoffman 1986;
Defrise et al. 1991): each crystal's delayed count ``D_a`` (delayeds in any valid pair that
contains a) must equal ``sum over valid partners b of s_a s_b``. The fixed point
``s_a = D_a / sum_b s_b`` is found by a few damped iterations (sums over partners go through
per-sector sums, so each costs O(crystals)). The estimate preserves the total (sum over valid
pairs of R_ab = number of delayeds) and has the variance of a crystal's ~10^3-10^4 delayeds, not of
one LOR's.

Units: ``R_ab`` are counts per LOR over the acquisition. A TOF event needs a density per mm of TOF
position: randoms are uniform in dt over the coincidence window, i.e. over ``c * window`` mm of
TOF position (both orientations of the pair), so the TOF additive term is ``R_ab / (c window)``.
"""

from __future__ import annotations

import numpy as np

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from infra.errors import UserError
from recon.corrections.fansums import fixed_point
from recon.pet.lors import LORs
from recon.pet.system import valid_module_pairs

#: Fixed-point iterations of the fan-sum fit.
FAN_SUM_ITERATIONS = 50


def crystal_counts(lors: LORs, n_crystals: int) -> np.ndarray:
    """(N,) int64: how many of the events each crystal is part of (its fan sum)."""
    return (np.bincount(lors.crystal_a, minlength=n_crystals)
            + np.bincount(lors.crystal_b, minlength=n_crystals))


def fan_sum_factors(counts: np.ndarray, scanner: Scanner, k: int,
                    iterations: int = FAN_SUM_ITERATIONS) -> np.ndarray:
    """(N,) float64 per-crystal factors s with ``R_ab = s_a s_b`` fitted to the delayeds' fan
    sums ``counts`` (:func:`crystal_counts`; :func:`recon.corrections.fansums.fixed_point` with
    h = 1 over valid pairs, its sums through per-sector sums)."""
    module = scanner.crystal_module
    valid = valid_module_pairs(scanner, k).astype(np.float64)

    def partners(s: np.ndarray) -> np.ndarray:
        h = (valid @ np.bincount(module, weights=s, minlength=scanner.n_modules))[module]
        return h - s if k == 0 else h

    if np.asarray(counts).sum() == 0:
        return np.zeros(scanner.n_crystals)
    return fixed_point(counts, partners, iterations)


def randoms_per_mm(window_ps: float | None) -> float:
    """Fraction of an LOR's randoms per mm of TOF position: 1 / (c window)."""
    if window_ps is None or window_ps <= 0:
        raise UserError(f"a TOF randoms estimate needs the coincidence window (ps), "
                        f"got {window_ps}")
    return 1.0 / (SPEED_OF_LIGHT_MM_PER_PS * float(window_ps))


class RandomsEstimate:
    """Expected randoms of any LOR from per-crystal fan-sum factors (see the module docstring)."""

    def __init__(self, factors: np.ndarray, window_ps: float | None, tof: bool) -> None:
        self.factors = np.asarray(factors, np.float64)
        self.per_mm = randoms_per_mm(window_ps) if tof else 1.0

    def per_event(self, lors: LORs) -> np.ndarray:
        """(n,) float32: expected randoms of each event's LOR (per mm of TOF position with TOF)."""
        f = self.factors
        return (f[lors.crystal_a] * f[lors.crystal_b] * self.per_mm).astype(np.float32)

    def per_crystal(self) -> np.ndarray:
        """(n_crystals,) float32 factors g with ``g[a] * g[b]`` = :meth:`per_event` of the LOR
        (a, b): the randoms as the EM kernel takes them, without a per-event array
        (:meth:`recon.pet.projector.Projector.em_back_padded`)."""
        return (self.factors * np.sqrt(self.per_mm)).astype(np.float32)
