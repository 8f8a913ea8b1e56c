"""``petdaq scanners``: the built-in scanner models, and one scanner's summary or crystal table."""

from __future__ import annotations

import argparse

from hw.scanner import Scanner, builtin_scanners, load_scanner


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``scanners``."""
    p = sub.add_parser("scanners", help="list the built-in scanners, or show one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="scanner name or .toml path (with show)")
    p.add_argument("--crystals", action="store_true",
                   help="with show: every crystal's index, board, channel, module, ring and "
                        "centre (mm), as CSV: what a channel map (board,channel,crystal) names")
    p.set_defaults(func=cmd_scanners)


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
