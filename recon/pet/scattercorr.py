"""Scatter correction of a run's list-mode reconstruction: a first image without it, the
single-scatter simulation of that image (:mod:`recon.corrections.scatter`) scaled to the tails, and each
prompt's expected scatter as an additive term of the EM (TOF: spread along the line's chord
through the object, widened by the TOF resolution)."""

from __future__ import annotations

import numpy as np

from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner
from recon.corrections.scatter import (
    ScatterShape,
    pair_values,
    simulate,
    tail_scale,
    total_over_pairs,
    transaxial_distance_mm,
)
from recon.grid import Grid
from recon.pet.lors import LORs, lor_endpoints
from recon.pet.osem import split_coinc
from recon.pet.system import PairFactor, nontrivial


def scatter_additive(coinc: np.ndarray, scanner: Scanner, grid: Grid, mu: np.ndarray,
                     emission: np.ndarray, window_kev: tuple[float, float], tof: bool, k: int,
                     scale: float | None = None, normalization: PairFactor | None = None
                     ) -> tuple[np.ndarray, float]:
    """(each prompt's expected scatter in the EM's units, the scatter's share of the prompts)
    from an emission estimate (an image without scatter correction, counts) and the mu-map on
    ``grid``; ``k``: the sorter's minimum sector difference. ``scale``: counts per simulation
    unit (None: fitted to these coincidences' tails). The simulation is linear in the emission,
    so a run's frames share the scale fitted to the whole run (:func:`run_scale`), which a
    short frame's few tail counts could not give. ``normalization``: the crystals'
    efficiencies, which detect scattered photons as they do the others: each pair's scatter,
    and the tails it is scaled to, take its factor (None: crystals alike)."""
    normalization = nontrivial(normalization)
    shape = simulate(scanner, grid, mu, emission, window_kev)
    prompts, delayeds = split_coinc(coinc)
    lp, ld = LORs.from_coinc(prompts), LORs.from_coinc(delayeds)
    if scale is None:
        scale = tail_scale(shape, scanner, lp, ld, k, normalization=normalization)
    counts = scale * pair_values(shape, scanner, lp.crystal_a, lp.crystal_b).astype(np.float64)
    if normalization is not None:
        counts *= normalization.factors(lp)
    net = len(prompts) - len(delayeds)
    fraction = (scale * total_over_pairs(shape, scanner, k, normalization=normalization) / net
                if net > 0 else 0.0)
    if tof:
        counts /= _chord_mm(shape, scanner, lp)
    return counts.astype(np.float32), fraction


def _chord_mm(shape: ScatterShape, scanner: Scanner, lors: LORs) -> np.ndarray:
    """The length (mm) of TOF position over which a line's scatter spreads: its chord through
    the object's transaxial circle (3D), plus the TOF resolution's FWHM."""
    ends = lor_endpoints(scanner).astype(np.float64)
    d3 = ends[lors.crystal_b] - ends[lors.crystal_a]
    stretch = np.linalg.norm(d3, axis=1) / np.maximum(np.hypot(d3[:, 0], d3[:, 1]), 1e-9)
    r = shape.object_radius_mm
    d = transaxial_distance_mm(scanner, lors.crystal_a, lors.crystal_b)
    chord = 2.0 * np.sqrt(np.maximum(r * r - d * d, 0.0)) * stretch
    return chord + SPEED_OF_LIGHT_MM_PER_PS * scanner.response.ctr_ps / 2.0


def run_scale(coinc: np.ndarray, scanner: Scanner, grid: Grid, mu: np.ndarray,
              emission: np.ndarray, window_kev: tuple[float, float], k: int,
              normalization: PairFactor | None = None) -> float:
    """Counts per simulation unit, fitted to the tails of all of a run's coincidences
    (``emission``: their image without scatter correction, counts)."""
    shape = simulate(scanner, grid, mu, emission, window_kev)
    prompts, delayeds = split_coinc(coinc)
    return tail_scale(shape, scanner, LORs.from_coinc(prompts), LORs.from_coinc(delayeds), k,
                      normalization=nontrivial(normalization))
