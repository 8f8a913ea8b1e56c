"""``petdaq``: the one command of the product. Every sub-command is named for what a user does.

A user mistake (a bad name, a missing file, a port in use) prints one line ``petdaq: error: ...``
and exits with status 2; an interrupted job exits with 130. Heavy modules (the console's Qt, the
reconstruction) are imported only by the sub-commands that need them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hw.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The full command line, with every sub-command registered."""
    from daq import bench, commands, countrate_live
    from emulator import cli as emulator_cli
    from gui import cli as gui_cli
    from recon import cli as recon_cli
    from recon import spectcal
    from recon.dosimetry import cli as dosimetry_cli
    from recon.kinetics import cli as kinetics_cli

    parser = argparse.ArgumentParser(
        prog="petdaq",
        description="Acquisition software of the bedside PET/SPECT scanner: emulate, acquire, "
                    "sort, reconstruct, display.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_commands(sub)
    bench.add_commands(sub)
    emulator_cli.add_commands(sub)
    countrate_live.extend(sub)
    recon_cli.add_commands(sub)
    spectcal.add_commands(sub)
    dosimetry_cli.add_commands(sub)
    kinetics_cli.add_commands(sub)
    gui_cli.add_commands(sub)
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


if __name__ == "__main__":
    sys.exit(main())
