"""``petdaq sensitivity RUN``: a SPECT camera's planar sensitivity (cps/MBq per head) in each
photopeak window of a calibration run, printed and with ``--write`` stored in the scanner's TOML
(:mod:`recon.spect.quant`)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from infra.errors import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sensitivity`` on the ``petdaq`` sub-command parser."""
    p = sub.add_parser("sensitivity", help="SPECT camera sensitivity (cps/MBq) per photopeak "
                       "window from a calibration run; --write stores it with the scanner",
                       description=__doc__.split("\n\n")[0].replace("``", "'"))
    p.add_argument("run", help="run directory of a SPECT scan of a source of known activity "
                   "(best: a point source in air, e.g. petdaq run --scanner spect-dual-head "
                   "--phantom point --nuclide Lu-177 ...)")
    p.add_argument("--activity-mbq", type=float, default=None,
                   help="the source's activity at the scan start (default: an emulated run's)")
    p.add_argument("--nuclide", default=None, help="the source's nuclide (default: the run's)")
    p.add_argument("--scanner", default=None,
                   help="scanner name or .toml to measure (and --write) (default: the run's)")
    p.add_argument("--write", action="store_true",
                   help="store the sensitivities in the scanner's TOML "
                        "([quantification.spect_cps_per_mbq]), where petdaq recon reads them")
    p.set_defaults(func=cmd_sensitivity)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from daq.control import checks
    from hw.scanner import load_scanner
    from recon.spect.quant import measure, store
    from runstore.facts import run_facts
    from runstore.projections import PROJECTIONS_FILE, has_projections, read_projections
    from runstore.rundir import RunDir

    run = RunDir.open(Path(args.run))
    facts = run_facts(run)
    if not has_projections(run.path):
        raise UserError(f"{run.path} is not a SPECT run: it has no {PROJECTIONS_FILE}")
    activity = args.activity_mbq if args.activity_mbq is not None else facts.activity_mbq
    if activity is None:
        raise UserError(f"{run.path} does not record its source's activity: give --activity-mbq")
    checks.positive(activity, "--activity-mbq", "MBq")
    nuclide = args.nuclide or facts.nuclide
    if not nuclide:
        raise UserError(f"{run.path} does not record its nuclide: give --nuclide")
    if not facts.duration_s:
        raise UserError(f"{run.path} does not record its duration")
    scanner = load_scanner(args.scanner or facts.scanner)
    projections, edges = read_projections(run.path)
    found = measure(projections, edges, scanner, nuclide, activity, facts.duration_s)
    for s in found:
        print(f"{scanner.name} {s.line.key} ({s.window_kev[0]:.1f}-{s.window_kev[1]:.1f} keV): "
              f"{s.cps_per_mbq:.4f} cps/MBq per head ({s.peak_counts} counts, TEW scatter "
              f"{s.scatter_counts:.0f}, {s.activity_mbq:.3f} MBq mean over {s.duration_s:g} s, "
              f"{s.heads} heads; model {s.model_cps_per_mbq:.4f}: factor {s.factor:.4f})")
    if facts.phantom and facts.phantom != "point":
        print(f"note: a {facts.phantom} source attenuates and scatters: a point source in air "
              f"measures the sensitivity best")
    if args.write:
        command = "petdaq sensitivity " + " ".join(shlex.quote(a) for a in _argv(args))
        source = (f"{facts.phantom or 'source'} of {nuclide} {activity:g} MBq, "
                  f"{facts.duration_s:g} s")
        store(Path(scanner.source), found, command, source)
        print(f"stored in {scanner.source} [quantification.spect_cps_per_mbq]")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """The command's arguments as given, for the stored comment."""
    out = [Path(args.run).name]
    if args.activity_mbq is not None:
        out += ["--activity-mbq", f"{args.activity_mbq:g}"]
    if args.nuclide:
        out += ["--nuclide", args.nuclide]
    if args.scanner:
        out += ["--scanner", Path(args.scanner).name]
    return [*out, "--write"]
