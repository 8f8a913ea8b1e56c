"""The training set's fast path: a virtual patient's SPECT image without attenuation correction
made by the reconstruction's own projector instead of the emulator, and its true mu-map as the
target.

The projector (attenuation by the patient's true map, the collimator's depth-dependent blur)
gives each energy window's expected counts by the camera's fitted window model
(:mod:`recon.learning.scattermodel`: Compton scatter and the primaries in the side windows);
Poisson noise at a drawn photopeak count; then TEW and OSEM without correction as a SPECT run's
learned map reads its image (``python -m recon.validation.learnedmap`` compares the two paths on
the same patients and measures the model on the emulated chain's images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coincidence import spect
from emulator import phantoms
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.learning import scattermodel
from recon.spect.osem import spect_osem
from recon.spect.runimage import OUTLINE_ITERATIONS, peak_and_scatter
from recon.validation.spectruns import windows_of

#: Photopeak counts of a scan (scatter included) are drawn log-uniformly between these (a 60 s
#: stress scan of 800 MBq Tc-99m on spect-general gives 1.0-2.5 million).
COUNTS_RANGE = (6e5, 4e6)
#: The kept pairs' file names carry this, so that a change of the path makes them anew.
VERSION = 2
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
    model = scattermodel.load(scanner.name)
    expected = model.expected(scattermodel.basis(scanner, activity, mu, energy_kev))
    expected *= np.float32(counts / max(float(expected[spect.PEAK].sum()), 1e-30))
    peak, scatter = peak_and_scatter(rng.poisson(expected), windows_of(scanner))
    image = spect_osem(peak, scanner, scatter, None, ITERATIONS, SUBSETS, grid,
                       energy_kev=energy_kev)
    return Pair(phantom.name, image.array, mu, energy_kev, counts)


def cached_pair(folder: Path, scanner: Scanner, energy_kev: float, seed: int) -> Pair:
    """:func:`pair` with the patient's own generator (``seed`` and its folder's name), kept in
    ``folder/fastpath<VERSION>-<camera>-<seed>.npz`` so that a second training run reads it."""
    path = folder / f"fastpath{VERSION}-{scanner.name}-{seed}.npz"
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
