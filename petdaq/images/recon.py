"""``petdaq recon``: reconstruct a run's (or a file's) coincidences offline. A thin layer over
:func:`recon.lm_osem` and the exports.

``RUN`` is a run directory (``coincidences.h5`` and ``run.json``, see :mod:`runstore.rundir`) or a
list-mode file: HDF5 with a ``coincidences`` dataset of ``hw.COINC_DTYPE`` (:mod:`runstore.listmode`)
or a ``.npy`` array of it (give ``--scanner`` where the file does not name one). Writes, into
``--out`` (default ``RUN/images``): ``image.nii.gz``, ``image_mip.png``, ``image_slices/``, a
DICOM PET series ``dicom/`` (Bq/mL when the duration is known) and with ``--report`` the figures
of merit of the run's phantom in ``report.json`` (emulated runs name their phantom). A SPECT
run (its ``projections.npz``) is reconstructed by :mod:`petdaq.images.reconspect`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hw.scanner import Scanner, load_scanner
from infra.atomic import replacing
from infra.cluster import client_for
from infra.errors import UserError
from infra.progress import Progress
from infra.study import Study
from petdaq.batch import files_in, for_each
from petdaq.images.reconspect import is_spect_run, recon_spect_run
from petdaq.options import add_cluster_option
from recon.motion.runmotion import checked as checked_motion
from recon.outputs.png import DISPLAY_FWHM_MM
from recon.pet.runimage import (
    RUN_ITERATIONS,
    RUN_UPDATES,
    RunReconOptions,
    reconstruct_run,
    schedule,
)
from recon.pet.system import DEFAULT_SAMPLES
from runstore.facts import RunFacts


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``recon`` on the ``petdaq`` sub-command parser."""
    p = sub.add_parser("recon", help="reconstruct a run into an image (PET: its coincidences; "
                       "SPECT: its projections)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("run", nargs="+", help="run directories, or list-mode files (.h5 / .npy); "
                   "several are reconstructed one after the other, or with --cluster on its "
                   "workers")
    p.add_argument("--scanner", help="scanner name or .toml (default: the run's)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"OSEM iterations (default: {RUN_UPDATES} updates, iterations x "
                        f"subsets, at least {RUN_ITERATIONS} iterations; SPECT 4)")
    p.add_argument("--subsets", type=int, default=None,
                   help="OSEM subsets (default: one per 50 k prompts, 1 to 10, a divisor of "
                        f"{RUN_UPDATES}: fewer events per subset bias list-mode OSEM low)")
    p.add_argument("--tof", action=argparse.BooleanOptionalAction, default=True,
                   help="use time of flight (default on)")
    p.add_argument("--randoms", action=argparse.BooleanOptionalAction, default=True,
                   help="correct randoms from the delayed coincidences (default on)")
    mu = p.add_mutually_exclusive_group()
    mu.add_argument("--mu-map", default=None, metavar="FILE|truth|estimate|learned",
                    help="PET attenuation: estimate (default: the scan's calculated map, the "
                         "outline of its emission filled with water, a skull for a head, lungs "
                         "in another body, a known phantom's construction; written as "
                         "mu_map.nii.gz beside the image), a NIfTI in the scanner's "
                         "frame (1/mm at 511 keV, or a CT in Hounsfield units), or truth (an "
                         "emulated run's phantom, for validation). SPECT: the same, at the "
                         "photopeak's energy, or learned (the camera's shipped model's "
                         "CT-less map from the emission; a .onnx file: that model's; the "
                         "default for a cardiac scan on a camera that ships a model and its "
                         "normal limits)")
    mu.add_argument("--no-attenuation", dest="mu_map", action="store_const", const="none",
                    help="no attenuation correction")
    p.add_argument("--body-part", default=None, metavar="PART",
                   help="what was scanned, for the calculated mu-map (HEAD: with a skull; "
                        "default: the run's study)")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalization", default="stored", metavar="FILE|truth",
                      help="the crystals' efficiencies: a table (.npz, petdaq calibrate BLANK_RUN "
                           "--method normalization), or truth (an emulated scanner's own, for "
                           "validation); default: the scanner's newest stored table")
    norm.add_argument("--no-normalization", dest="normalization", action="store_const",
                      const="none", help="take the crystals as alike")
    p.add_argument("--scatter", action=argparse.BooleanOptionalAction, default=False,
                   help="correct scatter (single-scatter simulation scaled to the tails; needs "
                        "the mu-map; quantified with the scanner's scatter-corrected cross-calibration; "
                        "default off)")
    p.add_argument("--motion-correction", default="auto", metavar="auto|none|FILE.csv",
                   help="head motion: auto (a head scan whose prompts show motion: its pose "
                        "estimated from them into RUN/motion.csv and corrected event by event), "
                        "none, or an external tracker's trace (t_s, tx_mm, ty_mm, tz_mm, rx_deg, "
                        "ry_deg, rz_deg) covering the scan (docs/motion.md)")
    p.add_argument("--voxel", type=float, default=None,
                   help="voxel size, mm (default: the scanner's, its definition's "
                        "[reconstruction] voxel_mm: 2, small-animal 0.5)")
    p.add_argument("--threads", type=int, help="threads (default: all cores)")
    p.add_argument("--samples", type=int, default=None,
                   help="Monte-Carlo LORs of the sensitivity image, computed once per scanner, "
                        f"grid and mu-map and cached (default {DEFAULT_SAMPLES:,} at 2 mm voxels, "
                        "as many more as the voxels are smaller; at least every valid pair: "
                        "each once, exact; small-animal's 0.5 mm grid)")
    p.add_argument("--calibration", type=float, default=None,
                   help="cross-calibration factor, reconstructed counts per true annihilation "
                        "(default: the scanner's [quantification] counts_per_annihilation, "
                        "measured by python -m recon.calibration.crosscal; 1 gives the system model as is)")
    p.add_argument("--dicom", action=argparse.BooleanOptionalAction, default=True,
                   help="write a DICOM series too (default on)")
    p.add_argument("--report", action="store_true",
                   help="figures of merit of the run's phantom (report.json; the cardiac "
                        "phantom: polar_map.png and .csv, the defect, the inferior wall)")
    p.add_argument("--phantom", default=None, metavar="NAME",
                   help="the standard phantom scanned, for a run that names none (a real "
                        "scan, an imported simulation): nu4-iq, whose regions --report finds "
                        "in the image and whose construction is the calculated mu-map")
    p.add_argument("--display-fwhm", type=float, default=DISPLAY_FWHM_MM, metavar="MM",
                   help="Gaussian FWHM (mm) that smooths the PNG pictures, not the stored image "
                        f"(default {DISPLAY_FWHM_MM:g}; 0: none)")
    p.add_argument("--frames", default=None, metavar="SCHEDULE",
                   help="dynamic: reconstruct frames back to back from the scan's start, e.g. "
                        "6x10s,8x30s,5x5min (an emulated kinetic run: in its model's time), "
                        "into RUN/dynamic (BIDS-PET 4D NIfTI and sidecar, a DICOM series)")
    p.add_argument("--photopeak-kev", type=float, default=None, metavar="KEV",
                   help="SPECT: reconstruct the photopeak window holding KEV (default: the "
                        "first, the nuclide's strongest line; Lu-177: 208, or 113)")
    p.add_argument("--cardiac", action="store_true",
                   help="SPECT: read the heart (the left ventricle's axis, the 17-segment polar "
                        "map and its scores against the normal limits: polar_map.png and .csv, "
                        "report.json); a study of the HEART or an emulated heart is read "
                        "without it")
    p.add_argument("--lv-axis", default=None, metavar="APEX_X,Y,Z:BASE_X,Y,Z",
                   help="SPECT, a heart: the left ventricle's axis by hand, scanner mm "
                        "(default: found in the image)")
    p.add_argument("--sex", choices=("F", "M"), default=None,
                   help="SPECT, a heart: the patient's sex, whose normal limits score the polar "
                        "map (default: the run's study; without one, both sexes' limits)")
    p.add_argument("--limits", default=None, metavar="FILE.json",
                   help="SPECT, a heart: a site's normal limits (petdaq cardiac normals; "
                        "default: the product's for the camera)")
    p.add_argument("--out", help="output folder (default RUN/images; RUN/dynamic with --frames)")
    add_cluster_option(p)
    p.set_defaults(func=cmd_recon)


