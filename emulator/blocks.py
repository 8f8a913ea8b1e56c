"""The physics of a slice in fixed blocks of decays, run on the emulator's workers.

Every block is seeded from (seed, slice, stream, block), samples its own decay positions (or
crystals) and runs the photon kernel into its own deposit buffer, so the result does not depend
on how many threads run the blocks or in which order. The kernels release the GIL (nogil), so the
threads run in parallel; each block draws from its own generator state (:mod:`emulator.rng`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np

from emulator import records, rng
from infra.pool import Workers

#: Decays (or histories) per block.
BLOCK = 8192


def default_threads() -> int:
    """Threads for the physics: ``PETDAQ_EMULATOR_THREADS`` or every core."""
    value = os.environ.get("PETDAQ_EMULATOR_THREADS")
    return max(1, int(value)) if value else (os.cpu_count() or 1)


_WORKERS: dict[int, Workers] = {}


def workers(threads: int | None = None) -> Workers:
    """The emulator's shared workers for ``threads`` threads (default :func:`default_threads`)."""
    n = threads or default_threads()
    if n not in _WORKERS:
        _WORKERS[n] = Workers(n, "emulator")
    return _WORKERS[n]


class BlockRunner:
    """Runs a photon kernel over a slice's decays block by block on ``workers``."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.threads = workers.threads

    def run(self, key: list[int], times: np.ndarray, first_id: int,
            sample: Callable[[np.ndarray, int], np.ndarray], kernel: Callable, args: tuple,
            work: Callable[[], tuple], per_item: float) -> tuple[list[np.ndarray], np.ndarray]:
        """Deposits of every block (a list, in block order: the caller joins them once) and the
        counters summed over blocks.

        ``kernel(times, items, first_id, start, *args, dep, n_dep, counters, rs, *work())``
        with ``items = sample(rs, n)`` drawn first from the block's generator ``rs``. Every
        block's items are drawn before any block's photons are followed, so that the sampler's
        tables stay in cache while it runs.
        """
        n_blocks = math.ceil(times.size / BLOCK)

        def items(b: int) -> tuple[np.ndarray, np.ndarray]:
            rs = rng.state([*key, b])
            drawn = sample(rs, min((b + 1) * BLOCK, times.size) - b * BLOCK)
            return drawn, rs

        def block(b: int, drawn: np.ndarray, rs_after: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = b * BLOCK, min((b + 1) * BLOCK, times.size)
            cap = int((hi - lo) * per_item) + 1024
            while True:
                rs = rs_after.copy()
                counters = np.zeros(len(records.COUNTERS), np.int64)
                dep = np.empty(cap, records.DEPOSIT_DTYPE)
                done, n = kernel(times[lo:hi], drawn, first_id + lo, 0, *args, dep, 0, counters,
                                 rs, *work())
                if done == hi - lo:
                    return dep[:n], counters
                cap *= 2                   # the block overflowed: run it again with more room

        drawn = self.workers.map(items, n_blocks)
        parts = self.workers.map(lambda b: block(b, *drawn[b]), n_blocks)
        counters = np.zeros(len(records.COUNTERS), np.int64)
        for p in parts:
            counters += p[1]
        return [p[0] for p in parts], counters
