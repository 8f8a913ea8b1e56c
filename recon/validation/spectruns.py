"""An emulated SPECT scan of a phantom binned and reconstructed in memory as a SPECT run's image is.

The emulator's singles are counted into the photopeak's triple-energy-window projections
(:func:`coincidence.spect.bin_projections`), the scatter estimated from the side windows and
smoothed, and OSEM (4 iterations of 6 subsets) reconstructs the photopeak with the mu-map asked
for, as ``petdaq recon`` does a SPECT run (:mod:`recon.spect.runimage`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import emulator
from coincidence import spect
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.spect import learnedmap
from recon.spect.mumap import estimate
from recon.spect.osem import SpectProjector, spect_osem
from recon.spect.runimage import OUTLINE_ITERATIONS, peak_and_scatter

#: The scatter windows' width (a fraction of the photopeak), as the DAQ's.
SCATTER_WINDOW_FRACTION = 0.07
ITERATIONS, SUBSETS = 4, 6


def windows_of(scanner: Scanner) -> spect.EnergyWindows:
    """The scanner's photopeak window and its two scatter windows."""
    lo, hi = (float(v) for v in scanner.acquisition["energy_window_kev"])
    return spect.energy_windows((lo + hi) / 2, (hi - lo) / ((lo + hi) / 2),
                                SCATTER_WINDOW_FRACTION)


def scan(scanner: Scanner, phantom: Any, nuclide: str, activity_mbq: float, seconds: float,
         seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """(projections [window, head, view, row, column], counts): the photopeak's and side
    windows' projections of an emulated scan, and its singles, photopeak counts and the share
    of them that scattered in the phantom (the emulator's truth)."""
    sim = emulator.simulate(scanner, phantom, nuclide, activity_mbq, seconds, seed=seed,
                            truth=True)
    windows = windows_of(scanner)
    view_ps = round(seconds * 1e12 / scanner.spect.views_per_head)
    proj = spect.bin_projections(sim.singles, scanner, windows, view_ps)
    e = sim.singles["energy"]
    peak = (e >= windows.peak[0]) & (e < windows.peak[1])
    scattered = sim.truth["scatters"][peak] > 0
    return proj, {"singles": float(sim.raw.size), "photopeak": float(peak.sum()),
                  "scatter_fraction": float(scattered.mean()) if peak.any() else 0.0}


def projected_scan(scanner: Scanner, grid: Any, activity: np.ndarray, mu_per_mm: np.ndarray,
                   energy_kev: float, counts: float, rng: np.random.Generator) -> np.ndarray:
    """A scan made by the reconstruction's projector instead of the emulator: ``activity``
    projected through ``mu_per_mm`` with the collimator's blur, scaled to ``counts`` and drawn
    with Poisson noise (no scatter; seconds, not minutes)."""
    expected = SpectProjector(scanner, grid, mu_per_mm, energy_kev=energy_kev).forward(activity)
    expected *= np.float32(counts / max(float(expected.sum()), 1e-30))
    return rng.poisson(expected).astype(np.float32)


def kept_scan(path: Path, scanner: Scanner, phantom: Any, activity_mbq: float, seconds: float,
              seed: int) -> np.ndarray:
    """The Tc-99m scan's projections kept in ``path`` (``.npz``), else :func:`scan` now (minutes)
    and kept there, whole or not at all."""
    if path.is_file():
        with np.load(path) as z:
            return z["projections"]
    proj, _ = scan(scanner, phantom, "Tc-99m", activity_mbq, seconds, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, projections=proj)
    tmp.replace(path)
    return proj


def image(projections: np.ndarray, scanner: Scanner, phantom: Any, mu_map: str,
          body_part: str | None = None, model_path: str | None = None) -> Any:
    """The OSEM image (counts) with ``mu_map``: ``truth`` (the phantom's own), ``estimate``
    (the calculated map of the outline), ``learned`` (``model_path``'s map, None: the
    camera's shipped model), ``none``."""
    windows = windows_of(scanner)
    peak, scatter = peak_and_scatter(projections, windows)
    energy = float(np.mean(windows.peak))
    grid = default_grid(scanner)

    def osem(mu: Any, n: int) -> Any:
        return spect_osem(peak, scanner, scatter, mu, iterations=n,
                          subsets=SUBSETS, grid=grid, energy_kev=energy)

    if mu_map == "truth":
        mu = grid.image(phantom.mu_map(grid, energy), "1/mm")
    elif mu_map == "estimate":
        mu = estimate(osem(None, OUTLINE_ITERATIONS), energy, body_part).image
    elif mu_map == "learned":
        model = learnedmap.model_for(scanner.name, model_path)
        mu = learnedmap.predict(model, osem(None, OUTLINE_ITERATIONS), energy).image
    else:
        mu = None
    return osem(mu, ITERATIONS)
