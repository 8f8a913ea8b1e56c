"""Worker threads for ``nogil`` kernels: tasks taken one at a time, the calling thread among them.

A static split of the work (numba's ``prange``) stalls the whole call when the operating system
deschedules one thread on a busy machine; here each worker takes the next task as soon as it is
done with its last, so a descheduled thread simply takes fewer. The tasks' results never depend
on which worker ran them, so the answer is the same for any number of threads.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from infra.errors import UserError

T = TypeVar("T")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None, what: str = "--threads") -> int:
    """``threads`` checked (1 or more; None: every available core)."""
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"{what} must be a whole number >= 1, got {threads!r}")
    return threads


def run_tasks(n_tasks: int, work: Callable[[int, int], None], n_threads: int,
              executor: ThreadPoolExecutor | None) -> int:
    """Call ``work(worker, task)`` once for every task in ``range(n_tasks)`` on up to
    ``n_threads`` threads: the calling thread is worker 0, the others come from ``executor``,
    and each takes the next task as soon as it is free. Returns the number of workers used
    (their ids are 0..n-1); re-raises the first exception of any worker once all have
    stopped."""
    n = max(1, min(int(n_threads), n_tasks))
    if executor is None or n == 1:
        for task in range(n_tasks):
            work(0, task)
        return 1
    tasks = itertools.count()  # next() is atomic under the GIL
    failed = threading.Event()

    def run(worker: int) -> None:
        while not failed.is_set():
            task = next(tasks)
            if task >= n_tasks:
                return
            try:
                work(worker, task)
            except BaseException:
                failed.set()
                raise

    futures = [executor.submit(run, w) for w in range(1, n)]
    error: BaseException | None = None
    try:
        run(0)
    except BaseException as exc:
        error = exc
    for f in futures:
        exc = f.exception()
        if error is None and exc is not None:
            error = exc
    if error is not None:
        raise error
    return n


class Clock(Protocol):
    """A thread's CPU clock (e.g. :class:`daq.pipeline.cpu.ThreadClock`): ``lap(part)`` charges the
    time since the last lap to ``part``."""

    def lap(self, part: str) -> None: ...


class Workers:
    """``threads`` compute threads: the caller's and ``threads - 1`` pool threads of its own.

    ``clock``: makes a CPU clock for each pool thread, given its name; each thread then charges
    its time waiting for work to ``wait`` and its tasks to the ``part`` of :meth:`run`, and the
    CPU seconds each calling thread spent in the calls of :meth:`run` that more than one worker
    shared (its share of the parallel work: its other work is serial) are kept in
    :attr:`shared_s`, by the thread's native id.
    """

    def __init__(self, threads: int | None = None, name: str = "workers",
                 clock: Callable[[str], Clock] | None = None) -> None:
        self.threads = check_threads(threads)
        self.name = name
        self._local = threading.local()
        self._clock = clock
        self._ids = itertools.count(1)
        self._pool = None
        self.shared_s: dict[int, float] = {}
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix=name,
                                            initializer=self._start_thread)

    def _start_thread(self) -> None:
        if self._clock is not None:
            self._local.clock = self._clock(f"{self.name} {next(self._ids)}")

    def run(self, n_tasks: int, work: Callable[[int, int], None], part: str = "work") -> int:
        """:func:`run_tasks` on these workers; the pool threads charge it to ``part``."""
        if self._clock is None or self._pool is None:
            return run_tasks(n_tasks, work, self.threads, self._pool)

        def clocked(worker: int, task: int) -> None:
            clock = getattr(self._local, "clock", None) if worker else None
            if clock is not None:
                clock.lap("wait")
            try:
                work(worker, task)
            finally:
                if clock is not None:
                    clock.lap(part)

        caller, cpu0 = threading.get_native_id(), time.thread_time()
        used = run_tasks(n_tasks, clocked, self.threads, self._pool)
        if used > 1:        # one task on one worker is the caller's own serial work
            self.shared_s[caller] = self.shared_s.get(caller, 0.0) + time.thread_time() - cpu0
        return used

    def map(self, fn: Callable[[int], T], n_tasks: int, part: str = "work") -> list[T]:
        """``[fn(0), fn(1), ..., fn(n_tasks - 1)]``, computed on these workers."""
        out: list = [None] * n_tasks

        def work(_worker: int, task: int) -> None:
            out[task] = fn(task)

        self.run(n_tasks, work, part)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


SERIAL = Workers(1)
"""One worker: the calling thread alone."""
