"""How many threads the reconstruction kernels use, and the thread pool of the block-parallel ones.

numba's thread count is a per-calling-thread setting, so :func:`set_threads` records the choice and
every public entry point applies it (:func:`apply_threads`) in the thread it runs in: a DAQ that
reconstructs in a worker thread gets the same setting as the main thread.

:func:`parallel_blocks` runs ``nogil`` numba kernels over blocks of work on that many threads (the
calling thread and a shared pool), each thread taking the next block when it is done with its
last: unlike a static split (numba's ``prange``), a thread that the OS deschedules (a busy machine)
takes fewer blocks instead of stalling the whole call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numba

from infra.errors import UserError
from infra.pool import run_tasks

T = TypeVar("T")
R = TypeVar("R")

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

KERNELS = threading.RLock()
"""Held by a thread that runs reconstructions beside another (the DAQ's live image and live
frames): numba's ``workqueue`` threading layer, the one always present, aborts the process when
two threads run ``parallel=True`` kernels at once."""


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


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, max_threads() - 1), thread_name_prefix="recon")
        return _pool


def parallel_blocks(n_blocks: int, work: Callable[[int, int], None],
                    n_threads: int | None = None) -> int:
    """Call ``work(worker, block)`` once for every block in ``range(n_blocks)``, on ``n_threads``
    threads (default :func:`get_threads`): the calling thread is worker 0, the others come from a
    shared pool, and each takes the next block as soon as it is free (:func:`infra.pool.run_tasks`).
    ``work`` should spend its time in ``nogil`` code. Returns the number of workers (0..n-1 are
    the worker ids used); re-raises the first exception of any worker after all have stopped."""
    n = get_threads() if n_threads is None else int(n_threads)
    return run_tasks(n_blocks, work, n, _executor() if n > 1 else None)


def parallel_map(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]`` on :func:`get_threads` threads
    (:func:`parallel_blocks`), in the items' order: for ``function`` that spends its time
    without the GIL (scipy.ndimage's resampling)."""
    chosen = list(items)
    results: list[R | None] = [None] * len(chosen)

    def work(_worker: int, k: int) -> None:
        results[k] = function(chosen[k])

    parallel_blocks(len(chosen), work)
    return results  # type: ignore[return-value]
