"""Cross-calibration of a PET scanner model: reconstructed counts per true annihilation.

The system model (:mod:`recon.pet.system`) puts images in counts, expected annihilations per voxel,
from the geometry and the crystals' efficiency alone. What it leaves out, the energy window's
acceptance (photo-peak fraction, inter-crystal scatter), dead time and pile-up, and the object
scatter inside the window (the default reconstruction does not correct it), is one factor: the *cross-
calibration*, reconstructed counts per true annihilation, stored per scanner model in its TOML
(``[quantification] counts_per_annihilation``, :attr:`hw.scanner.Scanner.counts_per_annihilation`)
and divided out by :func:`recon.quant.activity_concentration` to give Bq/mL.

Method (that of a clinical cross-calibration, on the emulator): the scanner's ``cylinder``
phantom (water, NEMA NU 2's 203 mm across or 85 % of the transaxial field of view when smaller,
twice the axial field of view long) filled with F-18 of known total activity, sorted with the
scanner's default settings (:func:`coincidence.sort`) and reconstructed as ``petdaq recon`` does
by default (LM-OSEM of 20 updates: one subset per 50 k prompts up to 10, iterations to match;
TOF, randoms from the delayeds, attenuation from the phantom's mu-map, the scanner's default
voxel, ``[reconstruction] voxel_mm``); the image in Bq/mL with calibration 1 is averaged over the
central region (radius half the cylinder's, axial half-length a quarter of the axial field of
view: away from the edges and the low-sensitivity axial ends) and divided by the true
concentration at the scan start.

Because the scatter is calibrated, not corrected, objects that scatter much more or much less
than the cylinder (a point source in air: about 30 % lower on bedside-brain) come out with that
bias.

Each measurement also prints the dead-time factor of its acquisitions (:mod:`hw.deadtime`, with
the scanner's ``singles_dead_time_ns``), stored as ``calibration_dead_time_factor``: images of
other rates are corrected by their own factor over it.

With ``--scatter`` the cylinder is reconstructed with scatter correction (``petdaq recon
--scatter``): the factor then holds no object scatter, and is stored as
``scatter_corrected_counts_per_annihilation``, which scatter-corrected images are quantified with.

The scatter correction scales its estimate to the tails outside the object, so a cylinder that
fills a small bore (small-animal's 85 mm in a 100 mm field of view) cannot be scatter-corrected:
``--diameter-mm`` takes a narrower one (30 mm, a mouse's, on small-animal).

Run: ``python -m recon.calibration.crosscal SCANNER [--activity-mbq A] [--duration S] [--seed N]
[--repeat K] [--diameter-mm D] [--scatter]``; it prints each measurement and the TOML lines to
store.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hw import nuclides
from hw.deadtime import correction_factor
from hw.scanner import Scanner, load_scanner
from infra.errors import UserError
from recon.grid import Grid, default_grid
from recon.pet.runimage import RunReconOptions, mu_map_of, osem_counts, voxel_of
from recon.quant import activity_concentration
from runstore.facts import RunFacts
from runstore.singlesrates import rate_table

if TYPE_CHECKING:
    from emulator.phantoms import Phantom

#: The phantom and nuclide of the calibration.
PHANTOM, NUCLIDE = "cylinder", "F-18"


@dataclass(frozen=True)
class Calibration:
    """One cross-calibration measurement (see the module docstring)."""

    scanner: str
    calibration: float
    """The cross-calibration factor the image was quantified with."""
    measured_bq_ml: float
    """Mean of the central region (Bq/mL at the scan start, with ``calibration``)."""
    true_bq_ml: float
    """The phantom's concentration at the scan start."""
    error: float
    """Relative standard error of ``measured_bq_ml`` from the spread of 8 sectors of the region
    (a rough estimate: 8 samples)."""
    prompts: int
    delayeds: int
    activity_mbq: float
    duration_s: float
    seed: int
    seconds: float
    dead_time_factor: float = 1.0
    """The acquisition's dead-time correction factor (:mod:`hw.deadtime`, with the scanner's
    singles dead time; 1 without one): the factor includes that dead time."""
    diameter_mm: float = 0.0
    """The calibration cylinder's diameter."""

    @property
    def ratio(self) -> float:
        """Measured over true concentration: 1 when the quantification is right."""
        return self.measured_bq_ml / self.true_bq_ml

    @property
    def factor(self) -> float:
        """The cross-calibration factor this measurement gives (counts per true annihilation)."""
        return self.ratio * self.calibration


