"""Fit a camera's energy-window model (:mod:`recon.learning.scattermodel`) to the emulator's
scans of the first patients of a population.

Run: ``python -m recon.learning.fitscatter POPULATION [--n 3] [--camera spect-general]
[--out FILE]``: each patient's Tc-99m scan is emulated as the chain path's (800 MBq, 60 s;
minutes a patient, kept beside it as ``chain-<camera>-60s.npz``) and the window model is
written to ``recon/learning/scatter/<camera>.json`` (or ``--out``), with the fitted scans'
measured and modelled window totals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from coincidence import spect
from emulator import phantoms
from hw.scanner import Scanner, load_scanner
from infra.errors import UserError
from recon.grid import default_grid
from recon.learning import chainpath, scattermodel
from recon.validation import spectruns
from recon.validation.runs import patients


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.learning.fitscatter",
                                description=__doc__.splitlines()[0])
    p.add_argument("population", type=Path, help="a folder of petdaq phantoms population")
    p.add_argument("--n", type=int, default=3, help="patients to emulate and fit on")
    p.add_argument("--camera", default="spect-general")
    p.add_argument("--out", type=Path, default=None, help="default: the shipped model's file")
    a = p.parse_args(argv)
    try:
        scanner = load_scanner(a.camera)
        folders, scans, bases = scans_and_bases(a.population, a.n, scanner)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = scattermodel.fit(scans, bases)
    model = scattermodel.ScatterModel(
        a.camera, c, f"{a.population.name}: {', '.join(f.name for f in folders)} (Tc-99m, "
                     f"{chainpath.ACTIVITY_MBQ:g} MBq, {chainpath.SECONDS:g} s)")
    out = scattermodel.save(model, a.out or scattermodel.path_of(a.camera),
                            totals(model, scans, bases))
    print(f"{out}: " + "; ".join(f"{w} " + " ".join(f"{v:.4f}" for v in c[k])
                                 for k, w in enumerate(scattermodel.WINDOWS)))
    return 0


def scans_and_bases(population: Path, n: int, scanner: Scanner
                    ) -> tuple[list[Path], list[np.ndarray], list[np.ndarray]]:
    """The first ``n`` patients' folders, emulated scans (kept, else made now) and bases."""
    folders = patients(population, n)
    if len(folders) < max(n, 1):
        raise UserError(f"{population} holds {len(folders)} patients; the fit asks {n}")
    energy = float(np.mean(spectruns.windows_of(scanner).peak))
    grid = default_grid(scanner)
    scans, bases = [], []
    for i, folder in enumerate(folders):
        print(f"{folder.name}: emulated scan {i + 1}/{len(folders)} (minutes where not kept)",
              flush=True)
        scans.append(chainpath.projections(folder, scanner))
        ph = phantoms.get(str(folder), scanner)
        bases.append(scattermodel.basis(scanner, ph.activity_map(grid),
                                        ph.mu_map(grid, energy), energy))
    return folders, scans, bases


def totals(model: scattermodel.ScatterModel, scans: list[np.ndarray],
           bases: list[np.ndarray]) -> dict[str, float]:
    """Each window's counts over the fitted scans, measured and as the model gives them at the
    scans' photopeak counts."""
    per_window = [model.expected(b).reshape(len(scattermodel.WINDOWS), -1).sum(axis=1)
                  for b in bases]  # each scan's modelled window totals, at any scale
    out = {}
    for k, w in enumerate(scattermodel.WINDOWS):
        out[f"{w}_measured"] = float(sum(s[k].sum() for s in scans))
        out[f"{w}_modelled"] = round(sum(float(t[k] / t[spect.PEAK] * s[spect.PEAK].sum())
                                         for t, s in zip(per_window, scans, strict=True)))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
