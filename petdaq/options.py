"""Options that several sub-commands share, each turned into its typed value at the door."""

from __future__ import annotations

import argparse
from pathlib import Path

from daq.control import checks
from daq.dicomnet import config as dicomconfig
from daq.dicomnet.worklist import by_accession
from daq.pipeline.digitizers.importer import DEFAULT_REORDER_MS, ImportSettings
from daq.pipeline.process.processor import SortSettings
from infra.cluster import ClusterSpec, parse_cluster
from infra.errors import UserError
from infra.study import Study

CLUSTER_HELP = ("run on Dask: 'local' (one worker process per core), 'local:N' (N workers), or "
                "tcp://HOST:PORT / tls://HOST:PORT (an existing scheduler; files on shared storage)")


def add_cluster_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Register ``--cluster SPEC`` (default: no cluster, one process as always)."""
    parser.add_argument("--cluster", type=_cluster_spec, default=None, metavar="SPEC",
                        help=CLUSTER_HELP)


def _cluster_spec(text: str) -> ClusterSpec:
    try:
        return parse_cluster(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_study_options(p: argparse.ArgumentParser) -> None:
    """The study's options (:class:`infra.study.Study`): SUV, DICOM and BIDS need them."""
    g = p.add_argument_group("study (SUV, DICOM and BIDS need it; nothing is guessed)")
    g.add_argument("--worklist", default=None, metavar="ACCESSION",
                   help="the worklist's procedure of this accession number: its patient and "
                        "study (petdaq worklist lists them)")
    g.add_argument("--patient-id", default=None, help="patient id or anonymised id")
    g.add_argument("--weight-kg", type=float, default=None, help="patient weight (kg)")
    g.add_argument("--height-m", type=float, default=None, help="patient height (m)")
    g.add_argument("--injected-mbq", type=float, default=None,
                   help="injected activity (MBq) at the injection time (an emulated kinetic "
                        "phantom: its --activity-mbq)")
    g.add_argument("--injection-time", default=None, metavar="ISO8601",
                   help="injection time, e.g. 2026-11-24T09:30:00Z (an emulated kinetic "
                        "phantom: the scan's start)")
    g.add_argument("--tracer", default=None, help="radiopharmaceutical, e.g. FDG")
    g.add_argument("--sex", choices=("F", "M", "O"), default=None,
                   help="the patient's sex (DICOM Patient's Sex): a heart's polar map is scored "
                        "against its normal limits")
    g.add_argument("--body-part", default=None, metavar="PART",
                   help="what is scanned (DICOM Body Part Examined, e.g. HEAD: a head's "
                        "calculated mu-map gets a skull; an emulated head phantom: HEAD)")


def study_of(args: argparse.Namespace) -> Study:
    """The study the command line gives: the worklist's procedure (``--worklist``) with the
    injection and what else is given."""
    given = Study(patient_id=args.patient_id, weight_kg=args.weight_kg, height_m=args.height_m,
                  injected_mbq=args.injected_mbq, injection_time_utc=args.injection_time,
                  radiopharmaceutical=args.tracer, body_part=args.body_part,
                  sex=getattr(args, "sex", None))
    if getattr(args, "worklist", None) is None:
        return given
    if args.patient_id is not None:
        raise UserError("--worklist gives the patient: leave out --patient-id")
    scheduled = by_accession(dicomconfig.load(), args.worklist)
    mine = {k: v for k, v in given.to_json().items() if v is not None}
    return Study.from_json({**scheduled.study().to_json(), **mine})


def add_live_options(p: argparse.ArgumentParser) -> None:
    """Options of the live products: image and monitor stream."""
    g = p.add_argument_group("live image and monitor")
    g.add_argument("--no-recon", dest="recon", action="store_false",
                   help="no live or final image")
    g.add_argument("--recon-interval", type=float, default=2.0, help="seconds between updates")
    g.add_argument("--no-tof", dest="tof", action="store_false")
    g.add_argument("--monitor-port", type=int, default=None,
                   help="publish the monitor stream on PORT (e.g. 5556) for a console")
    g.add_argument("--monitor-host", default="127.0.0.1",
                   help="interface the monitor binds (default 127.0.0.1: consoles on this "
                        "machine only; * for every interface, with --keys)")
    add_keys_option(g)
    g.add_argument("--frames", default=None, metavar="SCHEDULE",
                   help="a dynamic scan: reconstruct these frames as they complete and publish "
                        "the regions' curves (e.g. 6x30s,5x1min,5x2min,5x5min; a kinetic "
                        "phantom's model clock); curves in RUN/kinetics/live_tacs.csv")
    g.add_argument("--sphere", dest="spheres", action="append", default=[],
                   metavar="NAME:X,Y,Z,R", help="with --frames: a spherical region (scanner mm) "
                   "for the live curves (default: the emulated phantom's regions); repeatable")


