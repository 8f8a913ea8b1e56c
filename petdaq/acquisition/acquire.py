"""``petdaq run``, ``acquire``, ``serve`` and ``keys``: acquisitions from the emulator or the
boards, the DAQ service and its keys.

``petdaq run`` starts the emulator as a child process and acquires from it; ``petdaq acquire``
acquires from real boards; both show a progress line, reconstruct the final image from the
list-mode file within seconds of the stop, and print a summary of the run."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from daq.control import checks, runcontrol
from daq.control.abcdmonitor import AbcdMonitor
from daq.control.emulated import EmulatorSettings
from daq.control.liveframes import check_live_frames
from daq.control.monitor import MonitorLoop, MonitorPublisher
from daq.messages import FIRMWARES
from daq.pipeline.digitizers import abcdlive
from daq.pipeline.digitizers.importer import keep_sources, map_file_of
from daq.pipeline.links.sources import open_source
from daq.pipeline.process.processor import SortSettings
from emulator import phantoms
from hw import channelmap
from hw.formats.abcd import ps_per_sample
from hw.scanner import Scanner, load_scanner
from infra import keys
from infra.errors import UserError
from infra.pool import check_threads
from infra.progress import Progress
from petdaq.options import (
    add_digitizer_options,
    add_keys_option,
    add_live_options,
    add_out_options,
    add_sort_options,
    add_study_options,
    add_threads_option,
    digitizer_settings,
    sort_settings,
    study_of,
)
from petdaq.summary import finish_records_run, print_summary
from runstore.rundir import RunDir


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``run``, ``acquire``, ``serve``, ``keys``."""
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
    p.add_argument("--qc-at", default=None, metavar="HH:MM",
                   help="run the daily QC (petdaq qc) each day at this local time while no run "
                        "acquires, or as soon as the service is up on a day that has none")
    p.add_argument("--qc-scanner", default="bedside-brain", help="the scanner --qc-at checks")
    p.add_argument("--qc-duration", type=float, default=60.0, metavar="SECONDS",
                   help="the scheduled QC's blank (default 60)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="make a CURVE key folder (or add clients to one) for links "
                       "beyond this machine")
    p.add_argument("folder", type=Path, help="key folder (made if missing)")
    p.add_argument("--client", action="append", default=None, metavar="NAME",
                   help=f"a client identity to make and authorise (default: "
                        f"{' and '.join(keys.DEFAULT_CLIENTS)}); repeatable")
    p.set_defaults(func=cmd_keys)


def add_emulation_options(p: argparse.ArgumentParser) -> None:
    """Options that choose what ``petdaq run`` emulates."""
    d = EmulatorSettings()
    g = p.add_argument_group("emulated scan")
    g.add_argument("--scanner", default=d.scanner)
    g.add_argument("--phantom", default=d.phantom,
                   help="a built-in phantom (petdaq emulate --list; blank: nothing in the "
                        "scanner, the crystals' own Lu-176 alone, --activity-mbq is then 0) or "
                        "a phantom file, FILE.toml (docs/phantoms.md)")
    g.add_argument("--nuclide", default=d.nuclide)
    g.add_argument("--activity-mbq", type=float, default=None,
                   help=f"MBq at the start (default: a phantom file's own activity when its "
                        f"concentrations are in Bq/mL, else {d.activity_mbq:g})")
    g.add_argument("--duration", type=float, default=d.duration_s, help="seconds")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--kinetic-time-scale", type=float, default=d.kinetic_time_scale,
                   metavar="S", help="a kinetic phantom's model runs S times faster than the "
                   "acquisition (60: an hour of kinetics in a minute; default 1)")
    g.add_argument("--fast", action="store_true",
                   help="emulate as fast as possible instead of in real time")
    g.add_argument("--faults", default=None, metavar="FILE.toml",
                   help="inject faults into the emulated unit ([[dead]], [[noisy]], [[gain]], "
                        "[[efficiency]], [[resolution]], [[skew]]: docs/qc.md); the run records them")
    g.add_argument("--motion", default=None, metavar="FILE.csv|PRESET",
                   help="the patient moves: a trace of rigid poses (t_s, tx_mm, ty_mm, tz_mm, "
                        "rx_deg, ry_deg, rz_deg) or a preset (still, nod, turn, drift, restless, "
                        "restless:SEED: docs/motion.md); the run records it as truth")
    g.add_argument("--firmware", choices=list(FIRMWARES), default=d.firmware,
                   help="the boards' packer: hw.wire's encoder (numba), the firmware's C packer, "
                        "or the whole firmware in QEMU, one emulated Cortex-M a board, started "
                        "and stopped by commands (slower than real time: docs/firmware.md)")


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
    if not phantoms.is_blank(args.phantom) and args.activity_mbq is not None:
        checks.positive(args.activity_mbq, "--activity-mbq", "MBq")
    checks.positive(args.duration, "--duration", "seconds")
    _check_live(args)
    threads = check_threads(args.threads)
    study = study_of(args)
    emu = EmulatorSettings(args.scanner, args.phantom, args.nuclide, args.activity_mbq,
                           args.duration, args.seed, realtime=not args.fast,
                           kinetic_time_scale=args.kinetic_time_scale, firmware=args.firmware,
                           faults=args.faults, motion=args.motion)
    check_live_frames(args.frames, load_scanner(args.scanner), args.kinetic_time_scale,
                      args.duration, args.spheres, emulated=True)
    r = runcontrol.start_emulated(args.out, emu, sort_settings(args), _live(args), threads,
                                  args.name, study, say=lambda s: print(s, file=sys.stderr))
    print(f"run {r.run.path}: {r.scanner.name}, {emu.phantom}, {args.nuclide} "
          f"{emu.activity_mbq:g} MBq, {args.duration:g} s", file=sys.stderr)
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
    return finish_records_run(run, scanner, result, args.recon, at_stop=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from daq.control.service import DaqService

    checks.tcp_port(args.monitor_port, "--monitor-port")
    checks.tcp_port(args.control_port, "--control-port")
    key_folder = _key_folder(args)
    daily_qc = _daily_qc(args)
    _stop_on_interrupt_and_term()
    service = DaqService(args.out, monitor_port=args.monitor_port,
                         control_port=args.control_port, host=args.host,
                         threads=check_threads(args.threads), keys=key_folder,
                         daily_qc=daily_qc).start()
    secured = f", CURVE keys {args.keys}" if key_folder else ""
    try:  # a Ctrl-C as soon as the line is out closes the service too
        print(f"DAQ service: monitor tcp://{args.host}:{args.monitor_port}, control "
              f"tcp://{args.host}:{args.control_port}{secured}, runs in {args.out} "
              f"(Ctrl-C to quit)", file=sys.stderr)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        service.close()
    return 0


def _daily_qc(args: argparse.Namespace):
    """The scheduled QC of ``--qc-at`` (None without it)."""
    if args.qc_at is None:
        return None
    from daq.qc.schedule import DailyQc, parse_time

    checks.positive(args.qc_duration, "--qc-duration", "seconds")
    name = load_scanner(args.qc_scanner).name
    return DailyQc(parse_time(args.qc_at), args.qc_scanner, Path(args.out), args.qc_duration,
                   name)


def _stop_on_interrupt_and_term() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both close the service properly, also when it was started
    in the background, whose SIGINT the shell leaves ignored (and Python then keeps ignoring)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


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
