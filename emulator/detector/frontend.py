"""A slice's electronics module by module on the workers: the scanner's dead-time units are
independent (dead time per unit, pile-up per crystal or per head), so each unit's deposits go
through its front end and digitizer on their own, with their own random numbers (seeded from the
run's seed, the slice and the unit), and the units' singles are then merged in time.

The events do not depend on the number of threads: each unit's work is the same whoever runs it,
and the merge orders by measured time, ties by unit and then by the unit's own order.
"""

from __future__ import annotations

import numpy as np

from emulator import records, rng
from emulator.detector import electronics
from emulator.detector.electronics import Digitizer, FrontEnd, State
from emulator.jit import kernel
from hw.dtypes import RAW_DTYPE, join, take
from infra.pool import Workers

#: Random stream of a slice's electronics (the others: 0 decay times, 2 source, 3 Lu-176).
STREAM = 4
#: Singles per part of the units' merge.
MERGE_PART = 1 << 14


@kernel
def _bucket(dep, module_of, n_modules, out, offsets):
    """Deposits in the order of their unit (``module_of[crystal]``), each unit's in their
    order: into ``out``, with ``offsets[m]:offsets[m + 1]`` the deposits of unit m."""
    counts = np.zeros(n_modules + 1, np.int64)
    for i in range(dep.size):
        counts[module_of[dep[i].crystal] + 1] += 1
    for m in range(n_modules):
        counts[m + 1] += counts[m]
    offsets[:] = counts
    for i in range(dep.size):
        m = module_of[dep[i].crystal]
        out[counts[m]] = dep[i]
        counts[m] += 1


class Bucketed:
    """One block's deposits sorted by dead-time unit."""

    def __init__(self, dep: np.ndarray, fe: FrontEnd) -> None:
        self.deposits = np.empty_like(dep)
        self.offsets = np.zeros(fe.n_modules + 1, np.int64)
        _bucket(dep, fe.module_of, fe.n_modules, self.deposits, self.offsets)

    @classmethod
    def restored(cls, deposits: np.ndarray, offsets: np.ndarray) -> Bucketed:
        """A block's bucketed deposits as saved (``deposits`` and ``offsets``)."""
        block = cls.__new__(cls)
        block.deposits, block.offsets = deposits, offsets
        return block

    def of(self, m: int) -> np.ndarray:
        return self.deposits[self.offsets[m]:self.offsets[m + 1]]


class FrontEnds:
    """Every dead-time unit's front end and digitizer, slice after slice: what each unit carries
    to the next slice (deposits after the slice's end, singles still integrating)."""

    def __init__(self, fe: FrontEnd, dig: Digitizer, n_crystals: int, seed: int, truth: bool,
                 workers: Workers) -> None:
        self.fe, self.dig, self.seed, self.truth, self.workers = fe, dig, seed, truth, workers
        self.state: State = electronics.initial_state(fe, n_crystals)
        self.carry = [np.zeros(0, records.DEPOSIT_DTYPE)] * fe.n_modules
        self.held = [np.zeros(0, records.PENDING_DTYPE)] * fe.n_modules

    def slice(self, k: int, blocks: list[Bucketed], t_b: int, last: bool
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Slice ``k``'s deposits (its blocks, by unit) through every unit up to its end ``t_b``
        ps; returns the singles (RAW_DTYPE, time-ordered), their truth, the counters and the
        bound up to which the singles are complete."""
        fe = self.fe
        bound = t_b if last else t_b - fe.integration_ps - fe.jitter_clip_ps
        units = self.workers.map(lambda m: self._unit(k, m, blocks, t_b, last, bound),
                                 fe.n_modules)
        counters = np.zeros(len(records.COUNTERS), np.int64)
        for m, (_raw, _truth, _key, carry, held, c) in enumerate(units):
            self.carry[m], self.held[m] = carry, held
            counters += c
        raw, truth = _merged(units, self.truth, self.workers)
        return raw, truth, counters, bound

    def _unit(self, k: int, m: int, blocks: list[Bucketed], t_b: int, last: bool, bound: int
              ) -> tuple:
        """Unit ``m`` of slice ``k``: its carried and new deposits in time order through the
        front end, then the digitizer for the singles complete before ``bound``."""
        dep = join([self.carry[m], *(b.of(m) for b in blocks)], records.DEPOSIT_DTYPE)
        t = np.ascontiguousarray(dep["t"])
        order = np.argsort(t, kind="stable")
        n_now = int(np.count_nonzero(t < t_b))  # the first n_now of order
        carry = dep[:0] if last else take(dep, order[n_now:])
        held = self.held[m]
        out = np.empty(held.size + n_now, records.PENDING_DTYPE)
        out[:held.size] = held
        rs = rng.state([self.seed, k, STREAM, m])
        counters = np.zeros(len(records.COUNTERS), np.int64)
        n = electronics.process(dep, order[:n_now], held.size, out, self.fe, self.state,
                                counters, rs)
        raw = np.empty(n, RAW_DTYPE)
        truth = np.empty(n if self.truth else 0, records.TRUTH_DTYPE)
        key = np.empty(n, np.int64)
        rest = np.empty(n, records.PENDING_DTYPE)
        n_out, n_held = electronics.readout(out[:n], bound, self.dig, rs, raw, truth, rest, key)
        counters[records.SINGLES] += n_out
        return (raw[:n_out], truth[:n_out], key[:n_out], carry,
                rest[:0] if last else rest[:n_held].copy(), counters)


def _merged(units: list[tuple], truth: bool, workers: Workers) -> tuple[np.ndarray, np.ndarray]:
    """The units' singles (each in the order of its measured times) in the order of measured
    time, ties by unit then by the unit's order: a stable sort of the units one after the other,
    done by ranges of measured time on the workers (equal times never split)."""
    keys = [u[2] for u in units]
    n = sum(k.size for k in keys)
    n_parts = max(1, min(2 * workers.threads, n // MERGE_PART))
    bounds = np.zeros(0, np.int64)
    if n_parts > 1:
        sample = np.sort(np.concatenate([k[::max(1, k.size * n_parts // 256)] for k in keys]))
        bounds = np.unique(sample[(np.arange(1, n_parts) * sample.size) // n_parts])
    cuts = [np.concatenate(([0], np.searchsorted(k, bounds), [k.size])) for k in keys]
    sizes = np.array([sum(int(c[p + 1] - c[p]) for c in cuts) for p in range(bounds.size + 1)])
    at = np.concatenate(([0], np.cumsum(sizes)))
    raw = np.empty(n, RAW_DTYPE)
    tr = np.empty(n if truth else 0, records.TRUTH_DTYPE)

    def part(p: int) -> None:
        spans = [(u, int(c[p]), int(c[p + 1])) for u, c in zip(units, cuts, strict=True)]
        order = np.argsort(np.concatenate([u[2][a:b] for u, a, b in spans]), kind="stable")
        raw[at[p]:at[p + 1]] = take(join([u[0][a:b] for u, a, b in spans], RAW_DTYPE), order)
        if truth:
            tr[at[p]:at[p + 1]] = take(join([u[1][a:b] for u, a, b in spans],
                                            records.TRUTH_DTYPE), order)

    workers.map(part, bounds.size + 1)
    return raw, tr
