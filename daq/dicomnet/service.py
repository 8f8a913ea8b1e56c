"""What the DAQ service does with the DICOM network: answers the console's worklist query,
says how the outbox stands, and retries it while it waits."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from daq.dicomnet import config as dicomconfig
from daq.dicomnet import outbox, scu
from daq.dicomnet.worklist import Filters, query
from infra.errors import UserError

#: Seconds between the service's looks at the outbox (a job's own backoff decides the retry).
RETRY_EVERY_S = 30.0
#: Seconds the worklist server may take to answer the console.
WORKLIST_TIMEOUT_S = 5.0


def worklist_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to ``{"cmd": "worklist"}``: today's procedures (or ``date``), for this
    station's modality if ``modality`` is given."""
    date = request.get("date") or dt.date.today().strftime("%Y%m%d")
    modality = request.get("modality")
    if not isinstance(date, str) or (modality is not None and not isinstance(modality, str)):
        return {"ok": False, "error": "worklist: date and modality are text"}
    try:
        found = query(dicomconfig.load(), Filters(date=None if date == "any" else date,
                                                  modality=modality),
                      timeout_s=WORKLIST_TIMEOUT_S)
    except (UserError, scu.Unreachable) as exc:
        return {"ok": False, "error": f"worklist: {exc}"}
    return {"ok": True, "error": None, "procedures": [asdict(p) for p in found]}


def outbox_summary() -> dict[str, Any] | None:
    """How the outbox stands (None: nothing was ever queued)."""
    try:
        jobs = outbox.jobs()
    except UserError as exc:
        return {"queued": 0, "sent": 0, "failed": 0, "why": str(exc)}
    if not jobs:
        return None
    waiting = [j for j in jobs if j.count(outbox.QUEUED) or j.awaiting()]
    return {"queued": sum(j.count(outbox.QUEUED) for j in jobs),
            "sent": sum(j.count(outbox.SENT) + j.count(outbox.COMMITTED) for j in jobs),
            "committed": sum(j.count(outbox.COMMITTED) for j in jobs),
            "awaiting": sum(len(j.awaiting()) for j in jobs),
            "failed": sum(j.count(outbox.FAILED) for j in jobs),
            "why": waiting[-1].last_error if waiting else ""}


class OutboxRetry:
    """Flushes the outbox in a thread of its own every :data:`RETRY_EVERY_S` while the service
    is idle (each job waits its own backoff)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._last = 0.0

    def poll(self, idle: bool) -> None:
        now = time.monotonic()
        if not idle or now - self._last < RETRY_EVERY_S or (
                self._thread is not None and self._thread.is_alive()):
            return
        self._last = now
        self._thread = threading.Thread(target=self._flush, daemon=True, name="outbox")
        self._thread.start()

    @staticmethod
    def _flush() -> None:
        try:
            config = dicomconfig.load()
            if config.pacs:
                outbox.flush(config, say=lambda s: print(f"outbox: {s}", file=sys.stderr,
                                                         flush=True))
        except (UserError, OSError) as exc:
            print(f"outbox: {exc}", file=sys.stderr, flush=True)
