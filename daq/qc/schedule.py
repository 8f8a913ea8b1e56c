"""The daily QC on a schedule (``petdaq serve --qc-at HH:MM``): once a day, at or after that
local time, while no run is acquiring, ``petdaq qc`` runs as a child process; a day whose QC
was missed (the service was down at that time) gets it as soon as the service is up and idle."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from daq.qc.store import read_history
from infra.errors import UserError


def parse_time(text: str) -> dt.time:
    """``HH:MM`` (local time); one line for anything else."""
    try:
        return dt.datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise UserError(f"--qc-at {text!r}: give the local time as HH:MM, e.g. 06:00") from None


def _last_day(scanner: str) -> dt.date | None:
    """The local day of the scanner's latest QC in its history."""
    entries = read_history(scanner)
    if not entries or not entries[-1].get("created_utc"):
        return None
    return dt.datetime.fromisoformat(entries[-1]["created_utc"]).astimezone().date()


@dataclass
class DailyQc:
    """The schedule of one scanner's QC and the QC running now, if any."""

    at: dt.time
    scanner: str
    """A built-in name or a TOML path, as ``petdaq qc --scanner`` takes it."""
    out: Path
    seconds: float = 60.0
    name: str = ""
    """The scanner's name (its history's); default: ``scanner``."""
    last_day: dt.date | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.scanner
        if self.last_day is None:
            self.last_day = _last_day(self.name)

    def due(self, now: dt.datetime) -> bool:
        """Whether a QC should start at local time ``now``."""
        return self.proc is None and now.time() >= self.at and self.last_day != now.date()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self, now: dt.datetime, idle: bool) -> str | None:
        """Start the QC when due and ``idle``; when it has ended, its first line (``QC PASS:
        ...``, or why it could not run). Call it every few seconds."""
        if self.proc is not None and self.proc.poll() is not None:
            status, self.proc = self.proc.returncode, None
            self.log.seek(0)
            lines = [ln for ln in self.log.read().splitlines() if ln.strip()]
            self.log.close()
            said = [ln for ln in lines if ln.startswith("QC ")] or lines[-1:]
            return said[0] if said else f"the daily QC ended with status {status}"
        if idle and self.due(now):
            self.last_day = now.date()
            # its output (a line a finding: many for a failed module) to a file, never a pipe
            # that would fill and stall it
            self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed when the QC ends)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "petdaq", "qc", "--scanner", self.scanner, "--out",
                 str(self.out), "--duration", f"{self.seconds:g}"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, text=True,
                start_new_session=True)        # its acquisition's processes go with it
        return None

    def close(self) -> None:
        """End a QC that is running, with the processes it started."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
