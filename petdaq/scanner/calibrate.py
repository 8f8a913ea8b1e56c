"""``petdaq calibrate RUN``: per-crystal gains (photopeak, Lu-176) and channel time offsets from a
calibration run, stored with the scanner; thin over :mod:`daq.pipeline.process.calibration`."""

from __future__ import annotations

import argparse

import numpy as np

from daq.pipeline.process import calibration
from hw.scanner import Scanner
from infra.errors import UserError
from petdaq.runs import keptruns
from petdaq.runs.source import run_calibration, run_scanner
from runstore.rundir import RunDir, utc_now


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate``."""
    p = sub.add_parser("calibrate", help="derive a per-crystal table (gains, time offsets, "
                       "normalization) from a calibration run")
    p.add_argument("run", help="run directory of the calibration acquisition")
    p.add_argument("--method", choices=["photopeak", "lu176", "timing", "normalization"],
                   default="photopeak",
                   help="photopeak: 511 keV source in the FOV; lu176: no source, the crystals' own "
                        "Lu-176 activity (relative gains); timing: each channel's time offset "
                        "from the prompts of a uniform cylinder centred in the field of view "
                        "(any run with coincidences, e.g. an imported one); normalization: each "
                        "crystal's efficiency from a blank run (--phantom blank: the crystals' "
                        "own Lu-176 coincidences; 120 s or more), or from a uniform phantom's "
                        "run (--phantom cylinder, centred: a scanner without Lu-176)")
    p.add_argument("--peak-kev", type=float, default=511.0,
                   help="with photopeak on other digitizers' records: the source's photopeak, "
                        "keV (511; 662 for Cs-137)")
    p.add_argument("--phantom", default=None, metavar="NAME",
                   help="with normalization: the phantom of a run that is not a blank (e.g. "
                        "cylinder, centred in the field of view); an emulated run names its own")
    p.add_argument("--no-save", action="store_true", help="report only, store nothing")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from daq.pipeline.replay import decode_journal

    run, kept = keptruns.source_of(args.run)
    scanner = run_scanner(run)
    if args.method == "timing":
        return _calibrate_timing(run, scanner, args.no_save)
    if args.method == "normalization":
        return _calibrate_normalization(run, scanner, args.no_save, args.phantom)
    if kept is not None:
        return keptruns.calibrate(kept, scanner, args.method, args.peak_kev, args.no_save)
    raw = decode_journal(run.journal, scanner)
    cal, report = calibration.derive(raw, scanner, args.method, created_utc=utc_now(),
                                     from_run=str(run.path))
    print(f"calibrated {report['calibrated']} of {report['crystals']} crystals "
          f"({args.method}, median {report['median_counts']:.0f} counts/crystal), "
          f"gain spread {100 * report['gain_rms']:.1f} % RMS")
    if report["no_counts"]:
        print(f"warning: {report['no_counts']} crystals gave no counts (dead channels: daily QC "
              "lists them): gain left nominal")
    if report["too_few_counts"] > report["no_counts"]:
        print(f"warning: {report['too_few_counts'] - report['no_counts']} crystals had too few "
              "counts: gain left nominal")
    if not args.no_save:
        print(f"stored {cal.save()}")
    return 0


def _calibrate_normalization(run: RunDir, scanner: Scanner, no_save: bool,
                             phantom: str | None) -> int:
    """``petdaq calibrate RUN --method normalization``: crystal efficiencies from a blank run,
    or from a uniform phantom's run."""
    from infra.pool import available_cores
    from recon.calibration import normalization

    if scanner.kind != "pet":
        raise UserError(f"{scanner.name} is {scanner.kind.upper()}: normalization is for PET "
                        "rings")
    threads = available_cores()
    phantom = _normalization_phantom(run, scanner, phantom)
    if phantom == "blank":
        if not run.journal.is_file():
            raise UserError(f"{run.path} has no journal of singles to normalize from")
        prompts, delayeds = normalization.split_blank(blank_coincidences(run, scanner, threads))
        eff, fit = normalization.estimate_sorted(prompts, delayeds, scanner, threads=threads)
        lo, hi = normalization.LU176_WINDOW_KEV
        source = f"in {lo:g}-{hi:g} keV"
    else:
        eff, fit = _phantom_normalization(run, scanner, phantom, threads)
        source = f"of the {phantom}"
    _print_normalization(eff, fit, scanner, source)
    if not no_save:
        table = normalization.table(eff, scanner, phantom, utc_now(), str(run.path))
        print(f"stored {table.save()} (the reconstruction of this scanner's runs uses it from "
              "now on)")
    return 0


