"""The DAQ's sub-commands: scanners, acquire, run, serve, calibrate, replay, sort, recover, info,
export. Thin over :mod:`daq.control.runcontrol`, :mod:`daq.pipeline.replay` and
:mod:`daq.pipeline.process.calibration`.

``petdaq run`` starts the emulator as a child process and acquires from it; ``petdaq acquire``
acquires from real boards; both show a progress line, reconstruct the final image from the
list-mode file within seconds of the stop, and print a summary of the run."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np

from daq.control import checks, runcontrol
from daq.control.abcdmonitor import AbcdMonitor
from daq.control.emulated import EmulatorSettings
from daq.control.liveframes import check_live_frames
from daq.control.monitor import MonitorLoop, MonitorPublisher
from daq.messages import FIRMWARES
from daq.pipeline.digitizers import abcdlive
from daq.pipeline.digitizers.importer import (
    DEFAULT_REORDER_MS,
    ImportSettings,
    keep_sources,
    map_file_of,
)
from daq.pipeline.links.journal import check_journal
from daq.pipeline.links.sources import open_source
from daq.pipeline.process import calibration
from daq.pipeline.process.processor import SortSettings
from hw import channelmap
from hw.formats.abcd import ps_per_sample
from hw.scanner import Scanner, builtin_scanners, load_scanner
from infra import keys
from infra.errors import UserError
from infra.pool import check_threads
from infra.progress import Progress
from infra.study import Study
from petdaq import keptruns
from petdaq.batch import files_in, for_each
from petdaq.options import add_cluster_option
from petdaq.summary import finish_records_run, print_summary
from runstore.rundir import RunDir, utc_now
from runstore.rundocs import ExitStatus, StopDocument


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the DAQ's sub-commands."""
    p = sub.add_parser("scanners", help="list the built-in scanners, or show one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="scanner name or .toml path (with show)")
    p.add_argument("--crystals", action="store_true",
                   help="with show: every crystal's index, board, channel, module, ring and "
                        "centre (mm), as CSV: what a channel map (board,channel,crystal) names")
    p.set_defaults(func=cmd_scanners)

    p = sub.add_parser("run", help="emulate + acquire + sort + reconstruct in one (the demo)")
    add_emulation_options(p)
    add_study_options(p)
    add_out_options(p)
    add_sort_options(p)
    add_live_options(p)
    add_threads_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("acquire", help="acquire from digitizer boards into a run directory")
    p.add_argument("--from", dest="sources", action="append", required=True, metavar="SOURCE",
                   help="tcp://host:port, ipc://..., /dev/ttyUSB0, pty:/dev/pts/N, socket://..., "
                        "or a .frames file; once per board link")
    p.add_argument("--scanner", default="bedside-brain")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until the "
                   "boards send their run-stop markers or Ctrl-C)")
    p.add_argument("--baud", type=int, default=3_000_000, help="serial baud rate")
    p.add_argument("--key-name", default="daq", metavar="NAME",
                   help="with --keys: the DAQ's identity towards boards that need keys "
                        "(clients/NAME.key_secret; default daq)")
    add_study_options(p)
    add_out_options(p)
    add_sort_options(p)
    add_live_options(p)
    add_threads_option(p)
    add_digitizer_options(p.add_argument_group("other digitizers (--from abcd://HOST:PORT: CAEN "
                                               "boards through ABCD)"))
    p.set_defaults(func=cmd_acquire)

    p = sub.add_parser("serve", help="run the DAQ service: control and monitor sockets, runs "
                       "started from the console")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (* for all, with --keys)")
    p.add_argument("--monitor-port", type=int, default=5556)
    p.add_argument("--control-port", type=int, default=5557)
    add_keys_option(p)
    add_out_options(p, with_name=False)
    add_threads_option(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="make a CURVE key folder (or add clients to one) for links "
                       "beyond this machine")
    p.add_argument("folder", type=Path, help="key folder (made if missing)")
    p.add_argument("--client", action="append", default=None, metavar="NAME",
                   help=f"a client identity to make and authorise (default: "
                        f"{' and '.join(keys.DEFAULT_CLIENTS)}); repeatable")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("calibrate", help="derive the per-crystal gain table from a calibration run")
    p.add_argument("run", help="run directory of the calibration acquisition")
    p.add_argument("--method", choices=["photopeak", "lu176", "timing"], default="photopeak",
                   help="photopeak: 511 keV source in the FOV; lu176: no source, the crystals' own "
                        "Lu-176 activity (relative gains); timing: each channel's time offset "
                        "from the prompts of a uniform cylinder centred in the field of view "
                        "(any run with coincidences, e.g. an imported one)")
    p.add_argument("--peak-kev", type=float, default=511.0,
                   help="with photopeak on other digitizers' records: the source's photopeak, "
                        "keV (511; 662 for Cs-137)")
    p.add_argument("--no-save", action="store_true", help="report only, store nothing")
    p.set_defaults(func=cmd_calibrate)

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

    p = sub.add_parser("info", help="summarise a run in a few lines")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export a run's list-mode data")
    p.add_argument("run", help="run directory")
    p.add_argument("--petsird", type=Path, required=True, metavar="FILE",
                   help="write PETSIRD list-mode (binary) to FILE")
    p.set_defaults(func=cmd_export)


