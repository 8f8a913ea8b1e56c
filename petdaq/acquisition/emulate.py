"""``petdaq emulate`` and ``petdaq count-rate``: the emulator's sub-commands.

The DAQ's CLI registers them with :func:`add_commands`; every user mistake raises
:class:`infra.errors.UserError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import math
import shutil
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from emulator import phantoms
from emulator.engine import Emulator
from emulator.outputs.boards import Sent, replay, transmit
from emulator.outputs.packers import packer
from emulator.outputs.sinks import check_sink, file_paths, open_files, open_sink
from emulator.shards import Recipe, Sharded
from hw import nuclides
from hw.faults import load_faults
from hw.motion import load_trace
from hw.scanner import load_scanner
from infra import keys
from infra.cluster import client_for
from infra.errors import UserError
from infra.progress import Progress
from petdaq.options import add_cluster_option


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``emulate`` and ``count-rate``."""
    p = sub.add_parser("emulate", help="emulate the scanner: physics -> digitizer frames -> a "
                       "transport (ZeroMQ, serial, pty, file)")
    p.add_argument("--scanner", default="bedside-brain", help="built-in name or .toml path")
    p.add_argument("--phantom", default="nema-iq",
                   help="a built-in phantom (--list; blank: nothing in the scanner, the "
                        "crystals' own Lu-176 alone, --activity-mbq is then 0) or a phantom "
                        "file, FILE.toml (docs/phantoms.md)")
    p.add_argument("--nuclide", default="F-18", help="see --list")
    p.add_argument("--activity-mbq", type=float, default=None,
                   help="activity at t = 0 (MBq); of a kinetic phantom, the injected activity "
                        "(default: a phantom file's own in Bq/mL, else 20)")
    p.add_argument("--kinetic-time-scale", type=float, default=1.0, metavar="S",
                   help="a kinetic phantom's model runs S times faster than the acquisition "
                        "(60: an hour of kinetics in a minute; default 1)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--to", default=None, metavar="SINK",
                   help="tcp://host:port (board b at port + b), ipc://path, pty, a serial device "
                        "or pyserial URL (comma-separated: one per board), or a frames file path "
                        "({board} in it: one file per board)")
    p.add_argument("--truth", default=None, metavar="FILE.h5",
                   help="write every single's truth to this HDF5 file")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same events)")
    p.add_argument("--motion", default=None, metavar="FILE.csv|PRESET",
                   help="the patient moves: a trace of rigid poses (t_s, tx_mm, ty_mm, tz_mm, "
                        "rx_deg, ry_deg, rz_deg) or a preset (still, nod, turn, drift, restless, "
                        "restless:SEED: docs/motion.md)")
    p.add_argument("--faults", default=None, metavar="FILE.toml",
                   help="inject faults into the emulated unit ([[dead]], [[noisy]], [[gain]], "
                        "[[efficiency]], [[resolution]], [[skew]]: docs/qc.md)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="send frames when their time has come (default)")
    pace.add_argument("--fast", dest="realtime", action="store_false",
                      help="send as fast as the transport takes them")
    p.add_argument("--firmware", choices=["numba", "c", "qemu"], default="numba",
                   help="frame packer: hw.wire's numba encoder, the firmware's C packer, or the "
                        "whole firmware on an emulated Cortex-M, one QEMU a board (slower than "
                        "real time: docs/firmware.md)")
    p.add_argument("--commands", default=None, metavar="ENDPOINT",
                   help="with --firmware qemu: the boards take their run's start and stop (and "
                        "every other command) from a host's ZeroMQ PUSH to this endpoint "
                        "(tcp://127.0.0.1:PORT or ipc://PATH; default: the emulator starts and "
                        "stops them itself)")
    p.add_argument("--heartbeat-ms", type=float, default=10.0,
                   help="emulated time between each board's STATUS heartbeats (ms)")
    p.add_argument("--baud", type=int, default=3_000_000, help="serial baud rate")
    p.add_argument("--keys", default=None, metavar="DIR",
                   help="CURVE key folder (petdaq keys): only its authorised clients may take "
                        "the boards' events; needed for tcp:// beyond 127.0.0.1")
    p.add_argument("--replay", default=None, metavar="FILE.frames",
                   help="send a recorded frames file instead of emulating (as fast as possible)")
    p.add_argument("--list", action="store_true", help="list the phantoms and nuclides and exit")
    add_cluster_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--ready-line", action="store_true",
                   help="print 'ready' on stdout once the kernels are compiled and the boards "
                        "are about to stream (for a DAQ that starts the emulator)")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="end when process PID (the DAQ that started the emulator) ends, "
                        "however it ends (Linux)")
    p.set_defaults(func=cmd_emulate)

    p = sub.add_parser("count-rate", help="count-rate study: trues, scatters, randoms and NECR "
                       "against activity (CSV and PNG)")
    p.add_argument("--scanner", default="bedside-brain")
    p.add_argument("--phantom", default="nu2-scatter",
                   help="a built-in phantom or a phantom file, FILE.toml")
    p.add_argument("--nuclide", default="F-18")
    p.add_argument("--activities-mbq", type=float, nargs="+", default=None,
                   help="activities to emulate (default: 5 .. 1000 MBq, log-spaced)")
    p.add_argument("--decays", type=float, default=3e6,
                   help="decays emulated per activity (sets each point's duration)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("count-rate"),
                   help="folder for count_rate.csv and count_rate.png (count_rate.points/ "
                        "keeps each point's row until then: a study started again measures "
                        "only the points it lacks)")
    add_cluster_option(p)
    p.set_defaults(func=cmd_count_rate)


