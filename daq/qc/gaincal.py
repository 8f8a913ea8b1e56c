"""The Lu-176 gain calibration that a failed QC gain check offers, run by the DAQ service on the
latest QC's own blank (``petdaq calibrate QC_RUN --method lu176`` in a process of its own)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daq.qc.store import read_history
from infra.errors import UserError
from runstore.rundir import JOURNAL_FILE


@dataclass
class GainCalibration:
    """At most one calibration at a time; :meth:`poll` says how it ended."""

    scanner: str = ""
    run: str = ""
    state: str = ""
    """"" (none yet), ``running``, ``done`` or ``failed``."""
    message: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log: Any = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, scanner: str) -> None:
        """Calibrate ``scanner``'s gains from its latest QC's blank; one line why not."""
        if self.running:
            raise UserError(f"the gain calibration of {self.scanner} is running: wait for it")
        history = read_history(scanner)
        if not history:
            raise UserError(f"no QC of {scanner} to calibrate its gains from: run petdaq qc")
        run = Path(str(history[-1].get("run", "")))
        if not (run / JOURNAL_FILE).is_file():
            raise UserError(f"the latest QC's blank {run} is gone (no journal): run a QC again")
        self.scanner, self.run, self.state = scanner, str(run), "running"
        self.message = f"calibrating the gains of {scanner} from {run.name}"
        # its output to a file, never a pipe that would fill and stall it
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed when it ends)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petdaq", "calibrate", str(run), "--method", "lu176"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)

    def poll(self) -> str | None:
        """When the calibration has ended: its outcome (also in :meth:`as_dict`)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        status, self.proc = self.proc.returncode, None
        self.log.seek(0)
        lines = [ln.strip() for ln in self.log.read().splitlines() if ln.strip()]
        self.log.close()
        self.state = "done" if status == 0 else "failed"
        said = [ln for ln in lines if ln.startswith(("calibrated ", "stored "))]
        self.message = " ".join(said or lines[-2:]) if status == 0 else (
            lines[-1].removeprefix("petdaq: error: ") if lines
            else f"petdaq calibrate ended with status {status}")
        return self.message

    def as_dict(self) -> dict[str, str] | None:
        """What the status reply carries (None before any calibration)."""
        if not self.state:
            return None
        return {"scanner": self.scanner, "run": self.run, "state": self.state,
                "message": self.message}

    def close(self) -> None:
        """End a calibration that is running."""
        if self.running:
            self.proc.terminate()
            self.proc.wait(30)
