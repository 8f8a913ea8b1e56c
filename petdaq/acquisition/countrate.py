"""``petdaq count-rate --live``: the count-rate sweep through the real DAQ at each activity's rate."""

from __future__ import annotations

import argparse

from daq.perf.countrate_live import format_table, save, sweep
from hw import load_scanner
from infra.pool import check_threads
from infra.progress import Progress
from petdaq.options import add_threads_option


def cmd_live(args: argparse.Namespace) -> int:
    threads = check_threads(args.threads)
    scanner = load_scanner(args.scanner)
    points = sweep(scanner, args.activities_mbq, args.seconds,
                   Progress("count-rate --live", unit="points"), decays=args.decays,
                   phantom=args.phantom, nuclide=args.nuclide, seed=args.seed,
                   threads=threads, max_lag_s=args.max_lag_s)
    print("\n".join(format_table(points, args.max_lag_s)))
    print(save(points, args.out))
    return 0


def extend(sub: argparse._SubParsersAction) -> None:
    """Give the emulator's ``count-rate`` its ``--live`` mode (the DAQ sits above the
    emulator, so it adds itself to the command)."""
    p = sub.choices["count-rate"]
    p.add_argument("--live", action="store_true",
                   help="replay each activity at its real rate through ZeroMQ into the live DAQ "
                        "and report whether it kept up with zero loss")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="--live: seconds of data replayed per activity")
    p.add_argument("--max-lag-s", type=float, default=0.5,
                   help="--live: the most the DAQ may fall behind real time and still keep up")
    add_threads_option(p)
    study = p.get_default("func")
    p.set_defaults(func=lambda args: cmd_live(args) if args.live else study(args))
