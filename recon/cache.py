"""An on-disk cache of arrays (sensitivity images), keyed by the text of what they depend on.

The folder is ``$BEDSIDE_PET_CACHE`` or ``~/.cache/bedside-pet``. Files are written atomically
(a temporary file in the same folder, then a rename), so a killed process or two processes
computing the same entry never leave half a file. An unwritable folder only disables the cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ENV_VAR = "BEDSIDE_PET_CACHE"


def cache_dir() -> Path:
    """The cache folder (not created)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "bedside-pet"


def cached_array(key: str, compute: Callable[[], np.ndarray], prefix: str = "array"
                 ) -> np.ndarray:
    """The array stored under ``key``, or ``compute()`` stored under it."""
    path = cache_dir() / f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pass
    array = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    except OSError:
        return array
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.chmod(tmp, 0o644)                      # mkstemp makes it private
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return array