def load_coincidences(path: str | Path) -> tuple[np.ndarray, dict[str, Any], RunFacts]:
    """(coincidences, list-mode header, what the run's documents say) of a run directory or a
    list-mode file."""
    from runstore.facts import run_facts
    from runstore.listmode import read_listmode, read_singles_rates
    from runstore.rundir import LISTMODE_FILE, RunDir

    p = Path(path)
    if p.is_dir():
        run = RunDir.open(p)
        if not (p / LISTMODE_FILE).is_file():
            raise UserError(f"run {p} has no {LISTMODE_FILE} (sort it first: petdaq sort)")
        coinc, header = read_listmode(p / LISTMODE_FILE)
        return coinc, header, replace(run_facts(run),
                                      singles_rates=read_singles_rates(p / LISTMODE_FILE))
    if p.suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False), {}, RunFacts()
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {p}: {exc}") from None
    if p.suffix in (".h5", ".hdf5"):
        coinc, header = read_listmode(p)
        return coinc, header, RunFacts(singles_rates=read_singles_rates(p))
    raise UserError(f"{p} is neither a run directory nor a .h5 / .npy list-mode file")


def cmd_recon(args: argparse.Namespace) -> int:
    if len(args.run) > 1 and args.out:
        raise UserError("--out is for one run: several runs each write into their own folder")
    if args.display_fwhm < 0:
        raise UserError(f"--display-fwhm must be 0 or more mm, got {args.display_fwhm:g}")
    if args.frames is not None and args.cluster is not None:  # the frames are the tasks
        with client_for(args.cluster) as client:
            for run in args.run:
                _recon_one(argparse.Namespace(**{**vars(args), "run": run}), client)
        return 0
    return for_each(args, "run", _recon_one, label="recon", inputs=_inputs, outputs=_outputs)