def _normalization_phantom(run: RunDir, scanner: Scanner, given: str | None) -> str:
    """What the normalization run holds: ``--phantom``, else the emulated run's own phantom,
    else a blank (a real scan with nothing in the scanner)."""
    from runstore.facts import run_facts

    name = given or run_facts(run).phantom or "blank"
    if name != "blank":
        from emulator import phantoms

        if name not in phantoms.names():
            raise UserError(f"unknown phantom {name!r} (petdaq emulate --list)")
    return name


def _phantom_normalization(run: RunDir, scanner: Scanner, phantom: str, threads: int):
    """(efficiency, fit) from a uniform phantom run's own coincidences."""
    from recon.calibration import normalization, phantomnorm
    from runstore.listmode import read_listmode

    if not run.listmode.is_file():
        raise UserError(f"{run.path} has no coincidences to normalize from (sort it first: "
                        "petdaq sort)")
    prompts, delayeds = normalization.split_blank(read_listmode(run.listmode)[0])
    return phantomnorm.estimate_sorted(prompts, delayeds, scanner, phantom, threads)


def _print_normalization(eff: np.ndarray, fit, scanner: Scanner, source: str) -> None:
    live = eff > 0
    print(f"normalization of {int(live.sum())} of {scanner.n_crystals} crystals from "
          f"{int(fit.prompts.sum() // 2)} prompts and {int(fit.randoms.sum() // 2)} delayeds "
          f"{source}: efficiency spread {100 * eff[live].std():.1f} % RMS, "
          f"{100 * fit.expected_rms:.1f} % from the counts alone; "
          f"{int((~live).sum())} dead crystal(s)"
          + (f" ({', '.join(str(c) for c in np.flatnonzero(~live)[:10])})" if (~live).any()
             else "")
          + (f"; noisy, taken as their kind: {', '.join(map(str, np.flatnonzero(fit.noisy)))}"
             if fit.noisy.any() else ""))


def blank_coincidences(run: RunDir, scanner: Scanner, threads: int) -> np.ndarray:
    """A blank run's coincidences in the Lu-176 window, its journal streamed through the DAQ's
    chain (:func:`daq.pipeline.replay.sort_journal`), with a progress line."""
    from daq.pipeline.process.processor import SortSettings
    from daq.pipeline.replay import sort_journal
    from infra.progress import Progress
    from recon.calibration.normalization import blank_sort_settings

    size = run.journal.stat().st_size
    progress = Progress(f"blank {run.path.name}: sorted", size, unit="bytes")
    coinc = sort_journal(run.journal, scanner, run_calibration(run, scanner),
                         SortSettings(**blank_sort_settings(scanner)), threads,
                         lambda done, _total: progress.update(done))
    prompts = int(np.count_nonzero(coinc["delayed"] == 0))
    progress.close(size, f"{prompts} prompts, {coinc.size - prompts} delayeds")
    return coinc


def _calibrate_timing(run: RunDir, scanner: Scanner, no_save: bool) -> int:
    """``petdaq calibrate RUN --method timing``: channel time offsets from the run's prompts."""
    from daq.pipeline.digitizers import timing
    from runstore.listmode import read_listmode

    if not run.listmode.is_file():
        raise UserError(f"{run.path} has no coincidences to measure time offsets from")
    table, report = timing.derive(read_listmode(run.listmode)[0], scanner,
                                  created_utc=utc_now(), from_run=str(run.path))
    fitted = table.offsets_ps[table.offsets_ps != 0]
    print(f"time offsets of {report['crystals']} crystals from {report['prompts']} prompts: "
          f"{np.sqrt(np.mean(fitted.astype(np.float64) ** 2)) if fitted.size else 0:.0f} ps RMS, "
          f"residual {report['residual_rms_ps']:.0f} ps RMS")
    if not no_save:
        print(f"stored {table.save()} (taken off every single of this scanner's imported and "
              "ABCD runs from now on)")
    return 0
