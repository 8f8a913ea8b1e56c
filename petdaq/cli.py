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

from infra.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The full command line, with every sub-command registered."""
    from petdaq.acquisition import acquire, bench, console, countrate, emulate, worklist
    from petdaq.images import dosimetry, kinetics, recon
    from petdaq.runs import imports, info, replay, send
    from petdaq.scanner import calibrate, qc, scanners, sensitivity

    parser = argparse.ArgumentParser(
        prog="petdaq",
        description="Acquisition software of the bedside PET/SPECT scanner: emulate, acquire, "
                    "sort, reconstruct, display.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    scanners.add_commands(sub)
    acquire.add_commands(sub)
    calibrate.add_commands(sub)
    qc.add_commands(sub)
    replay.add_commands(sub)
    info.add_commands(sub)
    bench.add_commands(sub)
    emulate.add_commands(sub)
    imports.add_commands(sub)
    send.add_commands(sub)
    worklist.add_commands(sub)
    countrate.extend(sub)
    recon.add_commands(sub)
    sensitivity.add_commands(sub)
    dosimetry.add_commands(sub)
    kinetics.add_commands(sub)
    console.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petdaq`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
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
