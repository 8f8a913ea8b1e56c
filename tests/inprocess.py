"""``petdaq`` run through its ``main`` in the test's own process: the answer of a child process
(status, standard output and error) without an interpreter's start and the kernels' load."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
from pathlib import Path

from petdaq.cli import main
from recon import threads


def petdaq(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """``petdaq ARGS`` (with ``BEDSIDE_PET_HOME`` set to ``home`` while it runs): its exit
    status and what it printed, as :func:`subprocess.run` with ``capture_output`` gives them.
    The signal handlers, the environment and the kernels' thread count are restored after it."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    env = dict(os.environ)
    n_threads = threads._threads   # a --threads option sets it for the process
    if home is not None:
        os.environ["BEDSIDE_PET_HOME"] = str(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exc:   # argparse's usage errors
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(env)
        for s, h in handlers.items():
            signal.signal(s, h)
        threads.set_threads(n_threads)
    return subprocess.CompletedProcess(["petdaq", *args], status, out.getvalue(),
                                       err.getvalue())
