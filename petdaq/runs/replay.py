"""``petdaq replay``, ``sort`` and ``recover``: a run's pipeline again from its journal (or the
files it kept), thin over :mod:`daq.pipeline.replay`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from daq.control import runcontrol
from daq.pipeline.process import calibration
from infra.errors import UserError
from infra.pool import check_threads
from infra.progress import Progress
from petdaq.batch import files_in, for_each
from petdaq.options import add_cluster_option, add_sort_options, add_threads_option, sort_settings
from petdaq.runs import keptruns
from petdaq.runs.source import journal_run, run_calibration, run_scanner, scan_duration_s
from petdaq.summary import print_summary
from runstore.rundir import RunDir, utc_now
from runstore.rundocs import ExitStatus, StopDocument


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``replay``, ``recover``."""
    for name, text in (("replay", "re-run the pipeline from a run's journal with other settings"),
                       ("sort", "re-sort a run's singles into coincidences (no reconstruction)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run", nargs="+", help="run directories (several: one after the other, "
                       "or with --cluster on its workers)")
        p.add_argument("--out", type=Path, default=None,
                       help="new run directory (default: RUN/replay-<time>; one run only)")
        add_sort_options(p)
        add_threads_option(p)
        add_cluster_option(p)
        p.set_defaults(func=cmd_replay, recon=name == "replay")

    p = sub.add_parser("recover", help="rebuild a killed run (metadata, coincidences, image) from "
                       "its journal (an imported run: from the files it kept)")
    p.add_argument("run", help="run directory")
    p.add_argument("--no-recon", dest="recon", action="store_false")
    add_threads_option(p)
    p.set_defaults(func=cmd_recover)


def cmd_replay(args: argparse.Namespace) -> int:
    if len(args.run) > 1 and args.out is not None:
        raise UserError("--out is for one run: several runs each get their own RUN/replay-<time>")
    return for_each(args, "run", _replay_one, label=args.command, inputs=_replay_inputs,
                    outputs=lambda a: sorted(Path(a.run).glob("replay-*")))


def _replay_inputs(args: argparse.Namespace) -> list[Path]:
    """What a replay depends on: the run's files, the scanner definitions and the stored gain
    tables."""
    from hw.scanner import BUILTIN_DIR

    return [*files_in(Path(args.run)), *files_in(BUILTIN_DIR),
            *files_in(calibration.calibration_dir())]


def _replay_one(args: argparse.Namespace) -> int:
    """``petdaq replay`` (or ``sort``) of one run (``args.run``)."""
    from daq.pipeline.replay import replay_journal

    threads = check_threads(args.threads)
    imported, kept = keptruns.source_of(args.run)
    if kept is not None:
        scanner = run_scanner(imported)
        sort = sort_settings(args)
        sort.resolved(scanner)
        return keptruns.replay(kept, scanner, sort, _replay_dir(imported, args.out), args.recon)
    run, scanner = journal_run(args.run, "replay")
    out = _replay_dir(run, args.out)
    cal = run_calibration(run, scanner)
    sort = sort_settings(args)
    recorded = run.start.sort.get("photopeaks_kev") if run.start is not None else None
    if sort.photopeaks_kev is None and recorded:
        sort = replace(sort, photopeaks_kev=tuple(recorded))
    progress = Progress(f"replay {run.path.name}", unit="bytes")
    result = replay_journal(run.journal, scanner, cal, sort, out.listmode,
                            progress=lambda done, total: progress.update(done),
                            scan_duration_s=scan_duration_s(run),
                            threads=threads)
    progress.close(result["counts"]["bytes"])
    scan_settings = run.start.settings if run.start is not None else {}
    start = out.new_start(scanner.name, scanner.digest,  # the scan's facts: phantom, study, clock
                          {**scan_settings, "replay_of": str(run.path), "threads": threads,
                           "sort": result["settings"]}, cal.describe())
    if run.start is not None:  # the events' acquisition time, which frames and decay count from
        out.write_start(replace(start, time_utc=run.start.time_utc))
    out.write_stop(StopDocument("replayed from journal", ExitStatus.SUCCESS, result["counts"],
                                result["losses"], data_end_s=result["data_end_s"]))
    if args.recon:
        runcontrol.final_image(out, scanner)
    print_summary(out)
    return 0


def _replay_dir(run: RunDir, out: Path | None) -> RunDir:
    """The new run of a replay: ``--out``, else ``RUN/replay-<time>``."""
    return (RunDir.create(Path(out).parent, Path(out).name) if out else
            RunDir.create(run.path, "replay-" + utc_now().replace(":", "")[:17]))


def cmd_recover(args: argparse.Namespace) -> int:
    from daq.pipeline.replay import recover

    threads = check_threads(args.threads)
    imported, kept = keptruns.source_of(args.run)
    if kept is not None:
        return keptruns.recover(kept, run_scanner(imported), args.recon)
    run, scanner = journal_run(args.run, "recover from")
    sort = keptruns.recorded_sort(run)
    progress = Progress(f"recover {run.path.name}", unit="bytes")
    result = recover(run, scanner, run_calibration(run, scanner), sort,
                     progress=lambda done, total: progress.update(done),
                     scan_duration_s=scan_duration_s(run), threads=threads)
    progress.close(result["counts"]["bytes"])
    for problem in result["problems"]:
        print(f"warning: {problem}")
    if args.recon:
        runcontrol.final_image(run, scanner)
    print_summary(run)
    return 0
