"""The crystals' non-uniformity: each crystal's efficiency, energy and time resolution, and its dead
and noisy channels, drawn once per scanner from a seed.

A scanner file's optional ``[crystals]`` table sets the spreads; without it every crystal is
alike. What is drawn here is the unit's truth: the emulator detects with it, tests compare
estimates with it, and the reconstruction never reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrystalSpread:
    """How the crystals of one scanner differ (all spreads are relative standard deviations)."""

    efficiency_spread: float = 0.0
    """Standard deviation of the log of a crystal's relative efficiency (log-normal)."""
    edge_efficiency: float = 1.0
    """Relative efficiency of a crystal on a module's edge (light lost at the module's border)."""
    corner_efficiency: float = 1.0
    """Relative efficiency of a crystal on a module's corner."""
    energy_resolution_spread: float = 0.0
    """Relative standard deviation of a crystal's energy resolution (FWHM) about the scanner's."""
    time_resolution_spread: float = 0.0
    """Relative standard deviation of a crystal's time jitter about the scanner's."""
    dead: tuple[int, ...] = ()
    """Crystals whose channel gives nothing."""
    noisy: tuple[tuple[int, float], ...] = ()
    """(crystal, noise triggers per second) of channels that trigger on their own."""
    seed: int = 0

    @property
    def uniform(self) -> bool:
        """Whether every crystal is alike (no spread, no dead or noisy channel)."""
        return (self.efficiency_spread == 0 and self.edge_efficiency == 1
                and self.corner_efficiency == 1 and self.energy_resolution_spread == 0
                and self.time_resolution_spread == 0 and not self.dead and not self.noisy)


def _draws(spread: CrystalSpread, n_crystals: int) -> np.ndarray:
    """(3, n) standard normal draws: efficiency, energy resolution, time resolution."""
    return np.random.default_rng(spread.seed).standard_normal((3, n_crystals))


def block_profile(spread: CrystalSpread, local_t: np.ndarray, local_a: np.ndarray,
                  per_module: tuple[int, int]) -> np.ndarray:
    """Relative efficiency of each crystal from its place in its module: 1 inside,
    ``edge_efficiency`` on an edge, ``corner_efficiency`` on a corner."""
    ct, ca = per_module
    edge_t = (local_t == 0) | (local_t == ct - 1)
    edge_a = (local_a == 0) | (local_a == ca - 1)
    profile = np.ones(local_t.shape)
    profile[edge_t ^ edge_a] = spread.edge_efficiency
    profile[edge_t & edge_a] = spread.corner_efficiency
    return profile


def acceptance(spread: CrystalSpread, profile: np.ndarray, mean_efficiency: float) -> np.ndarray:
    """Probability that each crystal's electronics accept an interaction: the crystal's block
    profile and log-normal spread, scaled so that the mean over live crystals is
    ``mean_efficiency``, 0 for a dead one. A probability is at most 1: where the spread reaches
    it, the best crystals accept every interaction and the scale rises until the mean is kept."""
    n = profile.size
    s = spread.efficiency_spread
    rel = profile * np.exp(s * _draws(spread, n)[0] - s * s / 2)
    live = np.ones(n, bool)
    live[list(spread.dead)] = False
    rel = rel[live] / rel[live].mean()
    p = np.zeros(n)
    p[live] = np.minimum(_ceiling_scale(rel, mean_efficiency) * rel, 1.0)
    return p


def _ceiling_scale(rel: np.ndarray, mean_efficiency: float) -> float:
    """The scale ``m`` whose ``min(m rel, 1)`` has the mean ``mean_efficiency`` (bisection; at
    ``hi`` every crystal's acceptance is at least the mean)."""
    lo, hi = mean_efficiency, mean_efficiency / max(float(rel.min()), 1e-9)
    for _ in range(60):
        m = 0.5 * (lo + hi)
        lo, hi = (m, hi) if np.minimum(m * rel, 1.0).mean() < mean_efficiency else (lo, m)
    return 0.5 * (lo + hi)


def fwhm_scale(spread: CrystalSpread, n_crystals: int) -> np.ndarray:
    """Each crystal's energy resolution over the scanner's (mean about 1, at least 0.3)."""
    return np.maximum(1.0 + spread.energy_resolution_spread * _draws(spread, n_crystals)[1], 0.3)


def jitter_scale(spread: CrystalSpread, n_crystals: int) -> np.ndarray:
    """Each crystal's time jitter over the scanner's (mean about 1, at least 0.3)."""
    return np.maximum(1.0 + spread.time_resolution_spread * _draws(spread, n_crystals)[2], 0.3)


def window_fraction(fwhm_kev: np.ndarray, window_kev: tuple[float, float],
                    photopeak_kev: float = 511.0) -> np.ndarray:
    """Share of a Gaussian photopeak of FWHM ``fwhm_kev`` (each crystal's) inside the window."""
    sigma = np.asarray(fwhm_kev, dtype=np.float64) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    lo, hi = window_kev
    erf = np.vectorize(math.erf)
    z = lambda e: (e - photopeak_kev) / (sigma * math.sqrt(2.0))  # noqa: E731
    return 0.5 * (erf(z(hi)) - erf(z(lo)))


def relative_efficiencies(accepted: np.ndarray, in_window: np.ndarray) -> np.ndarray:
    """Each crystal's whole detection efficiency for 511 keV photons inside the window, over the
    mean of the live crystals (0 for a dead one)."""
    e = accepted * in_window
    live = accepted > 0
    out = np.zeros_like(e)
    out[live] = e[live] / e[live].mean()
    return out
