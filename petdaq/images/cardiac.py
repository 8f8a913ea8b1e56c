"""``petdaq cardiac normals``: a site's normal limits of the polar map, from its own camera's scans
of patients with a low likelihood of coronary disease.

Each run is reconstructed as ``petdaq recon`` does (OSEM, TEW scatter, the ``--mu-map`` chosen:
the limits are of that correction), its left ventricle found in the image and its polar map
sampled; the runs of each sex (their study's ``--sex``) make that sex's limits, at least 3 each
(clinical databases hold 30 or more; a run named twice counts twice, reconstructed once).
Every run's axis is printed: look at them, as a technologist checks the software's axes, and
leave out a run whose axis is wrong. The file goes to ``petdaq recon RUN --cardiac --limits
FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.errors import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cardiac`` on the ``petdaq`` sub-command parser."""
    p = sub.add_parser("cardiac", help="cardiac SPECT: build a site's normal limits",
                       description=__doc__.split("\n\n")[0])
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    n = what.add_parser("normals", help="normal limits of the polar map from normal patients' runs",
                        description=__doc__.split("\n\n")[1])
    n.add_argument("runs", nargs="+", help="SPECT run directories of normal patients (each with "
                   "its study's sex)")
    n.add_argument("--mu-map", default=None, choices=("learned", "estimate", "none"),
                   help="the correction the limits are of: learned (the camera's shipped "
                        "model's map), estimate (the calculated map) or none; default: the "
                        "product's for a cardiac scan on the camera (learned where it ships a "
                        "model and limits of its maps, else estimate)")
    n.add_argument("--out", required=True, help="the database file to write (.json)")
    n.set_defaults(func=cmd_normals)


def cmd_normals(args: argparse.Namespace) -> int:
    from hw.scanner import load_scanner
    from recon.spect import normals
    from recon.spect.lvaxis import find_lv_axis
    from recon.spect.polarmap import PolarMap
    from recon.spect.reading import correction_of, map_of
    from recon.spect.runimage import default_mu_map, spect_run_image
    from runstore.facts import run_facts
    from runstore.rundir import RunDir

    maps: dict[str, list] = {sex: [] for sex in normals.SEXES}
    camera = correction = None
    done: dict[Path, PolarMap] = {}
    for k, path in enumerate(args.runs, 1):
        run = RunDir.open(Path(path))
        facts = run_facts(run)
        sex = facts.study.sex
        if sex not in normals.SEXES:
            raise UserError(f"run {run.path}: its study has no sex (F or M): acquire with --sex")
        if camera is not None and facts.scanner != camera:
            raise UserError(f"run {run.path} is of camera {facts.scanner}, the others of {camera}: "
                            "limits are of one camera")
        camera = facts.scanner
        if run.path.resolve() in done:      # the same scan gives the same map: not again
            maps[sex].append(done[run.path.resolve()])
            print(f"[{k}/{len(args.runs)}] {run.path.name} ({sex}): named before, its polar map "
                  "counted again", flush=True)
            continue
        image = spect_run_image(run, load_scanner(camera),
                                mu_map=args.mu_map or default_mu_map(camera, cardiac=True))
        correction = correction_of(image)
        lv = find_lv_axis(image)
        done[run.path.resolve()] = map_of(image, lv)
        maps[sex].append(done[run.path.resolve()])
        print(f"[{k}/{len(args.runs)}] {run.path.name} ({sex}): apex "
              f"{', '.join(f'{v:.0f}' for v in lv.apex_mm)} mm, base "
              f"{', '.join(f'{v:.0f}' for v in lv.base_mm)} mm", flush=True)
    built = [normals.build(m, camera, correction, sex) for sex, m in maps.items() if m]
    out = normals.write(args.out, built)
    print(f"wrote {out}: " + "; ".join(x.label for x in built))
    return 0
