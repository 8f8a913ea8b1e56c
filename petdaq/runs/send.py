"""``petdaq send``: a run's DICOM objects to the site's PACS through the outbox; ``--echo``,
``--status``, ``--flush``."""

from __future__ import annotations

import argparse
from pathlib import Path

from daq.dicomnet import config as dicomconfig
from daq.dicomnet import outbox, scu
from infra.errors import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``send``."""
    p = sub.add_parser("send", help="send runs' DICOM objects to the PACS (C-STORE, through a "
                                    "persistent outbox); --echo, --status, --flush")
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN")
    p.add_argument("--to", default=None, metavar="NODE",
                   help="a [[pacs]] name of dicom.toml (default: every PACS node)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--echo", action="store_true", help="C-ECHO the nodes")
    what.add_argument("--status", action="store_true",
                      help="the outbox: queued, sent and failed objects of each run and node")
    what.add_argument("--flush", action="store_true",
                      help="deliver what is queued now, backoff or not")
    p.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    config = dicomconfig.load()
    if args.status:
        return _status()
    if args.runs and (args.echo or args.flush):
        raise UserError("--echo and --flush take no RUN")
    if args.echo:
        return _echo(config, args.to)
    if args.flush:
        return _report(outbox.flush(config, force=True, say=print))
    if not args.runs:
        raise UserError("give a RUN to send, or --echo, --status or --flush")
    nodes = config.node(args.to)
    queued = [job for run in args.runs for job in outbox.enqueue(run, nodes)]
    return _report(outbox.flush(config, force=True, only=queued, say=print))


def _echo(config: dicomconfig.DicomConfig, name: str | None) -> int:
    failed = 0
    for node in config.node(name):
        try:
            scu.echo(node, config)
            print(f"{node.describe()}: C-ECHO ok")
        except scu.Unreachable as exc:
            print(f"{node.describe()}: {exc}")
            failed += 1
    return 1 if failed else 0


def _report(tried: list[outbox.Job]) -> int:
    """0 when everything tried was sent, 1 when something stays queued or failed."""
    left = sum(j.count(outbox.QUEUED) + j.count(outbox.FAILED) for j in tried)
    if left:
        print(f"{left} object(s) not delivered: petdaq send --status; the outbox retries them "
              "(petdaq send --flush now)")
    awaiting = sum(len(j.awaiting()) for j in tried)
    if awaiting:
        print(f"{awaiting} object(s) stored but not yet committed: the outbox asks again "
              "(petdaq send --flush now)")
    return 1 if left or awaiting else 0


def _status() -> int:
    jobs = outbox.jobs()
    if not jobs:
        print(f"the outbox ({outbox.outbox_dir()}) is empty")
        return 0
    print(f"{'run':32s} {'node':12s} {'sent':>5s} {'committed':>9s} {'queued':>6s} "
          f"{'failed':>6s}  next try / why")
    for j in jobs:
        why = (f"{j.next_try_utc or 'now'}: {j.last_error}"
               if j.count(outbox.QUEUED) or j.awaiting() else "")
        failed = [i.reason for i in j.items if i.state == outbox.FAILED]
        if failed:
            why = (why + "; " if why else "") + f"failed: {failed[0]}"
        committed = f"{j.count(outbox.COMMITTED):9d}" if j.commits else f"{'-':>9s}"
        print(f"{Path(j.run).name:32s} {j.node:12s} "
              f"{j.count(outbox.SENT) + j.count(outbox.COMMITTED):5d} {committed} "
              f"{j.count(outbox.QUEUED):6d} {j.count(outbox.FAILED):6d}  {why}")
    return 0