def _outputs(args: argparse.Namespace) -> list[Path]:
    """What a run's reconstruction made: its image (the rest is written beside it)."""
    return [_out_folder(args) / "image.nii.gz"]


def _out_folder(args: argparse.Namespace) -> Path:
    """``--out``, or RUN/images (a list-mode file: beside it, named for it)."""
    run = Path(args.run)
    return Path(args.out) if args.out else (
        run / "images" if run.is_dir() else run.with_suffix(""))


def _check_report(args: argparse.Namespace, run_phantom: str | None) -> None:
    """``--report`` and ``--phantom`` checked before the reconstruction: the run's phantom, or
    one whose figures the image alone gives (``--phantom nu4-iq`` for a run that names none)."""
    from recon.metrics.report import FOUND_IN_IMAGE

    if run_phantom is not None and args.phantom not in (None, run_phantom):
        raise UserError(f"{args.run} is a scan of the {run_phantom} phantom, not {args.phantom}")
    if args.phantom is not None and args.phantom not in FOUND_IN_IMAGE:
        raise UserError(f"--phantom {args.phantom}: not a phantom this product knows without "
                        f"its run ({', '.join(FOUND_IN_IMAGE)})")
    if not args.report:
        return
    if run_phantom is None and args.phantom not in FOUND_IN_IMAGE:
        raise UserError(f"--report needs a run of a known phantom (its run.json names it), or "
                        f"--phantom {' or '.join(FOUND_IN_IMAGE)} (found in the image)")


def _inputs(args: argparse.Namespace) -> list[Path]:
    """What a run's image depends on: its files, the scanner definitions (calibrations in
    them)."""
    from hw.scanner import BUILTIN_DIR

    run = Path(args.run)
    own = [Path(args.scanner)] if args.scanner and Path(args.scanner).is_file() else []
    return [*files_in(run), *([run] if run.is_file() else []), *files_in(BUILTIN_DIR), *own]