def add_digitizer_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How another digitizer's records are read: map, clock, energy unit, reordering bound."""
    p.add_argument("--map", type=Path, default=None, metavar="MAP.csv",
                   help="board,channel,crystal (default: the scanner's own wiring)")
    p.add_argument("--ns-per-sample", type=float, default=None,
                   help="the digitizer's sample period, ns (ABCD: 2 at 500 MS/s)")
    p.add_argument("--kev-per-unit", type=float, default=None,
                   help="keV per raw energy unit (default: the scanner's table for the format "
                        "from petdaq calibrate RUN, else 1: energies taken as keV)")
    p.add_argument("--reorder-ms", type=float, default=DEFAULT_REORDER_MS,
                   help="the most records come out of time order, ms")


def digitizer_settings(args: argparse.Namespace, fmt: str) -> ImportSettings:
    """The digitizer options, checked."""
    if args.kev_per_unit is not None and not args.kev_per_unit > 0:
        raise UserError(f"--kev-per-unit must be > 0, got {args.kev_per_unit}")
    if not args.reorder_ms >= 0:
        raise UserError(f"--reorder-ms must be >= 0, got {args.reorder_ms}")
    return ImportSettings(fmt, args.ns_per_sample, args.kev_per_unit, args.reorder_ms)


def add_keys_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--keys DIR``: the CURVE key folder of links bound beyond loopback."""
    p.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="CURVE key folder (petdaq keys DIR): only its authorised clients may "
                        "connect; needed to bind beyond 127.0.0.1")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: the processing threads (default: every core)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads that decode, merge, calibrate and sort (default: every core; "
                        "the output is the same for any number)")


def add_out_options(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder of run directories")
    if with_name:
        p.add_argument("--name", default=None, help="run directory name (default: run-<time>)")


def add_sort_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("coincidence sorting (defaults from the scanner)")
    g.add_argument("--window-ps", type=int, default=None, help="coincidence window, ps")
    g.add_argument("--delay-ps", type=int, default=None, help="delayed window offset, ps (0: none)")
    g.add_argument("--energy-window", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="energy window, keV (LO may be negative); imported coincidence "
                        "files keep their writer's pairs unless it is given")
    g.add_argument("--policy", default="takeAllGoods", help="multiple-coincidence policy")
    g.add_argument("--mode", default="single-window", metavar="MODE",
                   help="window opening: single-window (a single opens one only if it fell in "
                        "none) or multi-window (every single opens its own: GATE 10's default)")
    g.add_argument("--min-sector-difference", type=int, default=None)
    g.add_argument("--photopeaks-kev", type=float, nargs="+", default=None, metavar="KEV",
                   help="SPECT: photopeaks to window, each with its TEW scatter windows (default: "
                        "the emulated nuclide's lines, else the scanner's window; Lu-177: 208 113)")


def sort_settings(args: argparse.Namespace) -> SortSettings:
    """Sorting settings from the command line."""
    return SortSettings(window_ps=args.window_ps, delay_ps=args.delay_ps,
                        energy_window_kev=tuple(args.energy_window) if args.energy_window else None,
                        policy=args.policy, min_sector_difference=args.min_sector_difference,
                        mode=args.mode,
                        photopeaks_kev=_photopeaks(args.photopeaks_kev))


def _photopeaks(values: list[float] | None) -> tuple[float, ...] | None:
    """``--photopeaks-kev``, checked."""
    if values is None:
        return None
    for v in values:
        checks.positive(v, "--photopeaks-kev", "keV")
    return tuple(values)
