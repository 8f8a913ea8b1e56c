"""``petdaq dosimetry RUN1 RUN2 ...``: the absorbed dose of regions from SPECT time points of one
patient (post-therapy Lu-177).

Each run is reconstructed in Bq/mL (:mod:`recon.spect.quant`: the camera's stored sensitivity);
its time point is its start after the study's injection (``--injection-time`` when it was
acquired), and a region's activity is its Bq/mL summed over its voxels, at the scan's start. Per
region the activities are fitted (:mod:`recon.dosimetry.fit`), integrated from the injection to
infinity and turned into a self-dose with the S value of a sphere of the region's mass
(:mod:`recon.dosimetry.mird`). Regions: ``--sphere NAME:X,Y,Z,R`` (mm), ``--labels`` (a NIfTI on
the image grid) or the emulated phantom's. Writes into ``--out`` (default ``RUN1/dosimetry``):
``timepoints.csv``, ``dosimetry.csv`` and ``dosimetry.png``.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infra.atomic import replacing
from infra.errors import UserError
from petdaq.images.kinetics import add_region_options
from recon.dosimetry.fit import MODELS, ExpFit, check_times, fit
from recon.dosimetry.mird import sphere_s_gy_per_mbq_h


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``dosimetry`` on the ``petdaq`` sub-command parser."""
    p = sub.add_parser("dosimetry", help="absorbed dose of regions from SPECT time points of "
                       "one patient (exponential fit, time-integrated activity, MIRD spheres)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", metavar="RUN", help="SPECT runs of the patient, any order")
    add_region_options(p, "the SPECT image")
    p.add_argument("--fit", choices=MODELS, default="mono",
                   help="mono-exponential (default) or bi-exponential (4 time points or more)")
    p.add_argument("--density-g-ml", type=float, default=1.0, metavar="G_ML",
                   help="the regions' density, for their mass (default 1.0)")
    p.add_argument("--photopeak-kev", type=float, default=None, metavar="KEV",
                   help="the photopeak window to reconstruct (default: the first; Lu-177: 208)")
    p.add_argument("--out", default=None, help="output folder (default RUN1/dosimetry)")
    p.set_defaults(func=cmd_dosimetry)


@dataclass(frozen=True)
class TimePoint:
    """One run of the study: its time after injection and its regions' activities."""

    run: str
    time_h: float
    activity_mbq: dict[str, float]


def cmd_dosimetry(args: argparse.Namespace) -> int:
    from daq.control import checks
    from runstore.facts import run_facts
    from runstore.rundir import RunDir

    checks.positive(args.density_g_ml, "--density-g-ml", "g/mL")
    runs = [RunDir.open(Path(r)) for r in args.runs]
    facts = [run_facts(r) for r in runs]
    nuclide = _same_study(runs, facts)
    times_h = [_time_h(run, f) for run, f in zip(runs, facts, strict=True)]
    check_times(np.array(times_h), args.fit)  # before the images, which take a while
    scanner, regions, voxel_ml = _regions(args, facts[0])
    points = sorted((_time_point(run, f, t, scanner, regions, voxel_ml, args.photopeak_kev)
                     for run, f, t in zip(runs, facts, times_h, strict=True)),
                    key=lambda p: p.time_h)
    rows = []
    for name, mask in regions.items():
        t = np.array([p.time_h for p in points])
        a = np.array([p.activity_mbq[name] for p in points])
        try:
            f = fit(t, a, args.fit)
        except UserError as exc:
            raise UserError(f"region {name}: {exc}") from None
        mass_g = float(mask.sum()) * voxel_ml * args.density_g_ml
        rows.append(_row(name, f, mass_g, sphere_s_gy_per_mbq_h(nuclide, mass_g,
                                                                args.density_g_ml)))
    out = Path(args.out) if args.out else runs[0].path / "dosimetry"
    out.mkdir(parents=True, exist_ok=True)
    files = [_write_points(points, out / "timepoints.csv"),
             _write_rows(rows, out / "dosimetry.csv"),
             _plot(points, rows, out / "dosimetry.png", nuclide)]
    for row in rows:
        print(f"{row['region']}: {row['mass_g']} g, effective half-life "
              f"{row['effective_half_life_h']} h, TIA {row['tia_mbq_h']} MBq h, "
              f"absorbed dose {row['absorbed_dose_gy']} Gy")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _same_study(runs: list[Any], facts: list[Any]) -> str:
    """The runs' nuclide; one-line errors for runs that are not one patient's SPECT study."""
    from runstore.projections import PROJECTIONS_FILE, has_projections

    for run, f in zip(runs, facts, strict=True):
        if not has_projections(run.path):
            raise UserError(f"{run.path} is not a SPECT run (no {PROJECTIONS_FILE})")
        if f.study.injection_time_utc is None or not f.start_utc:
            raise UserError(f"{run.path} has no injection time: acquire with --injection-time")
    if len({f.nuclide for f in facts}) != 1 or not facts[0].nuclide:
        raise UserError("the runs must name one nuclide, got "
                        + ", ".join(str(f.nuclide) for f in facts))
    patients = {f.study.patient_id for f in facts}
    if len(patients) != 1:
        raise UserError(f"the runs are of different patients: {', '.join(map(str, patients))}")
    if len({f.scanner for f in facts}) != 1:
        raise UserError("the runs come from different scanners")
    return str(facts[0].nuclide)