def _recon_one(args: argparse.Namespace, client: Any = None) -> int:
    """``petdaq recon`` of one run (``args.run``); a dynamic run's frames on ``client``'s
    workers when given."""
    import recon
    from recon.metrics import nu4
    from recon.metrics.report import image_report, phantom_report, reconstruction_line, reconstruction_of

    if args.display_fwhm < 0:
        raise UserError(f"--display-fwhm must be 0 or more mm, got {args.display_fwhm:g}")
    motion = checked_motion(args.motion_correction)     # a bad trace: its line, first
    args.iterations_given = args.iterations is not None
    if is_spect_run(args.run):
        return recon_spect_run(args)
    if args.lv_axis or args.photopeak_kev is not None:
        raise UserError("--lv-axis and --photopeak-kev are for SPECT runs")
    coinc, header, facts = load_coincidences(args.run)
    if not np.any(coinc["delayed"] == 0):
        raise UserError(f"{args.run} holds no prompt coincidences: nothing to reconstruct")
    _check_report(args, facts.phantom)
    name = args.scanner or facts.scanner or header.get("scanner")
    if not name:
        raise UserError(f"{args.run} does not name its scanner: give --scanner")
    scanner = load_scanner(name)
    if args.threads is not None:
        recon.set_threads(args.threads)
    options = RunReconOptions(args.iterations, args.subsets, args.tof, args.randoms,
                              _mu_map(args.mu_map or "estimate"), args.scatter, args.voxel, args.samples,
                              args.calibration, _normalization(args.normalization, scanner),
                              Study(body_part=args.body_part).body_part, args.phantom,
                              motion)
    if args.frames is not None:
        return _recon_frames(args, coinc, header, facts, scanner, options, client)
    out = _out_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    chosen = schedule(options, coinc)
    subsets = chosen.subsets
    progress = Progress(f"recon {Path(args.run).name}", chosen.iterations * subsets,
                        unit="subsets")
    made = reconstruct_run(coinc, header, facts, scanner, chosen,
                           callback=lambda it, sub, _img: progress.update(it * subsets + sub + 1),
                           say=print)
    progress.close(chosen.iterations * subsets)
    image, quantified, phantom = made.image, made.quantified, made.phantom
    files = [str(p) for p in recon.save_outputs(image, out / "image", args.display_fwhm)]
    if made.motion is not None:
        files.append(_save_motion(made.motion, args, out))
    if made.mu_map is not None and made.mu_map.image is not None:
        files += [str(p) for p in recon.save_mu_map(image, made.mu_map.image, out)]
    if args.dicom and quantified is not None:
        recon.write_dicom_pet(image, out / "dicom", *quantified)
        files.append(str(out / "dicom"))
    if args.report:
        report = (phantom_report(image, phantom, out) if phantom is not None
                  else image_report(image, args.phantom, out))
        report["reconstruction"] = reconstruction_of(image)
        if "nu4_image_quality" in report:
            print("\n".join(nu4.table(report["nu4_image_quality"])))
            print("  " + reconstruction_line(report["reconstruction"]))
        with replacing(out / "report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        files.append(str(out / "report.json"))
    scatter = image.meta.get("scatter_fraction")
    print(f"reconstructed {image.meta.get('events', 0)} prompts in "
          f"{time.monotonic() - t0:.1f} s ({image.units}, attenuation: "
          f"{image.meta.get('attenuation_method', 'none')}"
          + (f", scatter fraction {scatter:.2f} estimated" if scatter is not None else "")
          + "): " + ", ".join(files))
    return 0


def _save_motion(trace: Any, args: argparse.Namespace, out: Path) -> str:
    """The pose the image was corrected for, into RUN/motion.csv (beside the images of a
    list-mode file); a line says what was corrected."""
    from hw.motion import save

    run = Path(args.run)
    path = (run if run.is_dir() else out) / "motion.csv"
    save(trace, path)
    print(f"motion: corrected event by event for the pose {trace.source} "
          f"({trace.rows.shape[0]} rows): {path}")
    return str(path)


def _mu_map(choice: str) -> str:
    """``--mu-map``, checked: a file is read now, for a one-line error before the
    reconstruction."""
    from recon.corrections import attenuation

    if choice not in (attenuation.ESTIMATE, attenuation.TRUTH, attenuation.NONE):
        attenuation.load(choice)
    return choice


def _normalization(choice: str, scanner: Scanner) -> str:
    """``--normalization``, checked (a table is read now, for a one-line error before the
    reconstruction); a scanner with no stored table is said once."""
    from recon.corrections import normalization

    table = normalization.resolve(choice, scanner) if scanner.kind == "pet" else None
    if choice == normalization.STORED and table is None and scanner.kind == "pet":
        print(f"normalization: {normalization.describe(None, choice, scanner)['why']}; the "
              "crystals are taken as alike")
    return choice


#: Prompts under which a scatter-corrected frame is noted as reading high (docs/kinetics.md).
FEW_PROMPTS = 100_000


def _numbers(numbers: list[int]) -> str:
    """Frame numbers as ranges: ``1-4, 7``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _recon_frames(args: argparse.Namespace, coinc: np.ndarray, header: dict[str, Any],
                  facts: RunFacts, scanner: Any, options: RunReconOptions, client: Any) -> int:
    """``petdaq recon RUN --frames SCHEDULE``: the frames into RUN/dynamic."""
    import recon
    from recon.frames import parse_schedule
    from recon.outputs.bids import missing_study_fields, subject_label, write_bids
    from recon.pet.dynamic import reconstruct_frames

    run = Path(args.run)
    if not run.is_dir():
        raise UserError("--frames needs a run directory (its start document times the frames)")
    frames = parse_schedule(args.frames, facts.kinetic_time_scale)
    out = Path(args.out) if args.out else run / "dynamic"
    t0 = time.monotonic()
    progress = Progress(f"frames {run.name}", len(frames), unit="frames")
    from runstore.rundir import LISTMODE_FILE

    dyn = reconstruct_frames(coinc, header, facts, scanner, frames, options,
                             on_frame=lambda f: progress.update(f.number),
                             cluster=(client, str(run / LISTMODE_FILE)) if client else None)
    progress.close(len(frames))
    nifti, side = write_bids(dyn, out, subject_label(facts.study.patient_id, run.name))
    files = [str(nifti), str(side)]
    if dyn.mu_map is not None and dyn.mu_map.image is not None:
        files += [str(p) for p in recon.save_mu_map(dyn.images[-1], dyn.mu_map.image, out)]
    if args.dicom:
        rp, acq = dyn.quantified
        for stale in (out / "dicom").glob("frame_*.dcm"):  # an earlier schedule's frames
            stale.unlink()
        recon.write_dicom_pet_frames(dyn.images, [
            recon.FrameTiming(f.start_s, f.duration_s, f.number, len(frames)) for f in frames],
            out / "dicom", rp, acq)
        files.append(str(out / "dicom"))
    missing = missing_study_fields(dyn)
    if missing:
        print(f"petdaq: note: the run's study has no {', '.join(missing)}: written n/a in the "
              "sidecar (give them when acquiring)", file=sys.stderr)
    few = [f.number for f, n in zip(frames, dyn.prompts, strict=True) if n < FEW_PROMPTS]
    if options.scatter and few:
        print(f"petdaq: note: {len(few)} of {len(frames)} frames ({_numbers(few)}) have under "
              f"{FEW_PROMPTS // 1000} k prompts: with scatter correction a short frame's image "
              "reads high (+8 % at 76 k prompts, +22 % at 9.5 k; docs/kinetics.md)",
              file=sys.stderr)
    print(f"reconstructed {len(frames)} frames ({sum(dyn.prompts)} prompts) in "
          f"{time.monotonic() - t0:.1f} s (Bq/mL, decay-corrected to the scan's start): "
          + ", ".join(files))
    return 0
