"""One process compiles a cached kernel that several need at once; the others wait and load it.

numba compiles a kernel on its first call and saves the machine code in its disk cache, but two
processes that miss the cache together (test workers, Dask workers, the DAQ's children on a new
machine or after a change) each compile it. With :func:`install`, a process that misses the
cache takes the kernel's lock file (``<kernel>.lock`` beside its index, ``flock``) before it
compiles and lets it go once the machine code is saved; a process that finds the lock taken waits
and then loads what the other saved. The lock goes with its process if that dies; a compilation
that fails keeps it until the process exits, so a waiter gives up after :data:`WAIT_S` and
compiles the kernel itself.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import IO, Any

from numba.core import caching

#: The longest a process waits for another's compilation of a kernel before compiling it too.
WAIT_S = 180.0
#: How often a waiting process tries the lock.
POLL_S = 0.05

_held: dict[str, IO[str]] = {}
"""The locks this process holds, by path: taken at a cache miss, let go when the kernel is
saved. numba's global compiler lock is held from the miss to the save, so one thread at a time
reaches them."""

_cache = caching.FunctionCache
_load, _save = _cache.load_overload, _cache.save_overload


def install() -> None:
    """Make every cached kernel of this process take its lock to compile (idempotent)."""
    _cache.load_overload, _cache.save_overload = _load_overload, _save_overload


def lock_path(cache: Any) -> str:
    """The lock file of a kernel's cache: beside its index, named after it."""
    return os.path.join(cache.cache_path, cache._impl.filename_base + ".lock")


def _load_overload(self: Any, sig: Any, target_context: Any) -> Any:
    data = _load(self, sig, target_context)
    path = lock_path(self)
    if data is not None or path in _held:  # found, or this process is compiling it already
        return data
    lock = _take(path)
    if lock is None:
        return None
    data = _load(self, sig, target_context)  # saved by the process this one waited for
    if data is not None:
        lock.close()
        return data
    _held[path] = lock
    return None


def _save_overload(self: Any, sig: Any, data: Any) -> None:
    try:
        _save(self, sig, data)
    finally:
        lock = _held.pop(lock_path(self), None)
        if lock is not None:
            lock.close()


def _take(path: str) -> IO[str] | None:
    """The lock at ``path``, once no other process holds it; None if it cannot be opened or
    stays taken for :data:`WAIT_S`."""
    try:
        fh = open(path, "a")  # noqa: SIM115 (held until the kernel is saved)
    except OSError:
        return None
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                return None
            time.sleep(POLL_S)
        except OSError:  # a file system without locks: compile as numba would
            fh.close()
            return None
