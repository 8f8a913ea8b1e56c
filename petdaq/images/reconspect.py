"""``petdaq recon RUN`` on a SPECT run: its projections -> OSEM (collimator model, the
attenuation ``--mu-map`` names, TEW scatter) -> NIfTI, PNG and a DICOM NM volume; a heart
(``--cardiac``, a study of the HEART or an emulated heart) read and scored (polar map PNG and
CSV, report.json), and with ``--report`` the phantom's figures (a heart's: the defect, the axis'
error, the inferior wall with and without attenuation correction)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from infra.atomic import replacing
from infra.errors import UserError

#: OSEM of a SPECT run's image (those of the DAQ's image at the stop).
SPECT_ITERATIONS, SPECT_SUBSETS = 4, 6


def is_spect_run(path: str | Path) -> bool:
    """A run directory holding a SPECT acquisition's projections."""
    from runstore.projections import has_projections

    return Path(path).is_dir() and has_projections(path)


def recon_spect_run(args: argparse.Namespace) -> int:
    """Reconstruct a SPECT run into ``--out`` (default RUN/images)."""
    import recon
    from hw.scanner import load_scanner
    from recon.metrics.report import phantom_report
    from recon.pet.runimage import run_phantom
    from recon.spect import learnedmap, normals
    from recon.spect.lvaxis import parse_lv_axis
    from recon.spect.quant import quantify_spect
    from recon.spect.runimage import (
        default_mu_map,
        is_cardiac,
        is_learned,
        nm_description,
        not_a_heart,
        spect_run_image,
    )
    from runstore.facts import run_facts
    from runstore.rundir import RunDir

    if args.frames is not None:
        raise UserError("--frames needs a PET run: a SPECT run's views share its whole duration")
    lv = parse_lv_axis(args.lv_axis) if args.lv_axis else None  # malformed: say so first
    run = RunDir.open(Path(args.run))
    facts = run_facts(run)
    scanner = load_scanner(args.scanner or facts.scanner)
    why = not_a_heart(facts, scanner, args.body_part) if args.cardiac else None
    if why is not None:
        raise UserError(f"--cardiac: {why}")
    cardiac = args.cardiac or is_cardiac(facts, scanner)
    mu_map = args.mu_map or default_mu_map(scanner.name, cardiac)
    if args.limits is not None:  # limits of another camera or correction: say so first too
        normals.choose(normals.read(args.limits), scanner.name, _correction(mu_map), None)
    if is_learned(mu_map):  # a model missing, truncated or of another camera: first too
        learnedmap.model_for(scanner.name, mu_map)
    iterations = args.iterations if args.iterations_given else SPECT_ITERATIONS
    subsets = args.subsets or SPECT_SUBSETS
    out = Path(args.out) if args.out else run.path / "images"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    image = spect_run_image(run, scanner, iterations, subsets, mu_map, args.photopeak_kev,
                            args.body_part)
    image, units = quantify_spect(image, scanner, facts.nuclide, facts.duration_s)
    files = [str(p) for p in recon.save_outputs(image, out / "image", args.display_fwhm)]
    if args.dicom:
        files.append(str(recon.write_dicom_nm(image, out / "image_nm.dcm",
                                              *nm_description(facts, image))))
    phantom = run_phantom(facts, scanner)
    if args.report and phantom is None:
        raise UserError("--report needs a run of a known phantom (its run.json names it)")
    report: dict[str, Any] = {}
    if args.report:
        report = phantom_report(image, phantom, out)
        report["attenuation_method"] = image.meta["attenuation_method"]
    if cardiac:
        reading = _read_heart(image, scanner, args.sex or facts.study.sex, lv, args.limits)
        files += [str(p) for p in reading.write(out)]
        report |= reading.report() | {"attenuation_method": image.meta["attenuation_method"]}
        if args.report and "myocardium" in phantom.regions():
            report |= _cardiac(image, reading, run, scanner, iterations, subsets, phantom,
                               args)
    if report:
        with replacing(out / "report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        files.append(str(out / "report.json"))
    window = image.meta["window_kev"]
    print(f"reconstructed SPECT run {run.path.name} (OSEM {iterations}i{subsets}s, "
          f"{window[0]:.1f}-{window[1]:.1f} keV, TEW"
          f", attenuation: {image.meta['attenuation_method']}) in "
          f"{time.monotonic() - t0:.1f} s ({units}): " + ", ".join(files))
    if "perfusion" in report:
        print(f"heart: {reading.summary()}")
    return 0


def _correction(mu_map: str) -> str:
    """The correction (:data:`recon.spect.normals.CORRECTION_OF_METHOD`) a ``--mu-map`` gives."""
    from recon.spect import normals
    from recon.spect.runimage import method_of

    return normals.CORRECTION_OF_METHOD[method_of(mu_map)]


def _read_heart(image: Any, scanner: Any, sex: str | None, lv: Any, limits: str | None) -> Any:
    """The heart's reading; one line of error where the image holds none."""
    from recon.spect.reading import correction_of, read_heart

    return read_heart(image, scanner.name, correction_of(image), sex, lv, limits)


def _cardiac(image: Any, reading: Any, run: Any, scanner: Any, iterations: int, subsets: int,
             phantom: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The phantom's cardiac figures on the reading's axis, with a second image without
    attenuation correction for the inferior wall."""
    from recon.spect.cardiac import cardiac_figures
    from recon.spect.runimage import spect_run_image

    without = (spect_run_image(run, scanner, iterations, subsets, "none", args.photopeak_kev)
               if image.meta.get("attenuation") else None)
    return cardiac_figures(image, phantom, reading, without)