def _print_list(scanner_name: str) -> None:
    scanner = load_scanner(scanner_name)
    print(f"phantoms (sized for {scanner.name}):")
    for name in phantoms.names():
        print(f"  {name:12s} {phantoms.get(name, scanner).description}")
    print("  (or a phantom file: --phantom FILE.toml, shapes or voxels; docs/phantoms.md; "
          "petdaq phantoms write NAME makes one of a built-in phantom)")
    print("nuclides:")
    for name in nuclides.names():
        n = nuclides.get(name)
        half = n.half_life_s
        shown = f"{half / 3600:.2f} h" if half >= 3600 else f"{half / 60:.1f} min"
        what = [f"beta+ {100 * n.positron_fraction:.1f} %"] if n.is_positron_emitter else []
        what += [f"{e:g} keV ({100 * y:.1f} %)" for e, y in zip(n.gamma_kev, n.gamma_yield,
                                                                  strict=True)]
        print(f"  {name:12s} T1/2 {shown}, {', '.join(what)}")


def _announce(endpoints: list[str], quiet: bool) -> None:
    """Tell the DAQ where each board's stream goes (a pty's device exists only now)."""
    if quiet:
        return
    if len(set(endpoints)) == 1:
        print(f"boards 0-{len(endpoints) - 1}: {endpoints[0]}", flush=True)
        return
    for b, endpoint in enumerate(endpoints):
        print(f"board {b}: {endpoint}", flush=True)


def _die_with_parent(pid: int) -> None:
    """Be killed when the process that started us dies (even by SIGKILL): Linux's parent-death
    signal, then a check that the parent had not already gone before it was set."""
    import ctypes
    import os
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != pid:
        raise SystemExit(f"petdaq emulate: the process that started it ({pid}) is gone")