def add_emulation_options(p: argparse.ArgumentParser) -> None:
    """Options that choose what ``petdaq run`` emulates."""
    d = EmulatorSettings()
    g = p.add_argument_group("emulated scan")
    g.add_argument("--scanner", default=d.scanner)
    g.add_argument("--phantom", default=d.phantom)
    g.add_argument("--nuclide", default=d.nuclide)
    g.add_argument("--activity-mbq", type=float, default=d.activity_mbq)
    g.add_argument("--duration", type=float, default=d.duration_s, help="seconds")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--kinetic-time-scale", type=float, default=d.kinetic_time_scale,
                   metavar="S", help="a kinetic phantom's model runs S times faster than the "
                   "acquisition (60: an hour of kinetics in a minute; default 1)")
    g.add_argument("--fast", action="store_true",
                   help="emulate as fast as possible instead of in real time")
    g.add_argument("--firmware", choices=list(FIRMWARES), default=d.firmware,
                   help="the boards' packer: hw.wire's encoder (numba), the firmware's C packer, "
                        "or the whole firmware in QEMU, one emulated Cortex-M a board, started "
                        "and stopped by commands (slower than real time: docs/firmware.md)")


def add_study_options(p: argparse.ArgumentParser) -> None:
    """The study's options (:class:`infra.study.Study`): SUV, DICOM and BIDS need them."""
    g = p.add_argument_group("study (SUV, DICOM and BIDS need it; nothing is guessed)")
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


def study_of(args: argparse.Namespace) -> Study:
    """The study the command line gives."""
    return Study(patient_id=args.patient_id, weight_kg=args.weight_kg, height_m=args.height_m,
                 injected_mbq=args.injected_mbq, injection_time_utc=args.injection_time,
                 radiopharmaceutical=args.tracer)


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


def _check_live(args: argparse.Namespace) -> None:
    """The live options' values, before anything is created."""
    checks.positive(args.recon_interval, "--recon-interval", "seconds")
    if args.monitor_port is not None:
        checks.tcp_port(args.monitor_port, "--monitor-port")
        keys.needs_keys(args.monitor_host, _key_folder(args), "the monitor")


def _key_folder(args: argparse.Namespace) -> keys.KeyFolder | None:
    return keys.open_folder(args.keys) if args.keys is not None else None


def _live(args: argparse.Namespace) -> runcontrol.LiveOptions:
    publisher = (MonitorPublisher.bind(args.monitor_host, args.monitor_port, _key_folder(args))
                 if args.monitor_port else None)
    return runcontrol.LiveOptions(args.recon, args.recon_interval, args.tof, publisher,
                                  args.frames, tuple(args.spheres))


