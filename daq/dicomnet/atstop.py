"""A run's DICOM objects sent at its stop, as ``dicom.toml``'s ``[send] at_stop`` says: queued in
the outbox and tried once; a node that does not answer never fails the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from daq.dicomnet import config as dicomconfig
from daq.dicomnet import outbox
from infra.errors import UserError

#: Seconds a node may take to answer at a run's stop, and to report its commitment (the outbox
#: retries, and asks again, later).
AT_STOP_TIMEOUT_S = 5.0


def wanted(success: bool) -> bool:
    """Whether this run's objects are to be sent at its stop (a bad configuration: no)."""
    try:
        config = dicomconfig.load()
    except UserError:
        return False
    return bool(config.pacs) and (config.at_stop == "always" or
                                  (config.at_stop == "on-success" and success))


def send_at_stop(run: Path, success: bool, say: Callable[[str], None] = print) -> None:
    """Queue and try to send ``run``'s DICOM objects when the site asks for it."""
    try:
        config = dicomconfig.load()
        if not wanted(success):
            return
        jobs = outbox.enqueue(run, list(config.pacs))
        quick = replace(config, commit_wait_s=min(config.commit_wait_s, AT_STOP_TIMEOUT_S))
        tried = outbox.flush(quick, force=True, only=jobs, say=say, timeout_s=AT_STOP_TIMEOUT_S)
    except (UserError, OSError) as exc:
        say(f"send at stop: {exc}")
        return
    left = sum(j.count(outbox.QUEUED) for j in tried)
    if left:
        say(f"send at stop: {left} object(s) queued in the outbox (petdaq send --status)")