def central_region(grid: Grid, radius_mm: float, half_length_mm: float) -> np.ndarray:
    """[x, y, z] bool: voxels whose centre is within ``radius_mm`` of the axis and
    ``half_length_mm`` of the centre plane."""
    x, y, z = grid.centres_mm()
    return np.broadcast_to((x * x + y * y <= radius_mm ** 2) & (np.abs(z) <= half_length_mm),
                           grid.shape).copy()


def calibration_phantom(scanner: Scanner, diameter_mm: float | None = None) -> Phantom:
    """The calibration cylinder: the scanner's ``cylinder`` phantom, or one ``diameter_mm``
    across of the same length."""
    from emulator.phantoms.library import uniform_cylinder

    if diameter_mm is not None and not 0 < diameter_mm < scanner.transaxial_fov_mm:
        raise UserError(f"--diameter-mm {diameter_mm:g} must be > 0 and less than the "
                        f"{scanner.transaxial_fov_mm:g} mm field of view of {scanner.name}")
    return uniform_cylinder(scanner, diameter_mm)


def calibration_region(scanner: Scanner, grid: Grid, diameter_mm: float | None = None
                       ) -> np.ndarray:
    """The central region of the calibration cylinder on ``grid`` (see the module docstring)."""
    shape = calibration_phantom(scanner, diameter_mm).regions()["cylinder"].shape
    return central_region(grid, shape.semi_axes_mm[0] / 2, scanner.axial_fov_mm / 4)


def cylinder_concentration_bq_ml(scanner: Scanner, activity_mbq: float,
                                 diameter_mm: float | None = None) -> float:
    """True activity concentration (Bq/mL) of the calibration cylinder holding ``activity_mbq``."""
    shape = calibration_phantom(scanner, diameter_mm).regions()["cylinder"].shape
    return activity_mbq * 1e6 / (shape.volume_mm3 / 1000.0)