def cmd_run(args: argparse.Namespace) -> int:
    checks.positive(args.activity_mbq, "--activity-mbq", "MBq")
    checks.positive(args.duration, "--duration", "seconds")
    _check_live(args)
    threads = check_threads(args.threads)
    study = study_of(args)
    emu = EmulatorSettings(args.scanner, args.phantom, args.nuclide, args.activity_mbq,
                           args.duration, args.seed, realtime=not args.fast,
                           kinetic_time_scale=args.kinetic_time_scale, firmware=args.firmware)
    check_live_frames(args.frames, load_scanner(args.scanner), args.kinetic_time_scale,
                      args.duration, args.spheres, emulated=True)
    r = runcontrol.start_emulated(args.out, emu, sort_settings(args), _live(args), threads,
                                  args.name, study, say=lambda s: print(s, file=sys.stderr))
    print(f"run {r.run.path}: {r.scanner.name}, {args.phantom}, {args.nuclide} "
          f"{args.activity_mbq:g} MBq, {args.duration:g} s", file=sys.stderr)
    return _watch_and_finish(r)


def cmd_acquire(args: argparse.Namespace) -> int:
    checks.optional_seconds(args.duration, "--duration")
    _check_live(args)
    threads = check_threads(args.threads)
    study = study_of(args)
    scanner = load_scanner(args.scanner)
    sort = sort_settings(args)
    if scanner.kind == "spect":
        from daq.pipeline.process.projections import view_duration_ps, windows_of

        view_duration_ps(scanner, args.duration)  # a SPECT scan needs its duration: say so now
        windows_of(scanner, sort.photopeaks_kev)
    check_live_frames(args.frames, scanner, 1.0, args.duration, args.spheres, emulated=False)
    if any(s.startswith("abcd://") for s in args.sources):
        return _acquire_abcd(args, scanner, sort)
    secure = keys.client(args.keys, args.key_name) if args.keys is not None else None
    sources = [open_source(s, args.baud, secure) for s in args.sources]
    r = runcontrol.start_acquisition(args.out, scanner, sources, sort,
                                     _live(args), args.duration, threads, args.name, study)
    print(f"run {r.run.path}: acquiring from {', '.join(args.sources)}", file=sys.stderr)
    return _watch_and_finish(r)


def _acquire_abcd(args: argparse.Namespace, scanner: Scanner, sort: SortSettings) -> int:
    """``petdaq acquire --from abcd://HOST:PORT ...``: CAEN digitizers through ABCD."""
    if not all(s.startswith("abcd://") for s in args.sources):
        raise UserError("abcd:// links and our boards' links cannot share a run")
    for link in args.sources:
        abcdlive.status_endpoint_of(link)  # its data and status ports
    settings = digitizer_settings(args, "abcd")
    ps_per_sample(settings.ns_per_sample)
    map_file = map_file_of(args.map, scanner)
    if map_file is not None:
        channelmap.load(map_file, scanner)
    sort.resolved(scanner)
    counters = abcdlive.LinkCounters(links=list(args.sources))
    with ExitStack() as stack:  # the monitor bound first: a port in use stops before the run
        publisher = (MonitorPublisher.bind(args.monitor_host, args.monitor_port,
                                           _key_folder(args)) if args.monitor_port else None)
        if publisher is not None:
            stack.callback(publisher.close)
        run = RunDir.create(args.out, args.name)
        _, named = keep_sources(run.path, [], map_file)
        print(f"run {run.path}: acquiring from {', '.join(args.sources)}", file=sys.stderr)
        if publisher is not None:
            stack.callback(MonitorLoop(publisher, AbcdMonitor(
                counters, str(run.path), scanner.name, args.duration).snapshot).close)
        progress = Progress("acquire", unit="records")
        result = abcdlive.acquire(run, abcdlive.AbcdRun(list(args.sources), settings, named,
                                                        args.duration), scanner, sort,
                                  progress=progress.update, counters=counters)
    progress.close(result["counts"]["records"])
    return finish_records_run(run, scanner, result, args.recon)


