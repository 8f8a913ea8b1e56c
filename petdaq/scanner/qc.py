"""``petdaq qc``: the daily check of every crystal, module and board against the scanner's
baseline, from a blank scan of the crystals' own Lu-176 (:mod:`daq.qc`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from infra.errors import UserError

#: The blank's default length (s): each crystal's ~6 k singles hold its rate ratio to 1.8 %, so
#: that a crystal 15 % off (the tolerance) stands 8 standard deviations clear of the noise.
DEFAULT_SECONDS = 60.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``qc``."""
    p = sub.add_parser("qc", help="daily quality control: a blank scan (the crystals' own "
                       "Lu-176, no source) checked crystal by crystal, module by module and "
                       "board by board against the scanner's baseline")
    p.add_argument("--run", default=None, metavar="RUN",
                   help="check an existing blank run (from the boards: petdaq acquire ... "
                        "--duration 60); default: acquire a blank from the emulator")
    p.add_argument("--set-baseline", action="store_true",
                   help="store this blank's figures as the scanner's baseline (after "
                        "calibration and normalization) instead of checking them")
    p.add_argument("--history", action="store_true",
                   help="print every QC of the scanner (the result, its modules' and boards' "
                        "figures), oldest first, and draw their trend (a PNG)")
    p.add_argument("--scanner", default="bedside-brain", help="built-in name or .toml path")
    p.add_argument("--duration", type=float, default=DEFAULT_SECONDS,
                   help=f"seconds of blank to acquire (default {DEFAULT_SECONDS:g})")
    p.add_argument("--seed", type=int, default=None,
                   help="the emulated blank's random seed (default: from the clock, so that no "
                        "two QCs, nor a QC and its baseline, emulate the same blank)")
    p.add_argument("--faults", default=None, metavar="FILE.toml",
                   help="faults to inject into the emulated unit (docs/qc.md)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="where the blank run goes")
    p.add_argument("--name", default=None, help="the blank run's name (default qc-<UTC time>)")
    p.add_argument("--tolerances", default=None, metavar="FILE.toml",
                   help="tolerances (default: daq/qc/tolerances.toml)")
    p.set_defaults(func=cmd_qc)


def cmd_qc(args: argparse.Namespace) -> int:
    from daq.qc import checks, store
    from hw.scanner import load_scanner

    t0 = time.monotonic()
    if args.history:
        return _print_history(load_scanner(args.scanner).name,
                              checks.load_tolerances(args.tolerances))
    tolerances = checks.load_tolerances(args.tolerances)
    if args.run is None:
        scanner = load_scanner(args.scanner)
        if not args.set_baseline:
            store.baseline(scanner)          # none: say so before acquiring
        run = _acquire_blank(args)
    else:
        run = _open_run(args.run)
    t_acquired = time.monotonic()
    # what the run and the baseline say, before the run is read
    _check_blank(run)
    if args.set_baseline:
        _check_healthy(run)
    else:
        from petdaq.runs.source import run_scanner

        base, base_path = store.baseline(run_scanner(run))
    scanner, now = _figures(run)
    if args.set_baseline:
        print(f"stored the QC baseline of {scanner.name}: {store.save_baseline(now)} "
              f"({now.seconds:.0f} s blank, {now.intrinsic_cps:.0f} intrinsic coincidences/s)")
        return 0
    _check_rate(run, now, base)
    return _report(run, scanner, now, base, base_path, tolerances,
                   (t_acquired - t0, time.monotonic() - t_acquired))


def _open_run(path: str):
    from runstore.rundir import RunDir

    run = RunDir.open(Path(path))
    if not run.journal.is_file():
        raise UserError(f"{run.path} has no journal of singles to check")
    return run


def _acquire_blank(args: argparse.Namespace):
    """``petdaq run --phantom blank --fast --no-recon`` of ``--duration`` s (its own progress on
    stderr); the run."""
    from runstore.rundir import RunDir, utc_now

    if not (args.duration > 0 and np.isfinite(args.duration)):
        raise UserError(f"--duration must be a positive number of seconds, got {args.duration}")
    name = args.name or "qc-" + utc_now().replace(":", "").replace("-", "")[:15]
    seed = args.seed if args.seed is not None else time.time_ns() % (1 << 31)
    cmd = [sys.executable, "-m", "petdaq", "run", "--scanner", args.scanner, "--phantom",
           "blank", "--duration", f"{args.duration:g}", "--seed", str(seed), "--fast",
           "--no-recon", "--out", str(args.out), "--name", name,
           *(["--faults", args.faults] if args.faults else [])]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(nothing said)"])[-1]
        raise UserError(f"the blank acquisition failed: {last.removeprefix('petdaq: error: ')}")
    return RunDir.open(Path(args.out) / name)


def _figures(run):
    """(scanner, figures) of a blank run: its journal tallied a batch at a time, and sorted in
    the Lu-176 window through the DAQ's chain (memory holds the crystals' spectra and the
    coincidences, not the singles)."""
    from daq.pipeline.replay import journal_singles
    from daq.qc.figures import SinglesTally
    from infra.pool import available_cores
    from petdaq.runs.source import run_calibration, run_scanner
    from petdaq.scanner.calibrate import blank_coincidences
    from runstore.rundir import utc_now

    scanner = run_scanner(run)
    if scanner.kind != "pet":
        raise UserError(f"{scanner.name} is {scanner.kind.upper()}: the Lu-176 QC is for PET "
                        "rings")
    tally = SinglesTally(scanner)
    for singles in journal_singles(run.journal, scanner, run_calibration(run, scanner)):
        tally.add(singles)
    if tally.singles < 2:
        raise UserError(f"{run.path} holds no singles to check")
    coinc = blank_coincidences(run, scanner, available_cores())
    return scanner, tally.figures(coinc, tally.seconds, str(run.path), utc_now())


def _emulated(run) -> dict:
    emulated = run.start.settings.get("emulator") if run.start else None
    return emulated if isinstance(emulated, dict) else {}


def _check_blank(run) -> None:
    """A run of a phantom is not a blank."""
    phantom = _emulated(run).get("phantom")
    if phantom and phantom != "blank":
        raise UserError(f"{run.path} is a scan of the {phantom} phantom, not a blank: the QC "
                        "needs nothing in the scanner (petdaq qc acquires one)")


def _check_healthy(run) -> None:
    """A baseline is never taken from a unit with injected faults."""
    if _emulated(run).get("faults"):
        raise UserError(f"{run.path} was emulated with injected faults: a baseline needs the "
                        "healthy unit (leave out --faults)")


def _check_rate(run, now, base) -> None:
    """A run with far more singles than the baseline's blank is not a blank."""
    ratio = float(now.crystal_cps.sum() / max(base.crystal_cps.sum(), 1e-9))
    if ratio > 1.5:
        raise UserError(f"{run.path} is not a blank: {ratio:.1f} times the baseline's singles "
                        "rate (a source in the scanner?)")


def _report(run, scanner, now, base, base_path, tolerances, times_s) -> int:
    from daq.qc import checks, report, store

    verdict = checks.judge(now, base, scanner, tolerances)
    facts = {"scanner": scanner.name, "run": str(run.path), "blank_s": round(now.seconds, 2),
             "baseline": str(base_path), "baseline_utc": base.created_utc,
             "acquisition_s": round(times_s[0], 1), "analysis_s": round(times_s[1], 1)}
    path = report.write_json(run.path, verdict, facts)
    png = report.crystal_map(now, base, scanner, run.path / "qc_crystals.png")
    store.append_history(scanner.name, report.history_entry(now, base, verdict, str(run.path),
                                                            tolerances))
    known = f"; known since the baseline: {len(verdict.known)} crystal(s)" if verdict.known else ""
    print(f"QC {verdict.result}: {scanner.name}, {now.seconds:.0f} s blank, "
          f"{len(verdict.flagged)} flagged{known}")
    print("\n".join(report.table(verdict)))
    print(f"{path}, {png}; {sum(times_s):.1f} s (acquisition {times_s[0]:.1f} s, analysis "
          f"{times_s[1]:.1f} s)")
    return 1 if verdict.result == checks.FAIL else 0


def _print_history(scanner_name: str, tolerances: dict) -> int:
    from daq.qc import store, trend

    entries = store.read_history(scanner_name)
    if not entries:
        print(f"no QC of {scanner_name} yet ({store.history_path(scanner_name)})")
        return 0
    print(f"{'UTC':<20} {'result':<6} {'module rate':<15} {'gain':<15} {'resolution':<15} "
          f"{'board (ps)':>10}  flagged")
    for e in entries:
        boards = [b for b in e.get("board_offset_ps") or [] if b is not None] or [0.0]
        print(f"{e['created_utc'][:19]:<20} {e['result']:<6} {_span(e.get('module_rate'))} "
              f"{_span(e.get('module_gain'))} {_span(e.get('module_resolution'))} "
              f"{max(boards, key=abs):+10.1f}  {', '.join(e['flagged'][:3])}"
              + (f" (+{len(e['flagged']) - 3})" if len(e["flagged"]) > 3 else ""))
    png = trend.write(entries, tolerances, store.qc_dir() / f"{scanner_name}-history.png")
    print(f"{store.history_path(scanner_name)}; the trend: {png} (a panel per figure: module "
          "rate, gain, resolution, worst board; dotted: WARN and FAIL bands; red: a failed QC)")
    return 0


def _span(values: list[float | None] | None) -> str:
    """``min..max`` of a QC's module figures (15 characters; those it could not have left out)."""
    values = [v for v in values or [] if v is not None]
    return f"{min(values):.4f}..{max(values):.4f}" if values else f"{'-':<15}"