def measure(scanner: Scanner | str, activity_mbq: float = 5.0, duration_s: float = 10.0,
            seed: int = 1, *, calibration: float = 1.0, iterations: int | None = None,
            subsets: int | None = None, voxel_mm: float | None = None,
            sensitivity_samples: int | None = None, scatter: bool = False,
            diameter_mm: float | None = None) -> Calibration:
    """Emulate, sort and reconstruct the calibration cylinder (``petdaq recon``'s defaults:
    ``iterations`` and ``subsets`` None as :func:`recon.pet.runimage.schedule`, ``voxel_mm`` None
    the scanner's ``default_voxel_mm``); the central region's mean in Bq/mL with
    ``calibration`` against the true concentration. With ``calibration=1`` their ratio is the
    cross-calibration factor; with the scanner's stored factor it is the accuracy of the
    quantification (1 when right).
    ``scatter``: with scatter correction (``petdaq recon --scatter``), for
    :attr:`hw.scanner.Scanner.scatter_corrected_counts_per_annihilation`. ``diameter_mm``: a
    cylinder of that diameter instead of the scanner's (:func:`calibration_phantom`)."""
    import coincidence
    import emulator

    if not (activity_mbq > 0 and duration_s > 0):
        raise UserError(f"activity and duration must be > 0, got {activity_mbq}, {duration_s}")
    scanner = scanner if isinstance(scanner, Scanner) else load_scanner(scanner)
    if scanner.kind != "pet":
        raise UserError(f"{scanner.name} is not a PET scanner: nothing to cross-calibrate")
    phantom = calibration_phantom(scanner, diameter_mm)
    t0 = time.monotonic()
    sim = emulator.simulate(scanner, phantom, NUCLIDE, activity_mbq, duration_s, seed=seed)
    acq = scanner.acquisition
    coinc = coincidence.sort(sim.singles, scanner=scanner, window_ps=acq["coincidence_window_ps"],
                             energy_window_kev=acq["energy_window_kev"], delay_ps=acq["delay_ps"])
    options = RunReconOptions(iterations=iterations, subsets=subsets, scatter=scatter,
                              voxel_mm=voxel_mm, sensitivity_samples=sensitivity_samples,
                              mu_map="truth")  # the calibration cylinder's map is known
    grid = default_grid(scanner, voxel_of(options, scanner))
    header = {"window_ps": acq["coincidence_window_ps"], "energy_window_kev": acq["energy_window_kev"]}
    mu = mu_map_of(coinc, header, RunFacts(), phantom, scanner, options)
    image = osem_counts(coinc, header, mu, scanner, options)
    nuclide = nuclides.get(NUCLIDE)
    bq_ml = activity_concentration(image, duration_s, nuclide.positron_fraction,
                                   nuclide.half_life_s, calibration).array
    region = calibration_region(scanner, grid, diameter_mm)
    true = cylinder_concentration_bq_ml(scanner, activity_mbq, diameter_mm)
    measured = float(bq_ml[region].mean(dtype=np.float64))
    # the spread of 8 angular sectors of the region (independent noise) gives the error
    x, y, _ = grid.centres_mm()
    sector = np.broadcast_to(((np.arctan2(y, x) + np.pi) / (2 * np.pi) * 8).astype(int) % 8,
                             grid.shape)
    means = np.array([bq_ml[region & (sector == s)].mean() for s in range(8)])
    delayed = coinc["delayed"] != 0
    prompts = coinc[~delayed]
    rates = rate_table(scanner, sim.singles["t"], sim.singles["crystal"])
    dead_time = correction_factor(rates, scanner, scanner.singles_dead_time_ns, prompts["t"],
                                  prompts["crystal_a"], prompts["crystal_b"])
    return Calibration(scanner.name, calibration, measured, true,
                       float(means.std(ddof=1) / np.sqrt(8) / means.mean()),
                       int((~delayed).sum()), int(delayed.sum()), activity_mbq, duration_s,
                       seed, time.monotonic() - t0, dead_time,
                       phantom.regions()["cylinder"].shape.semi_axes_mm[0] * 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.calibration.crosscal", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("scanner", nargs="+", help="PET scanner name(s) or .toml")
    p.add_argument("--activity-mbq", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scatter", action="store_true",
                   help="with scatter correction: the factor of `petdaq recon --scatter`")
    p.add_argument("--diameter-mm", type=float, default=None,
                   help="a cylinder of this diameter (default: the scanner's cylinder phantom); "
                   "a scatter-corrected calibration needs room around it for the scatter tails")
    p.add_argument("--repeat", type=int, default=1,
                   help="independent acquisitions (seeds SEED, SEED + 1, ...), averaged")
    args = p.parse_args(argv)
    if args.repeat < 1:
        raise UserError(f"--repeat must be >= 1, got {args.repeat}")
    for name in args.scanner:
        runs = []
        for seed in range(args.seed, args.seed + args.repeat):
            c = measure(name, args.activity_mbq, args.duration, seed, scatter=args.scatter,
                        diameter_mm=args.diameter_mm)
            runs.append(c)
            print(f"{c.scanner} seed {seed}: {c.prompts} prompts, {c.delayeds} delayeds; central "
                  f"region {c.measured_bq_ml:.1f} Bq/mL at calibration 1, true "
                  f"{c.true_bq_ml:.1f} Bq/mL: factor {c.factor:.4f} ({c.seconds:.0f} s)",
                  flush=True)
        factors = np.array([c.factor for c in runs])
        spread = float(factors.std(ddof=1)) if factors.size > 1 else runs[0].error * factors[0]
        print(f"{name}: factor {factors.mean():.4f} +- {spread:.4f} "
              f"({'spread of ' + str(factors.size) + ' acquisitions' if factors.size > 1 else 'sectors'})"
              f"\n{toml(runs, args.seed, args.scatter, args.diameter_mm)}\n", flush=True)
    return 0


def toml(runs: list[Calibration], first_seed: int, scatter: bool,
         diameter_mm: float | None = None) -> str:
    """The TOML lines of averaged measurements (acquisitions of seeds ``first_seed``, ...), with
    the method in a comment."""
    c = runs[0]
    factors = np.array([r.factor for r in runs])
    command = (f"python -m recon.calibration.crosscal {c.scanner} --activity-mbq {c.activity_mbq:g} "
               f"--duration {c.duration_s:g} --seed {first_seed} --repeat {len(runs)}"
               + (f" --diameter-mm {diameter_mm:g}" if diameter_mm else "")
               + (" --scatter" if scatter else ""))
    key = ("scatter_corrected_counts_per_annihilation" if scatter
           else "counts_per_annihilation")
    return (f"[quantification]\n"
            f"# Cross-calibration, reconstructed counts per true annihilation, measured by\n"
            f"# `{command}`:\n"
            f"# emulated uniform F-18 cylinder {c.diameter_mm:.0f} mm across "
            f"({len(runs)} x ~{c.prompts // 1000} k prompts), "
            f"LM-OSEM TOF with randoms{', scatter' if scatter else ''} and attenuation\n"
            f"# correction, mean of the central region over the true concentration "
            f"(factors {', '.join(f'{f:.3f}' for f in factors)}).\n"
            f"{key} = {factors.mean():.3f}\n"
            f"# The dead-time factor of the calibration's acquisitions (the factor above "
            f"includes it),\n# printed by the same command.\n"
            f"calibration_dead_time_factor = {np.mean([r.dead_time_factor for r in runs]):.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
