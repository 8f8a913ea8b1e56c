"""How uniform an emulated cylinder comes out with a blank scan's normalization, the truth and none.

The check of docs/normalization.md: an emulated blank scan of the scanner (its crystals as its
``[crystals]`` table and an optional fault file make them) gives a table
(:func:`recon.calibration.normalization.estimate`), compared with the unit's true efficiencies;
an emulated uniform cylinder is then reconstructed three times (LM-OSEM 2 x 10, TOF, randoms
from the delayeds, the phantom's own mu-map, ``--voxel-mm`` voxels) with that table, with the
truth and with none. Over the central 80 % of the cylinder's radius and of the axial field, each
image's means ring by ring (one crystal ring, 1 pitch of z) and module by module (the sector
around the ring) are spread by ring and block artefacts: their standard deviations over the mean
are printed, and those of their ratio to the truth image's means (the same events: what the
normalization alone changes).

A validation, not a scan's processing: it reads the emulator's truth (the unit's efficiencies,
the phantom's own mu-map, singles' energies from the emulator's gains as a calibrated scan has
them), as tests do.

Run: ``python -m recon.calibration.normcheck SCANNER [--blank-s 120] [--cylinder-s 40]
[--activity-mbq 5] [--faults FILE] [--seed 5] [--source cylinder --source-s 30
--source-mbq 20]`` (``--source``: the table from a phantom's run instead of a blank).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np

from hw.faults import load_faults
from hw.scanner import Scanner, load_scanner
from infra.pool import available_cores
from recon.grid import Grid, default_grid


@dataclass(frozen=True)
class Settings:
    """What one check emulates and reconstructs."""

    scanner: str
    blank_s: float = 120.0
    cylinder_s: float = 40.0
    activity_mbq: float = 5.0
    faults: str | None = None
    seed: int = 5
    voxel_mm: float = 1.6
    source: str = "blank"
    """What the table is estimated from: "blank", or a phantom's name (a run of it at
    ``source_mbq`` for ``source_s``)."""
    source_s: float = 30.0
    source_mbq: float = 20.0
    table_only: bool = False


def labels(scanner: Scanner, grid: Grid, radius_mm: float) -> tuple[np.ndarray, ...]:
    """(inside, ring, sector): the voxels of the region, and each one's crystal ring and module
    sector (both over the region's voxels)."""
    x, y, z = grid.centres_mm()
    half = 0.4 * scanner.axial_fov_mm
    inside = np.broadcast_to((np.hypot(x, y) < 0.8 * radius_mm) & (np.abs(z) < half), grid.shape)
    pitch = scanner.axial_fov_mm / scanner.n_rings
    ring = np.floor((z + scanner.axial_fov_mm / 2) / pitch).astype(int)
    turn = np.arctan2(y, x) / (2 * np.pi) + 0.5 / scanner.n_modules
    sector = np.floor(turn * scanner.n_modules).astype(int) % scanner.n_modules
    return (inside, np.broadcast_to(ring, grid.shape)[inside],
            np.broadcast_to(sector, grid.shape)[inside])


def means(values: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Mean of ``values`` for each distinct ``label``."""
    _, index = np.unique(label, return_inverse=True)
    return np.bincount(index, values) / np.bincount(index)


def spreads(values: np.ndarray, reference: np.ndarray, ring: np.ndarray, sector: np.ndarray
            ) -> tuple[float, float, float, float]:
    """(ring, sector, ring over reference, sector over reference) relative standard deviations."""
    out = []
    for label in (ring, sector):
        m = means(values, label)
        out.append(float(m.std() / m.mean()))
    for label in (ring, sector):
        out.append(float(np.std(means(values, label) / means(reference, label))))
    return out[0], out[1], out[2], out[3]


def unit(settings: Settings) -> Scanner:
    """The scanner, with the fault file's faults where given."""
    scanner = load_scanner(settings.scanner)
    if settings.faults is None:
        return scanner
    return replace(scanner, faults=load_faults(settings.faults, scanner.fault_counts()))


def blank_table(scanner: Scanner, settings: Settings) -> np.ndarray:
    """The efficiencies estimated from an emulated blank scan (or, with ``settings.source``, a
    phantom's run); prints their accuracy."""
    import emulator
    from recon.calibration import normalization, phantomnorm

    if settings.source == "blank":
        sim = emulator.simulate(scanner, "blank", "F-18", 0.0, settings.blank_s, seed=3)
        eff, fit = normalization.estimate(sim.singles, scanner, threads=available_cores())
        del sim  # the singles: memory for the cylinder's emulation
        what = f"blank {settings.blank_s:g} s"
    else:
        coinc = phantomnorm.emulated_coincidences(scanner, settings.source, settings.source_mbq,
                                                  settings.source_s, 4, available_cores())
        eff, fit = phantomnorm.estimate_sorted(*normalization.split_blank(coinc), scanner,
                                               settings.source, threads=available_cores())
        what = f"{settings.source} {settings.source_mbq:g} MBq {settings.source_s:g} s"
    truth = scanner.crystal_efficiencies()
    live = truth > 0
    err = eff[live] / truth[live] - 1
    net = np.maximum(fit.net[live], 1.0)
    bound = np.sqrt(np.mean((fit.prompts[live] + fit.randoms[live]) / net ** 2))
    print(f"{what}: r {np.corrcoef(eff[live], truth[live])[0, 1]:.3f}, "
          f"RMS error {100 * np.sqrt(np.mean(err ** 2)):.2f} % (the counts allow "
          f"{100 * bound:.2f} %), true spread {100 * truth[live].std():.2f} % RMS, dead "
          f"{np.flatnonzero(eff == 0).tolist()} (true {np.flatnonzero(~live).tolist()})",
          flush=True)
    return eff


def check(settings: Settings) -> None:
    """Emulate, estimate, reconstruct and print the table of the module docstring."""
    import emulator
    from coincidence.sorter import sort
    from recon.calibration import normalization
    from recon.corrections import normalization as tables
    from recon.pet.osem import lm_osem

    scanner = unit(settings)
    eff = blank_table(scanner, settings)
    if settings.table_only:
        return
    sim = emulator.simulate(scanner, "cylinder", "F-18", settings.activity_mbq,
                            settings.cylinder_s, seed=settings.seed)
    coinc = sort(sim.singles, scanner=scanner, delay_ps=scanner.acquisition["delay_ps"],
                 threads=available_cores())
    del sim
    phantom = emulator.phantoms.get("cylinder", scanner)
    grid = default_grid(scanner, settings.voxel_mm)
    mu = phantom.mu_map(grid, 511.0)
    inside, ring, sector = labels(scanner, grid,
                                  phantom.regions()["cylinder"].shape.semi_axes_mm[0])
    print(f"cylinder {settings.activity_mbq:g} MBq, {settings.cylinder_s:g} s: "
          f"{int((coinc['delayed'] == 0).sum())} prompts", flush=True)
    made = {"the table": normalization.table(eff, scanner, settings.source),
            "the truth": tables.truth(scanner), "none": None}
    images = {name: lm_osem(coinc, scanner, grid, 2, 10, True, "delayed", mu,
                            normalization=table).array[inside] for name, table in made.items()}
    print("| normalization | ring means, std | module means, std | ring means over the truth's "
          "| module means over the truth's |")
    print("|---|---|---|---|---|")
    for name, values in images.items():
        row = spreads(values, images["the truth"], ring, sector)
        print(f"| {name} | " + " | ".join(f"{100 * v:.2f} %" for v in row) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.calibration.normcheck",
                                description=__doc__.splitlines()[0])
    p.add_argument("scanner")
    p.add_argument("--blank-s", type=float, default=120.0)
    p.add_argument("--cylinder-s", type=float, default=40.0)
    p.add_argument("--activity-mbq", type=float, default=5.0)
    p.add_argument("--faults", default=None, help="a fault file (docs/qc.md) the unit has")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--source", default="blank",
                   help="estimate the table from a blank (default) or from this phantom's run "
                        "(e.g. cylinder)")
    p.add_argument("--source-s", type=float, default=30.0, help="that run's seconds")
    p.add_argument("--source-mbq", type=float, default=20.0, help="that run's activity")
    p.add_argument("--table-only", action="store_true", help="the table's accuracy alone")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    check(Settings(a.scanner, a.blank_s, a.cylinder_s, a.activity_mbq, a.faults, a.seed,
                   source=a.source, source_s=a.source_s, source_mbq=a.source_mbq,
                   table_only=a.table_only))
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
