"""The physics of a slice in fixed blocks of decays, run on a pool of threads.

Every block is seeded from (seed, slice, stream, block), samples its own decay positions (or
crystals) and runs the photon kernel into its own deposit buffer, so the result does not depend
on how many threads run the blocks or in which order. The kernels release the GIL (nogil), so the
threads run in parallel; each block draws from its own generator state (:mod:`emulator.rng`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emulator import records, rng

#: Decays (or histories) per block.
BLOCK = 8192


def default_threads() -> int:
    """Threads for the physics: ``PETDAQ_EMULATOR_THREADS`` or every core."""
    value = os.environ.get("PETDAQ_EMULATOR_THREADS")
    return max(1, int(value)) if value else (os.cpu_count() or 1)


_POOLS: dict[int, ThreadPoolExecutor] = {}


class BlockRunner:
    """Runs a photon kernel over a slice's decays block by block (on a shared pool of
    ``threads`` threads; 1: in the calling thread)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        self._pool = None
        if self.threads > 1:
            if self.threads not in _POOLS:
                _POOLS[self.threads] = ThreadPoolExecutor(self.threads,
                                                          thread_name_prefix="emulator")
            self._pool = _POOLS[self.threads]

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

        if self._pool is None or n_blocks < 2:
            drawn = [items(b) for b in range(n_blocks)]
            parts = [block(b, *drawn[b]) for b in range(n_blocks)]
        else:
            drawn = list(self._pool.map(items, range(n_blocks)))
            parts = list(self._pool.map(lambda b: block(b, *drawn[b]), range(n_blocks)))
        counters = np.zeros(len(records.COUNTERS), np.int64)
        for p in parts:
            counters += p[1]
        return [p[0] for p in parts], counters