def cmd_serve(args: argparse.Namespace) -> int:
    from daq.control.service import DaqService

    checks.tcp_port(args.monitor_port, "--monitor-port")
    checks.tcp_port(args.control_port, "--control-port")
    key_folder = _key_folder(args)
    service = DaqService(args.out, monitor_port=args.monitor_port,
                         control_port=args.control_port, host=args.host,
                         threads=check_threads(args.threads), keys=key_folder).start()
    secured = f", CURVE keys {args.keys}" if key_folder else ""
    print(f"DAQ service: monitor tcp://{args.host}:{args.monitor_port}, control "
          f"tcp://{args.host}:{args.control_port}{secured}, runs in {args.out} "
          f"(Ctrl-C to quit)", file=sys.stderr)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        service.close()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    folder = keys.create(args.folder, args.client or list(keys.DEFAULT_CLIENTS))
    print(f"key folder {folder.path}: server.key (the DAQ's), authorised clients: "
          f"{', '.join(folder.clients())}. A peer on another machine needs server.key and its "
          f"clients/NAME.key_secret in a folder of the same layout.")
    return 0


def _watch_and_finish(r: runcontrol.Run) -> int:
    """A progress line while the run acquires (Ctrl-C stops it), then its finish
    (:func:`runcontrol.finish`) and summary; the exit status."""
    session = r.session
    progress = Progress("acquire", unit="singles")
    loop = (MonitorLoop(session.publisher, session.snapshot, cpu=session.cpu)
            if session.publisher else None)
    try:
        while session.acq.running:
            c = session.acq.processor.counters
            progress.update(c.singles, f"prompts {c.prompts}, delayeds {c.delayeds}")
            session.acq.wait(0.2)
    except KeyboardInterrupt:
        session.acq.stop("interrupted (Ctrl-C)")
    finally:
        if loop is not None:
            loop.close()
        session.acq.wait()
        progress.close(session.acq.processor.counters.singles,
                       f"stopped: {session.acq.reason or '-'}")
        status = runcontrol.finish(r)
    if r.emulator_error:
        print(f"emulator: {r.emulator_error}", file=sys.stderr)
    print_summary(r.run)
    return status


