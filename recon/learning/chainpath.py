"""The training set's emulated-chain pairs: a virtual patient scanned by the emulator (camera,
energy windows, TEW) and reconstructed without attenuation correction exactly as a SPECT run's
learned map reads it, with its true mu-map as the target.

Slower than the fast path (:mod:`recon.learning.fastpath`: minutes a patient instead of
seconds) but with the emulator's Compton scatter and TEW's subtraction of it, which the fast path
lacks; the scan's projections are kept beside the patient (``chain-<camera>-60s.npz``) so that
the next training run reads them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emulator import phantoms
from hw.scanner import Scanner
from recon.grid import default_grid
from recon.learning.fastpath import SUBSETS, Pair
from recon.spect.osem import spect_osem
from recon.spect.runimage import OUTLINE_ITERATIONS, peak_and_scatter
from recon.validation import spectruns

#: The emulated scan: a Tc-99m stress scan of 800 MBq for 60 s (the held-out validation's).
ACTIVITY_MBQ, SECONDS = 800.0, 60.0
#: A patient's scan is emulated with this seed plus its number (``torso-012``: 1012).
SEED_BASE = 1000


def scan_path(folder: Path, scanner: Scanner) -> Path:
    """Where the patient's emulated scan is kept."""
    return folder / f"chain-{scanner.name}-{SECONDS:g}s.npz"


def projections(folder: Path, scanner: Scanner) -> np.ndarray:
    """The patient's emulated scan [window, head, view, row, column]: the kept one, else
    emulated now (minutes) and kept."""
    number = re.search(r"(\d+)$", folder.name)
    seed = SEED_BASE + (int(number.group(1)) if number else 0)
    return spectruns.kept_scan(scan_path(folder, scanner), scanner,
                               phantoms.get(str(folder), scanner), ACTIVITY_MBQ, SECONDS, seed)


def pair(folder: Path, scanner: Scanner, energy_kev: float) -> Pair:
    """The patient's chain pair: the OSEM image without attenuation correction (TEW scatter in
    the model, :data:`OUTLINE_ITERATIONS` iterations, as a run's learned map reads it) and its
    true map."""
    grid = default_grid(scanner)
    proj = projections(folder, scanner)
    peak, scatter = peak_and_scatter(proj, spectruns.windows_of(scanner))
    image = spect_osem(peak, scanner, scatter, None, OUTLINE_ITERATIONS, SUBSETS, grid,
                       energy_kev=energy_kev)
    phantom = phantoms.get(str(folder), scanner)
    return Pair(phantom.name, image.array, phantom.mu_map(grid, energy_kev), energy_kev,
                float(peak.sum()))
