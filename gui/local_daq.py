"""A DAQ service the console starts for itself when no ``--connect HOST`` is given.

It is a separate process (``petdaq serve``) on free local ports, so that the console and the
acquisition never share a crash; the console attaches to it through ZeroMQ like to any remote
DAQ, and stops it when the window closes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalDaq:
    """``petdaq serve --monitor-port M --control-port C --out DIR`` as a child process."""

    def __init__(self, out_dir: str | Path, *, monitor_port: int | None = None,
                 control_port: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.monitor_port = monitor_port or free_port()
        self.control_port = control_port or free_port()
        self._log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (lives with the process)
        self._printed = ""
        command = [sys.executable, "-m", "petdaq", "serve",
                   "--monitor-port", str(self.monitor_port),
                   "--control-port", str(self.control_port), "--out", str(self.out_dir)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, env=os.environ.copy())

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.process.poll()

    def last_words(self) -> str:
        """The last line the process printed (for the operator when it dies), also after
        :meth:`stop`."""
        if not self._log.closed:
            self._log.flush()
            self._log.seek(0)
            self._printed = self._log.read().decode(errors="replace")
        lines = [ln.strip() for ln in self._printed.splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else ""

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop it as Ctrl-C would (a running scan is stopped and its run closed properly);
        kill it if it has not exited after ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.last_words()  # what it printed, kept for after the log is closed
        with contextlib.suppress(OSError):
            self._log.close()
