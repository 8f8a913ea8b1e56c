"""``petdaq console``: the argparse sub-command (Qt is imported only when it runs)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daq.messages import DEFAULT_CONTROL_PORT, DEFAULT_MONITOR_PORT
from infra.errors import UserError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``console`` on the ``petdaq`` parser's sub-parsers."""
    p = subparsers.add_parser(
        "console", help="open the live console (attach to a DAQ, or start an emulated scan)",
        description="Open the technologist's console. With --connect HOST it attaches to the "
        "DAQ running on HOST; without, it starts a local DAQ service (petdaq serve) and lets "
        "you run an emulated scan from the window.")
    p.add_argument("--connect", metavar="HOST",
                   help="attach to the DAQ on HOST instead of starting a local one")
    p.add_argument("--monitor-port", type=int, default=DEFAULT_MONITOR_PORT, metavar="PORT",
                   help=f"the DAQ's monitor (PUB) port (default {DEFAULT_MONITOR_PORT})")
    p.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT, metavar="PORT",
                   help=f"the DAQ's control (REP) port (default {DEFAULT_CONTROL_PORT})")
    p.add_argument("--keys", metavar="DIR",
                   help="CURVE key folder for a DAQ that needs keys (petdaq keys): its "
                        "server.key and this console's clients/NAME.key_secret")
    p.add_argument("--key-name", default="console", metavar="NAME",
                   help="this console's identity in the key folder (default console)")
    p.add_argument("--out", default="runs", metavar="DIR",
                   help="run folder of the local DAQ (without --connect; default runs)")
    p.add_argument("--screenshot", metavar="PATH",
                   help="save a PNG of the window after --after seconds, then exit")
    p.add_argument("--after", type=float, metavar="SECONDS",
                   help="seconds before the screenshot (default 5)")
    p.set_defaults(func=run_console)


def run_console(args: argparse.Namespace) -> int:
    """Check the options, then open the window; returns the exit code."""
    from daq.control.checks import tcp_port

    for name in ("monitor_port", "control_port"):
        tcp_port(getattr(args, name), f"--{name.replace('_', '-')}")
    if args.after is not None and args.screenshot is None:
        raise UserError("--after needs --screenshot PATH")
    after = 5.0 if args.after is None else args.after
    if after < 0:
        raise UserError(f"--after {args.after:g}: seconds cannot be negative")
    screenshot = None
    if args.screenshot is not None:
        screenshot = Path(args.screenshot)
        if not screenshot.parent.is_dir():
            raise UserError(f"--screenshot {args.screenshot}: folder {screenshot.parent} "
                            "does not exist")
    if args.connect is not None and not args.connect.strip():
        raise UserError("--connect needs a host name or address")
    secure = None
    if args.keys is not None:
        from infra.keys import client

        secure = client(args.keys, args.key_name)
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM"))
    if headless:
        if screenshot is None:
            raise UserError("no display to open the console on (set DISPLAY, or use "
                            "--screenshot with QT_QPA_PLATFORM=offscreen)")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from gui.app import run

    return run(host=args.connect, monitor_port=args.monitor_port,
               control_port=args.control_port, out_dir=Path(args.out),
               screenshot=screenshot, after_s=after, secure=secure)
