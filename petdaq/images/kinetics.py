"""``petdaq kinetics``: curves and kinetic parameters of a run's dynamic image (RUN/dynamic).

Writes into ``RUN/kinetics``: ``tacs.csv`` and ``tacs.png`` (every region's mean and SD per frame,
Bq/mL, against the kinetic clock's minutes), ``parameters.csv`` (one row per region: region,
model, the parameters by their usual names, the fit's quality) and the model's plot; ``--model
suv`` also ``suv.nii.gz``. Regions: the emulated phantom's (default), ``--labels`` (a NIfTI on the
image's grid) or ``--sphere NAME:X,Y,Z,R`` (mm).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from infra.atomic import replacing
from infra.errors import UserError

MODELS = ("patlak", "logan", "suvr", "suv")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``kinetics`` on the ``petdaq`` sub-command parser."""
    p = sub.add_parser("kinetics", help="time-activity curves and kinetic parameters of a "
                       "dynamic run (Patlak, Logan, SUVR, SUV)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("run", help="run directory with RUN/dynamic (petdaq recon RUN --frames ...)")
    p.add_argument("--model", choices=MODELS, default="patlak")
    p.add_argument("--input-region", default=None, metavar="NAME",
                   help="image-derived input: the region's curve (Patlak)")
    p.add_argument("--input-file", default=None, metavar="CSV",
                   help="sampled plasma input: columns time_min, plasma_bq_ml (Patlak)")
    p.add_argument("--reference", default=None, metavar="NAME",
                   help="reference region (Logan, SUVR)")
    p.add_argument("--t-star-min", type=float, default=10.0, metavar="MIN",
                   help="fits and SUVR use the frames from this time on (min; default 10)")
    p.add_argument("--k2-prime", type=float, default=None, metavar="PER_MIN",
                   help="Logan: the reference region's efflux rate k2' (1/min; default: the "
                        "term is left out)")
    add_region_options(p, "the dynamic image")
    p.add_argument("--erode-mm", type=float, default=0.0, metavar="MM",
                   help="use only voxels at least this far inside each region (default 0)")
    p.add_argument("--input-erode-mm", type=float, default=4.0, metavar="MM",
                   help="the same for the image-derived input's region (default 4: its core, "
                        "away from what spills in)")
    p.add_argument("--out", default=None, help="output folder (default RUN/kinetics)")
    p.set_defaults(func=cmd_kinetics)


def add_region_options(p: argparse.ArgumentParser, image: str) -> None:
    """``--labels``, ``--label-names`` and ``--sphere`` on a command whose regions lie on
    ``image``'s grid."""
    p.add_argument("--labels", default=None, metavar="NIFTI",
                   help=f"regions from a label image on {image}'s grid")
    p.add_argument("--label-names", default=None, metavar="NAME=N,...",
                   help="names of the label image's values")
    p.add_argument("--sphere", action="append", default=[], metavar="NAME:X,Y,Z,R",
                   help="a spherical region (scanner mm); may be given several times")


def _regions(args: argparse.Namespace, run: Path, grid: Any, shape: tuple[int, ...],
             facts: Any) -> dict[str, np.ndarray]:
    from recon.kinetics.regions import (
        label_names,
        label_regions,
        phantom_regions,
        sphere_regions,
    )

    regions: dict[str, np.ndarray] = {}
    if args.labels:
        regions |= label_regions(args.labels, shape, label_names(args.label_names))
    if args.sphere:
        regions |= sphere_regions(args.sphere, grid)
    if not regions:
        if not facts.phantom:
            raise UserError(f"run {run} is not emulated: give its regions (--labels NIFTI or "
                            "--sphere NAME:X,Y,Z,R)")
        from hw.scanner import load_scanner
        from recon.pet.runimage import run_phantom

        regions = phantom_regions(run_phantom(facts, load_scanner(facts.scanner)), grid)
    return regions


def _check(args: argparse.Namespace) -> None:
    for name in ("t_star_min", "erode_mm", "input_erode_mm"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    if args.k2_prime is not None and not (math.isfinite(args.k2_prime) and args.k2_prime > 0):
        raise UserError(f"--k2-prime must be a number > 0, got {args.k2_prime}")
    if args.model == "patlak" and (args.input_region is None) == (args.input_file is None):
        raise UserError("Patlak needs its input: --input-region NAME or --input-file CSV")
    if args.model in ("logan", "suvr") and args.reference is None:
        raise UserError(f"{args.model} needs a reference region: --reference NAME")


def cmd_kinetics(args: argparse.Namespace) -> int:
    from recon.grid import LPS_TO_RAS, Grid
    from recon.kinetics import plots
    from recon.kinetics.regions import eroded
    from recon.kinetics.tacs import region_curves, write_tacs
    from recon.outputs.bids import read_bids
    from runstore.facts import run_facts
    from runstore.rundir import RunDir

    _check(args)
    run = Path(args.run)
    facts = run_facts(RunDir.open(run))
    if args.model == "suv" and not (run / "dynamic").is_dir():
        frames, sidecar, img = static_as_frame(run, facts)
    else:
        frames, sidecar, img = read_bids(run / "dynamic")
    lps = np.linalg.inv(LPS_TO_RAS) @ img.affine
    grid = Grid(frames.shape[:3], tuple(np.diag(lps)[:3]), tuple(lps[:3, 3]))
    regions = _regions(args, run, grid, frames.shape, facts)
    for needed in (args.input_region, args.reference):
        if needed is not None and needed not in regions:
            raise UserError(f"no region {needed!r}: the regions are {', '.join(regions)}")
    masks = {name: eroded(mask, args.input_erode_mm if name == args.input_region
                          else args.erode_mm, grid.voxel_mm) for name, mask in regions.items()}
    curves = region_curves(frames, sidecar, masks)
    out = Path(args.out) if args.out else run / "kinetics"
    out.mkdir(parents=True, exist_ok=True)
    files = [write_tacs(curves, out / "tacs.csv"),
             plots.plot_curves(curves, out / "tacs.png", f"time-activity curves: {run.name}")]
    rows, plot = _model(args, curves, frames, sidecar, masks, facts, out, img)
    files += [_write_parameters(rows, out / "parameters.csv"), *plot]
    if args.input_region and sidecar.get("ScatterCorrectionMethod") == "none":
        print(f"note: the frames have no scatter correction, so the input region "
              f"{args.input_region!r} reads low as the tissue around it fills and Ki with it "
              "(docs/kinetics.md): reconstruct them with petdaq recon RUN --frames ... --scatter")
    for row in rows:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _model(args: argparse.Namespace, curves: Any, frames: np.ndarray, sidecar: dict[str, Any],
           masks: dict[str, np.ndarray], facts: Any, out: Path, img: Any
           ) -> tuple[list[dict[str, Any]], list[Path]]:
    from recon.kinetics import models, plots, suv

    t_star = args.t_star_min
    if args.model == "patlak":
        inp = (models.input_from_region(curves, args.input_region) if args.input_region
               else models.input_from_file(args.input_file, curves))
        fits = {name: models.patlak(curves.curve(name), inp, curves, t_star)
                for name in masks if name != args.input_region}
        rows = [{"region": n, "model": "patlak", "Ki_per_min": f"{f.slope:.6g}",
                 "intercept_ml_per_ml": f"{f.intercept:.6g}", "r2": f"{f.r2:.4f}",
                 "frames": f.x.size, "t_star_min": t_star, "input": inp.source}
                for n, f in fits.items()]
        return rows, [plots.plot_fits(fits, out / "patlak.png", f"Patlak ({inp.source})",
                                      "integral Cp / Cp (min)", "C_T / Cp", "Ki")]
    if args.model == "logan":
        ref = curves.curve(args.reference)
        fits = {name: models.logan_reference(curves.curve(name), ref, curves, t_star,
                                             args.k2_prime)
                for name in masks if name != args.reference}
        rows = [{"region": n, "model": "logan", "DVR": f"{f.slope:.6g}",
                 "intercept_min": f"{f.intercept:.6g}", "r2": f"{f.r2:.4f}",
                 "frames": f.x.size, "t_star_min": t_star, "reference": args.reference}
                for n, f in fits.items()]
        return rows, [plots.plot_fits(fits, out / "logan.png",
                                      f"Logan, reference {args.reference}",
                                      "(int C_ref + C_ref/k2') / C_T (min)", "int C_T / C_T (min)",
                                      "DVR")]
    if args.model == "suvr":
        ref = curves.curve(args.reference)
        rows = [{"region": n, "model": "suvr",
                 "SUVR": f"{models.suvr(curves.curve(n), ref, curves, t_star):.6g}",
                 "t_star_min": t_star, "reference": args.reference}
                for n in masks if n != args.reference]
        return rows, []
    return suv.suv_outputs(frames, sidecar, masks, facts, curves, t_star, out, img)


def _write_parameters(rows: list[dict[str, Any]], path: Path) -> Path:
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["region", "model"])
        w.writeheader()
        w.writerows(rows)
    return path


def static_as_frame(run: Path, facts: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
    """A run's static image (RUN/images/image.nii.gz) as a dynamic image of one frame."""
    import nibabel as nib

    path = run / "images" / "image.nii.gz"
    if not path.is_file() or not facts.duration_s:
        raise UserError(f"run {run} has neither a dynamic image (petdaq recon RUN --frames ...) "
                        "nor a static image with a known duration (petdaq recon RUN)")
    img = nib.load(str(path))
    units = img.header["descrip"].item().decode(errors="replace").strip("\x00 ")
    if units != "Bq/mL":
        raise UserError(f"{path} is in '{units}', not Bq/mL: SUV needs a quantified image")
    sidecar = {"FrameTimesStart": [0.0], "FrameDuration": [facts.duration_s]}
    return np.asarray(img.get_fdata(), np.float32)[..., None], sidecar, img