def _report_crashes() -> None:
    """A crash says where, on stderr (the DAQ words it for the run); a stderr that is no file
    (the command called in-process, its output captured) has nothing to write it to."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no fileno
        faulthandler.enable()


def cmd_emulate(args: argparse.Namespace) -> int:
    _report_crashes()
    if args.parent_pid is not None and sys.platform.startswith("linux"):
        _die_with_parent(args.parent_pid)
    if args.list:
        _print_list(args.scanner)
        return 0
    if args.to is None:
        raise UserError("emulate needs --to: tcp://host:port, ipc://path, pty, a serial device "
                        "or URL, or a frames file path")
    scanner = load_scanner(args.scanner)
    if args.faults is not None:
        scanner = replace(scanner, faults=load_faults(args.faults, scanner.fault_counts()))
    key_folder = keys.open_folder(args.keys) if args.keys is not None else None
    check_sink(args.to, scanner.n_boards, key_folder)
    paths = _cluster_output(args, scanner.n_boards) if args.cluster is not None else []
    if args.replay is not None:
        return _replay(args, scanner, key_folder)
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise UserError(f"--duration must be a positive number of seconds, got {args.duration}")
    if not args.heartbeat_ms > 0:
        raise UserError(f"--heartbeat-ms must be > 0, got {args.heartbeat_ms}")
    if not (math.isfinite(args.kinetic_time_scale) and args.kinetic_time_scale > 0):
        raise UserError(f"--kinetic-time-scale must be a number > 0, got "
                        f"{args.kinetic_time_scale}")
    phantom = phantoms.get(args.phantom, scanner)   # a bad file: its one line, now
    if phantoms.is_file(args.phantom):
        args.phantom = str(phantoms.file_path(args.phantom))
    if args.activity_mbq is None:
        args.activity_mbq = phantom.activity_mbq if phantom.activity_mbq is not None else 20.0
    trace = load_trace(args.motion) if args.motion is not None else None
    recipe = Recipe(scanner, args.phantom, args.nuclide, args.activity_mbq, args.seed,
                    args.truth is not None, args.kinetic_time_scale, trace)
    emu = recipe.build()
    if args.firmware == "qemu" and args.cluster is not None:
        raise UserError("--firmware qemu runs the boards here: leave out --cluster")
    warm = None if args.firmware == "qemu" else packer(args.firmware, scanner, args.commands)
    emu.warm_up(warm)  # numba compiles here on a fresh install, before any board streams
    pack = warm or packer(args.firmware, scanner, args.commands)  # QEMUs: the physics is ready
    if args.cluster is not None:
        return _emulate_sharded(args, recipe, emu, pack, paths)
    return _emulate(args, emu, pack, open_sink(args.to, scanner.n_boards, args.baud, key_folder),
                    None)


def _emulate_sharded(args: argparse.Namespace, recipe: Recipe, emu: Emulator, pack,
                     paths: list[Path]) -> int:
    """``--cluster``: the physics from the cluster's workers, the frames into ``paths``, which
    appear under their names only once complete."""
    partial = [p.with_name(f".partial-{p.name}") for p in paths]
    with client_for(args.cluster) as client:
        folder = Sharded.folder_for(paths[0], recipe, args.duration, 0.0)
        sharded = Sharded(client, recipe, emu.slices(args.duration), args.duration, 0.0, folder)
        _emulate(args, emu, pack, open_files(partial, emu.scanner.n_boards), sharded)
    for tmp, path in zip(partial, paths, strict=True):
        tmp.replace(path)
    sharded.remove()
    return 0


def _cluster_output(args: argparse.Namespace, n_boards: int) -> list[Path]:
    """The frames file(s) of a sharded emulation (it writes files, nothing else)."""
    if args.replay is not None:
        raise UserError("--cluster emulates; --replay sends a recorded file (leave one out)")
    paths = file_paths(args.to, n_boards)
    if paths is None:
        raise UserError(f"--cluster emulates into a frames file (--to FILE.frames), not to "
                        f"{args.to}")
    args.realtime = False
    return paths


def _emulate(args: argparse.Namespace, emu: Emulator, pack, sink, sharded: Sharded | None
             ) -> int:
    """Emulate ``args.duration`` into ``sink`` (the physics from ``sharded``'s workers when
    given), with a progress line and the truth file when asked for."""
    writer = None
    if args.truth is not None:
        from emulator.outputs.truthfile import TruthWriter

        writer = TruthWriter(args.truth, {
            "scanner": emu.scanner.name, "scanner_digest": emu.scanner.digest,
            "phantom": args.phantom, "nuclide": emu.nuclide.name,
            "activity_mbq": emu.activity_mbq, "seed": args.seed, "duration_s": args.duration})
    try:
        _announce(sink.endpoints, args.quiet and args.to != "pty")
        if args.ready_line:
            print("ready", flush=True)
        progress = Progress("emulate", unit="singles", enabled=not args.quiet)

        def on_chunk(chunk, sent: Sent) -> None:
            if writer is not None:
                writer.append(chunk)
            late = f", {sent.late_s:.1f} s behind real time" if sent.late_s > 0.5 else ""
            shards = (f", {sharded.shards_done}/{len(sharded.bounds)} shards"
                      if sharded is not None else "")
            progress.update(sent.events, f"t {chunk.t_stop_ps * 1e-12:.2f}/{args.duration:g} s"
                                         f"{late}{shards}")

        chunks = emu.run(args.duration, chunk_s=args.heartbeat_ms * 1e-3,
                         physics=sharded.physics() if sharded is not None else None)
        sent = transmit(chunks, sink, emu.scanner, pack, realtime=args.realtime,
                        on_chunk=on_chunk)
        progress.close(sent.events, f"{sent.frames} frames, {sent.bytes / 1e6:.1f} MB in "
                                    f"{sent.seconds:.1f} s")
    finally:
        pack.close()
        sink.close()
        if writer is not None:
            writer.close(emu.counters)
    return 0


def _replay(args: argparse.Namespace, scanner, key_folder: keys.KeyFolder | None) -> int:
    if not Path(args.replay).is_file():
        raise UserError(f"frames file {args.replay} does not exist")
    sink = open_sink(args.to, scanner.n_boards, args.baud, key_folder)
    try:
        _announce(sink.endpoints, args.quiet and args.to != "pty")
        sent = replay(args.replay, sink, scanner.n_boards)
    finally:
        sink.close()
    if not args.quiet:
        print(f"replayed {sent.events} events in {sent.frames} frames ({sent.bytes / 1e6:.1f} MB) "
              f"in {sent.seconds:.2f} s", file=sys.stderr)
    return 0


def cmd_count_rate(args: argparse.Namespace) -> int:
    from emulator import countrate

    scanner = load_scanner(args.scanner)
    phantoms.get(args.phantom, scanner)
    if phantoms.is_file(args.phantom):
        args.phantom = str(phantoms.file_path(args.phantom))
    nuclides.get(args.nuclide)
    points = args.out / "count_rate.points"
    todo = countrate.plan(args.activities_mbq, None, args.decays, args.seed)
    kept = sum(countrate.point_path(scanner, p, args.phantom, args.nuclide, points).is_file()
               for p in todo)
    if kept:
        print(f"count-rate: {kept} of {len(todo)} points kept from an earlier run of this study",
              file=sys.stderr)
    with ExitStack() as stack:
        client = stack.enter_context(client_for(args.cluster)) if args.cluster else None
        result = countrate.study(scanner, args.activities_mbq, phantom=args.phantom,
                                 nuclide=args.nuclide, decays=args.decays, seed=args.seed,
                                 progress=Progress("count-rate", unit="points"),
                                 points=points, client=client)
    csv, png = countrate.save(result, args.out)
    shutil.rmtree(points, ignore_errors=True)
    peak = result.peak()
    print(f"peak NECR {peak['necr_cps'] / 1e3:.1f} kcps at {peak['activity_mbq']:g} MBq; "
          f"{csv}, {png}")
    return 0
