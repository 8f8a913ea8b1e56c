"""``petdaq bench``: the throughput of every stage and of the whole chain, in one table."""

from __future__ import annotations

import argparse

from daq.perf.bench import campaigns_report, scaling_report, stages_report


def cmd_bench(args: argparse.Namespace) -> int:
    mode = "quick" if args.quick else "full" if args.full else "default"
    if args.scaling:
        return scaling_report(mode, args.json)
    if args.campaigns:
        return campaigns_report(mode, args.json)
    return stages_report(mode, args.json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bench``."""
    p = sub.add_parser("bench", help="throughput of every stage and of the whole chain")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="less data (~20 s)")
    g.add_argument("--full", action="store_true", help="more data (several minutes)")
    p.add_argument("--scaling", action="store_true",
                   help="the end-to-end rate, the DAQ's CPU per event and the emulator's rate on "
                        "1, 2, 4, ... up to every core, with the parallel efficiency")
    p.add_argument("--campaigns", action="store_true",
                   help="a count-rate study and a sharded emulation in one process and on "
                        "1, 2, 4, ... local Dask workers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bench)

