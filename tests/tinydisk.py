"""A real full disk for tests: a small tmpfs mounted in the test's folder (root only; the test is
skipped elsewhere, saying why)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tiny_tmpfs(folder: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted below ``folder`` while the block runs (ENOSPC when full)."""
    mnt = folder / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                        capture_output=True).returncode == 0
    if not ok:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