def add_out_options(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder of run directories")
    if with_name:
        p.add_argument("--name", default=None, help="run directory name (default: run-<time>)")


def add_sort_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("coincidence sorting (defaults from the scanner)")
    g.add_argument("--window-ps", type=int, default=None, help="coincidence window, ps")
    g.add_argument("--delay-ps", type=int, default=None, help="delayed window offset, ps (0: none)")
    g.add_argument("--energy-window", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="energy window, keV")
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


def cmd_scanners(args: argparse.Namespace) -> int:
    if args.action == "show":
        scanner = load_scanner(args.name or "bedside-brain")
        if args.crystals:
            _print_crystals(scanner)
        else:
            print(scanner.summary())
        return 0
    for name in builtin_scanners():
        s = load_scanner(name)
        print(f"{name:18s} {s.kind.upper():5s} {s.n_crystals:6d} crystals  {s.description}")
    return 0


def _print_crystals(scanner: Scanner) -> None:
    """``scanners show NAME --crystals``: one CSV row a crystal."""
    rows = [f"{c},{b},{ch},{m},{r},{x:.2f},{y:.2f},{z:.2f}" for c, (b, ch, m, r, (x, y, z))
            in enumerate(zip(scanner.crystal_board.tolist(), scanner.crystal_channel.tolist(),
                             scanner.crystal_module.tolist(), scanner.crystal_ring.tolist(),
                             scanner.crystal_centres.tolist(), strict=True))]
    print("\n".join(["crystal,board,channel,module,ring,x_mm,y_mm,z_mm", *rows]))


def _run_scanner(run: RunDir) -> Scanner:
    """The scanner a run was taken with: a built-in by its name, else the definition file its
    start document names (a lab's own TOML)."""
    start = run.start
    name = start.scanner if start and start.scanner else "bedside-brain"
    own = start.setting("scanner_file") if start else None
    if own and name not in builtin_scanners() and Path(own).is_file():
        return load_scanner(own)
    return load_scanner(name)


def _journal_run(path: str | Path, what: str) -> tuple[RunDir, Scanner]:
    """An existing run with a readable journal to ``what`` (replay, recover from), and its
    scanner."""
    run = RunDir.open(path)
    if not run.journal.is_file():
        raise UserError(f"{run.path} has no journal to {what}")
    check_journal(run.journal)
    return run, _run_scanner(run)


def _calibration(run: RunDir, scanner: Scanner) -> calibration.Calibration:
    """The gain table for a run's events (:func:`daq.pipeline.process.calibration.current`: an
    emulated run's boards were the emulator's, as its start document records)."""
    emulated = run.start is not None and bool(run.start.settings.get("emulator"))
    return calibration.current(scanner, emulated=emulated)


def _scan_duration_s(run: RunDir) -> float | None:
    """A run's planned scan time (s), which a SPECT run's gantry views share; None if none."""
    start = run.start
    return start.scan_duration_s if start else None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from daq.pipeline.replay import decode_journal

    run, kept = keptruns.source_of(args.run)
    scanner = _run_scanner(run)
    if args.method == "timing":
        return _calibrate_timing(run, scanner, args.no_save)
    if kept is not None:
        return keptruns.calibrate(kept, scanner, args.method, args.peak_kev, args.no_save)
    raw = decode_journal(run.journal, scanner)
    cal, report = calibration.derive(raw, scanner, args.method, created_utc=utc_now(),
                                     from_run=str(run.path))
    print(f"calibrated {report['calibrated']} of {report['crystals']} crystals "
          f"({args.method}, median {report['median_counts']:.0f} counts/crystal), "
          f"gain spread {100 * report['gain_rms']:.1f} % RMS")
    if report["too_few_counts"]:
        print(f"warning: {report['too_few_counts']} crystals had too few counts: gain left nominal")
    if not args.no_save:
        print(f"stored {cal.save()}")
    return 0


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
        scanner = _run_scanner(imported)
        sort = sort_settings(args)
        sort.resolved(scanner)
        return keptruns.replay(kept, scanner, sort, _replay_dir(imported, args.out), args.recon)
    run, scanner = _journal_run(args.run, "replay")
    out = _replay_dir(run, args.out)
    cal = _calibration(run, scanner)
    sort = sort_settings(args)
    recorded = run.start.sort.get("photopeaks_kev") if run.start is not None else None
    if sort.photopeaks_kev is None and recorded:
        sort = replace(sort, photopeaks_kev=tuple(recorded))
    progress = Progress(f"replay {run.path.name}", unit="bytes")
    result = replay_journal(run.journal, scanner, cal, sort, out.listmode,
                            progress=lambda done, total: progress.update(done),
                            scan_duration_s=_scan_duration_s(run),
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
        return keptruns.recover(kept, _run_scanner(imported), args.recon)
    run, scanner = _journal_run(args.run, "recover from")
    sort = keptruns.recorded_sort(run)
    progress = Progress(f"recover {run.path.name}", unit="bytes")
    result = recover(run, scanner, _calibration(run, scanner), sort,
                     progress=lambda done, total: progress.update(done),
                     scan_duration_s=_scan_duration_s(run), threads=threads)
    progress.close(result["counts"]["bytes"])
    for problem in result["problems"]:
        print(f"warning: {problem}")
    if args.recon:
        runcontrol.final_image(run, scanner)
    print_summary(run)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print_summary(RunDir.open(args.run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runstore.petsird import export_petsird

    run = RunDir.open(args.run)
    n = export_petsird(run, _run_scanner(run), args.petsird)
    print(f"wrote {n} prompts to {args.petsird} (PETSIRD)")
    return 0

