"""``petdaq info`` and ``export``: a run in a few lines, and its list-mode as PETSIRD."""

from __future__ import annotations

import argparse
from pathlib import Path

from petdaq.runs.source import run_scanner
from petdaq.summary import print_summary
from runstore.rundir import RunDir


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``info``, ``export``."""
    p = sub.add_parser("info", help="summarise a run in a few lines")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export a run's list-mode data")
    p.add_argument("run", help="run directory")
    p.add_argument("--petsird", type=Path, required=True, metavar="FILE",
                   help="write PETSIRD list-mode (binary) to FILE")
    p.set_defaults(func=cmd_export)


def cmd_info(args: argparse.Namespace) -> int:
    print_summary(RunDir.open(args.run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runstore.petsird import export_petsird

    run = RunDir.open(args.run)
    n = export_petsird(run, run_scanner(run), args.petsird)
    print(f"wrote {n} prompts to {args.petsird} (PETSIRD)")
    return 0
