"""numba's on-disk cache of compiled kernels, keyed by the product's source.

numba checks a cached kernel against the time stamp of the kernel's own file only: a kernel that
inlines a helper from another module (the emulator's photon kernels inline the random numbers,
the flight and the ring) keeps its old machine code when only the helper changes, and then
computes with the old helper. So each version of the product's source gets its own cache
directory, ``$XDG_CACHE_HOME/bedside-pet/numba/<hash of the product's packages>``
(``~/.cache`` when XDG_CACHE_HOME is unset), and by the native libraries the kernels link
(:mod:`infra.accel`); the older ones are removed. A ``NUMBA_CACHE_DIR``
set by the user is left as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numba

from infra import accel

#: The packages whose source the kernels are compiled from.
PACKAGES = ("infra", "hw", "coincidence", "emulator", "runstore", "recon", "daq")
#: Cache directories of other source versions kept besides the current one.
KEEP_OLD = 2


def source_digest(root: Path) -> str:
    """A short hash of every Python file of :data:`PACKAGES` under ``root`` and of the native
    libraries found (:data:`infra.accel.FEATURES`)."""
    h = hashlib.sha256(accel.FEATURES.encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _base() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home) / "bedside-pet" / "numba"


def configure() -> str | None:
    """Point numba's cache at this source version's directory; returns it (None when the user
    chose one with NUMBA_CACHE_DIR)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    digest = source_digest(Path(__file__).resolve().parent.parent)
    for base in (_base(), Path(tempfile.gettempdir()) / "bedside-pet-numba"):
        path = base / digest
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            _prune(base, keep=path)
            numba.config.CACHE_DIR = str(path)
            return str(path)
    return None


def _prune(base: Path, keep: Path) -> None:
    """Remove all but the newest KEEP_OLD cache directories of other source versions."""
    old = sorted((p for p in base.iterdir() if p.is_dir() and p != keep),
                 key=lambda p: p.stat().st_mtime, reverse=True)
    for p in old[KEEP_OLD:]:
        shutil.rmtree(p, ignore_errors=True)