def _regions(args: argparse.Namespace, facts: Any) -> tuple[Any, dict[str, np.ndarray], float]:
    """(scanner, regions on its SPECT grid, voxel volume in mL)."""
    import recon
    from hw.scanner import load_scanner
    from recon.kinetics.regions import (
        label_names,
        label_regions,
        phantom_regions,
        sphere_regions,
    )
    from recon.pet.runimage import run_phantom

    scanner = load_scanner(facts.scanner)
    grid = recon.default_grid(scanner)
    regions: dict[str, np.ndarray] = {}
    if args.labels:
        regions |= label_regions(args.labels, grid.shape, label_names(args.label_names))
    if args.sphere:
        regions |= sphere_regions(args.sphere, grid)
    if not regions:
        phantom = run_phantom(facts, scanner)
        if phantom is None:
            raise UserError("the runs are not emulated: give the regions (--sphere "
                            "NAME:X,Y,Z,R or --labels NIFTI)")
        regions = phantom_regions(phantom, grid)
    return scanner, regions, grid.voxel_volume_mm3 / 1000.0


def _time_h(run: Any, facts: Any) -> float:
    """The run's start in hours after the injection; one line where it is not after it."""
    time_h = facts.study.injection_before_s(facts.start_utc) / 3600.0
    if not time_h > 0:
        raise UserError(f"{run.path} starts {time_h:.3g} h after the injection: not after it")
    return time_h


def _time_point(run: Any, facts: Any, time_h: float, scanner: Any,
                regions: dict[str, np.ndarray], voxel_ml: float,
                photopeak_kev: float | None) -> TimePoint:
    from petdaq.images.reconspect import SPECT_ITERATIONS, SPECT_SUBSETS
    from recon.spect.quant import quantify_spect
    from recon.spect.runimage import spect_run_image

    image, units = quantify_spect(spect_run_image(run, scanner, SPECT_ITERATIONS, SPECT_SUBSETS,
                                                  photopeak_kev=photopeak_kev),
                                  scanner, facts.nuclide, facts.duration_s)
    if image.units != "Bq/mL":
        raise UserError(f"{run.path}: the image is in {units}")
    activity = {name: float(image.array[mask].sum(dtype=np.float64)) * voxel_ml / 1e6
                for name, mask in regions.items()}
    print(f"{run.path.name}: {time_h:.2f} h after injection, "
          + ", ".join(f"{k} {v:.4g} MBq" for k, v in activity.items()), flush=True)
    return TimePoint(run.path.name, time_h, activity)


def _row(name: str, f: ExpFit, mass_g: float, s: float) -> dict[str, Any]:
    return {"region": name, "fit": f.model, "mass_g": round(mass_g, 1),
            "a0_mbq": ";".join(f"{a:.5g}" for a in f.amplitudes_mbq),
            "rates_per_h": ";".join(f"{k:.5g}" for k in f.rates_per_h),
            "effective_half_life_h": round(f.effective_half_life_h, 2),
            "tia_mbq_h": round(f.tia_mbq_h, 1), "s_gy_per_mbq_h": f"{s:.5g}",
            "absorbed_dose_gy": round(f.tia_mbq_h * s, 3),
            "fit_rms_relative": round(f.rms_relative, 4), "_fit": f}


def _write_points(points: list[TimePoint], path: Path) -> Path:
    with replacing(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["region", "run", "time_h", "activity_mbq"])
        for p in points:
            for name, a in p.activity_mbq.items():
                w.writerow([name, p.run, f"{p.time_h:.4f}", f"{a:.6g}"])
    return path


def _write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    fields = [k for k in rows[0] if not k.startswith("_")]
    with replacing(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _plot(points: list[TimePoint], rows: list[dict[str, Any]], path: Path, nuclide: str) -> Path:
    """Each region's time points and fitted curve, activity (MBq) against hours."""
    import pyqtgraph as pg

    from recon.kinetics.plots import COLOURS, export_png, figure

    app, win = figure()
    ax = win.addPlot(title=f"{nuclide} dosimetry: regional activity and fit")
    ax.addLegend(offset=(-10, 10))
    ax.showGrid(x=True, y=True, alpha=0.3)
    ax.setLabel("bottom", "time after injection (h)")
    ax.setLabel("left", "activity in the region (MBq)")
    t_end = max(p.time_h for p in points) * 1.2
    ts = np.linspace(0.0, t_end, 200)
    for k, row in enumerate(rows):
        colour = COLOURS[k % len(COLOURS)]
        name = row["region"]
        ax.plot([p.time_h for p in points], [p.activity_mbq[name] for p in points], pen=None,
                symbol="o", symbolSize=8, symbolBrush=colour)
        f = row["_fit"]
        label = (f"{name}: T_eff {row['effective_half_life_h']:g} h, "
                 f"{row['absorbed_dose_gy']:g} Gy")
        ax.plot(ts, f.activity_mbq(ts), pen=pg.mkPen(colour, width=2), name=label)
    return export_png(app, win, path, 900)
