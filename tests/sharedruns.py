"""Runs that several test modules read, made once per test session whichever xdist worker asks
first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]) -> Path:
    """``petdaq run ARGS --out DIR --name NAME`` made once per test session, by whichever xdist
    worker asks first (the others wait on a lock and read the same run); copy it before
    writing into it."""
    import fcntl
    import subprocess
    import sys

    session = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = (tmp_path_factory.getbasetemp().parent / f"shared-{session}" if session
            else tmp_path_factory.getbasetemp() / "shared")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").is_file():
            r = subprocess.run([sys.executable, "-m", "petdaq", "run", *args, "--out", str(root),
                                "--name", name], capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, r.stderr
            (root / f"{name}.done").touch()
    return root / name


def lu177_cylinder_at_72_h(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s SPECT scan of a uniform Lu-177 cylinder of 1000 MBq, 72 h after its injection
    (patient P1): the dosimetry study's second time point and the quantification's cylinder."""
    import datetime as dt

    injection = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=72)).isoformat(timespec="seconds")
    return shared_run(tmp_path_factory, "lu177-cylinder-72h", [
        "--scanner", "spect-dual-head", "--phantom", "cylinder", "--nuclide", "Lu-177",
        "--activity-mbq", "1000", "--duration", "10", "--fast", "--no-recon",
        "--injection-time", injection, "--patient-id", "P1"])
