"""How many threads the reconstruction kernels use.

numba's thread count is a per-calling-thread setting, so :func:`set_threads` records the choice and
every public entry point applies it (:func:`apply_threads`) in the thread it runs in: a DAQ that
reconstructs in a worker thread gets the same setting as the main thread.
"""

from __future__ import annotations

import numba

from hw.errors import UserError

_threads: int | None = None


def max_threads() -> int:
    """The most threads numba can use in this process (NUMBA_NUM_THREADS, default all cores)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def set_threads(n: int | None) -> None:
    """Use ``n`` threads in the reconstruction kernels (None: all of :func:`max_threads`)."""
    global _threads
    if n is not None and not 1 <= int(n) <= max_threads():
        raise UserError(f"threads must be between 1 and {max_threads()}, got {n}")
    _threads = None if n is None else int(n)
    apply_threads()


def get_threads() -> int:
    """The number of threads the kernels will use."""
    return _threads if _threads is not None else max_threads()


def apply_threads() -> None:
    """Apply the chosen thread count to the calling thread (cheap; call before a kernel)."""
    numba.set_num_threads(get_threads())
