"""The training set's fast path: a virtual patient's SPECT image without attenuation correction
made by the reconstruction's own projector (attenuation by the patient's true map, the
collimator's depth-dependent blur, Poisson noise at a drawn count) instead of the emulator, and
its true mu-map as the target.

The emulated chain adds Compton scatter and TEW's subtraction of it; the fast path has neither,
so its images are a little brighter outside the organs (``python -m
recon.validation.learnedmap`` compares the two on the same patients and measures the model on
the real chain's images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator import phantoms
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.spect.osem import spect_osem
from recon.spect.runimage import OUTLINE_ITERATIONS
from recon.validation.spectruns import projected_scan

#: Photopeak counts of a scan are drawn log-uniformly between these (a 60 s stress scan of 800
#: MBq Tc-99m on spect-general gives about 1.1 million).
COUNTS_RANGE = (4e5, 3e6)
#: OSEM of the image without correction, as the one a SPECT run's maps are drawn from.
ITERATIONS, SUBSETS = OUTLINE_ITERATIONS, 6


@dataclass(frozen=True)
class Pair:
    """One patient's training pair on the camera's grid [x, y, z]: the image without
    attenuation correction (counts) and the true mu-map (1/mm at ``energy_kev``)."""

    name: str
    without_attenuation: np.ndarray
    mu_per_mm: np.ndarray
    energy_kev: float
    counts: float


def pair(folder: Path, scanner: Scanner, energy_kev: float, rng: np.random.Generator) -> Pair:
    """The fast path's pair of the phantom in ``folder`` (a population's patient)."""
    grid = default_grid(scanner)
    phantom = phantoms.get(str(folder), scanner)
    activity = phantom.activity_map(grid)
    mu = phantom.mu_map(grid, energy_kev)
    lo, hi = np.log(COUNTS_RANGE)
    counts = float(np.exp(rng.uniform(lo, hi)))
    measured = projected_scan(scanner, grid, activity, mu, energy_kev, counts, rng)
    image = spect_osem(measured, scanner, None, None, ITERATIONS, SUBSETS, grid,
                       energy_kev=energy_kev)
    return Pair(phantom.name, image.array, mu, energy_kev, counts)


def cached_pair(folder: Path, scanner: Scanner, energy_kev: float, seed: int) -> Pair:
    """:func:`pair` with the patient's own generator (``seed`` and its folder's name), kept in
    ``folder/fastpath-<camera>-<seed>.npz`` so that a second training run reads it."""
    path = folder / f"fastpath-{scanner.name}-{seed}.npz"
    if path.is_file():
        with np.load(path) as z:
            return Pair(str(z["name"]), z["nac"], z["mu"], float(z["energy_kev"]),
                        float(z["counts"]))
    rng = np.random.default_rng([seed, *folder.name.encode()])
    p = pair(folder, scanner, energy_kev, rng)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, name=p.name, nac=p.without_attenuation, mu=p.mu_per_mm,
                        energy_kev=p.energy_kev, counts=p.counts)
    tmp.replace(path)
    return p
