"""``petdaq``: the one command of the product. Every sub-command is named for what a user does.

A user mistake (a bad name, a missing file, a port in use) prints one line ``petdaq: error: ...``
and exits with status 2; an interrupted job exits with 130. Heavy modules (the console's Qt, the
reconstruction) are imported only by the sub-commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from infra.errors import UserError

#: Each module of sub-commands and the commands it registers, in the order of ``petdaq --help``.
GROUPS = (
    ("scanners", ("scanners",)),
    ("acquire", ("run", "acquire", "serve", "keys")),
    ("calibrate", ("calibrate",)),
    ("qc", ("qc",)),
    ("replay", ("replay", "sort", "recover")),
    ("info", ("info", "export")),
    ("bench", ("bench",)),
    ("emulate", ("emulate", "count-rate")),
    ("phantoms", ("phantoms",)),
    ("imports", ("import",)),
    ("send", ("send",)),
    ("worklist", ("worklist",)),
    ("recon", ("recon",)),
    ("sensitivity", ("sensitivity",)),
    ("dosimetry", ("dosimetry",)),
    ("kinetics", ("kinetics",)),
    ("cardiac", ("cardiac",)),
    ("console", ("console",)),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line: with ``command`` one of :data:`GROUPS`' commands, only the module that
    registers it (a sub-command starts without importing every other's modules); otherwise
    every sub-command, for the help and for an unknown command's error."""
    parser = argparse.ArgumentParser(
        prog="petdaq",
        description="Acquisition software of the bedside PET/SPECT scanner: emulate, acquire, "
                    "sort, reconstruct, display.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = [g for g, names in GROUPS if command in names] or [g for g, _ in GROUPS]
    for group in chosen:
        _commands_of(group).add_commands(sub)
    if "count-rate" in sub.choices:
        from petdaq.acquisition import countrate
        countrate.extend(sub)
    return parser


def _commands_of(group: str) -> ModuleType:
    """The module of a group of :data:`GROUPS`, imported."""
    match group:
        case "scanners":
            from petdaq.scanner import scanners as module
        case "acquire":
            from petdaq.acquisition import acquire as module
        case "calibrate":
            from petdaq.scanner import calibrate as module
        case "qc":
            from petdaq.scanner import qc as module
        case "replay":
            from petdaq.runs import replay as module
        case "info":
            from petdaq.runs import info as module
        case "bench":
            from petdaq.acquisition import bench as module
        case "emulate":
            from petdaq.acquisition import emulate as module
        case "phantoms":
            from petdaq.phantoms import phantoms as module
        case "imports":
            from petdaq.runs import imports as module
        case "send":
            from petdaq.runs import send as module
        case "worklist":
            from petdaq.acquisition import worklist as module
        case "recon":
            from petdaq.images import recon as module
        case "sensitivity":
            from petdaq.scanner import sensitivity as module
        case "dosimetry":
            from petdaq.images import dosimetry as module
        case "kinetics":
            from petdaq.images import kinetics as module
        case "cardiac":
            from petdaq.images import cardiac as module
        case "console":
            from petdaq.acquisition import console as module
        case _:
            raise ValueError(f"no group of commands {group!r}")
    return module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petdaq`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not args_list else 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"petdaq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("petdaq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `petdaq info RUN | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
