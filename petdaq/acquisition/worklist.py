"""``petdaq worklist``: the procedures the hospital's Modality Worklist scheduled."""

from __future__ import annotations

import argparse
import datetime as dt

from daq.dicomnet import config as dicomconfig
from daq.dicomnet import scu
from daq.dicomnet.worklist import Filters, query
from infra.errors import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``worklist``."""
    p = sub.add_parser("worklist", help="the scheduled procedures of the Modality Worklist "
                                        "(C-FIND); start one with petdaq run/acquire "
                                        "--worklist ACCESSION")
    p.add_argument("--date", default="today",
                   help="YYYYMMDD, a range YYYYMMDD-YYYYMMDD, today or any (default today)")
    p.add_argument("--modality", default=None, help="e.g. PT or NM (default: any)")
    p.add_argument("--station", default=None, metavar="AE",
                   help="the scheduled station's AE title (default: any)")
    p.add_argument("--patient", default=None, metavar="ID", help="one patient's id")
    p.set_defaults(func=cmd_worklist)


def _date(text: str) -> str | None:
    if text == "any":
        return None
    if text == "today":
        return dt.date.today().strftime("%Y%m%d")
    parts = text.split("-")
    if not 1 <= len(parts) <= 2 or not all(len(p) == 8 and p.isdigit() for p in parts):
        raise UserError(f"--date takes YYYYMMDD, YYYYMMDD-YYYYMMDD, today or any, got {text!r}")
    return text


def cmd_worklist(args: argparse.Namespace) -> int:
    config = dicomconfig.load()
    filters = Filters(_date(args.date), args.modality, args.station, args.patient)
    try:
        found = query(config, filters)
    except scu.Unreachable as exc:
        raise UserError(f"worklist: {exc}") from None
    if not found:
        print("no scheduled procedure matches")
        return 0
    print(f"{'date':8s} {'time':6s} {'accession':16s} {'patient id':12s} {'name':24s} "
          f"{'sex':3s} {'born':8s} {'mod':3s} procedure")
    for p in found:
        print(f"{p.date:8s} {p.time[:6]:6s} {p.accession_number:16s} {p.patient_id:12s} "
              f"{p.patient_name:24s} {p.sex:3s} {p.birth_date:8s} {p.modality:3s} "
              f"{p.requested_procedure}")
    return 0
