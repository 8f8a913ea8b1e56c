"""The DAQ's CPU per single against two baselines on its recording: one measure for bench and CI.

The chain (:func:`daq.perf.e2e.run_chain`) replays one recording's frames for
:data:`CHAIN_S` seconds; its CPU per single is every DAQ thread's CPU time (system time
included) over the singles it took. The baselines are timed on that recording, in the same
process, best of :data:`BASELINE_REPEATS`: the NumPy sorter with the same semantics on the
recording's singles (nominal calibration, the scanner's window, delay and sectors), whose cost
per single is the CPU's arithmetic; and a copy of the recording's wire frames, whose cost per
single is the memory's, so a machine with slow memory does not decide the ratio alone. The
processing thread's serial work is its CPU outside the parallel sections it shares with the
workers (:attr:`infra.pool.Workers.shared_s`) and outside its waits for data: the merge's
release, the sorter's own bookkeeping, the histograms, the list-mode write, the hand-over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from daq.pipeline.cpu import IDLE_PARTS
from hw.scanner import Scanner

#: Seconds the chain runs for one measure (three runs agree within 10 %: docs/performance.md).
CHAIN_S = 5.0
#: The baselines' repeats (their best: the least disturbed).
BASELINE_REPEATS = 3


@dataclass(frozen=True)
class CostPerSingle:
    """The DAQ's CPU per single and the baselines' time per single on the same recording (ns)."""

    daq_ns: float
    numpy_sorter_ns: float
    frame_copy_ns: float
    singles: int
    """The singles the chain took."""
    serial_ns: float = float("nan")
    """The processing thread's serial work per single."""

    @property
    def of_numpy_sorter(self) -> float:
        """The DAQ's CPU per single over the NumPy sorter's time per single."""
        return self.daq_ns / self.numpy_sorter_ns

    @property
    def of_frame_copy(self) -> float:
        """The DAQ's CPU per single over a memory copy's time per single."""
        return self.daq_ns / self.frame_copy_ns

    def line(self) -> str:
        return (f"DAQ CPU per single: {self.daq_ns:.1f} ns = {self.of_numpy_sorter:.2f} x the "
                f"NumPy sorter's time per single ({self.numpy_sorter_ns:.1f} ns), "
                f"{self.of_frame_copy:.0f} x a copy of the frames' ({self.frame_copy_ns:.2f} ns); "
                f"the processing thread's serial work {self.serial_ns:.1f} ns; "
                f"{self.singles} singles")


def best_ns_per_single(fn: Callable[[], Any], singles: int, repeats: int = BASELINE_REPEATS
                       ) -> float:
    """The best time of ``repeats`` calls of ``fn`` (after one not counted), per single (ns)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / max(singles, 1) * 1e9


def numpy_sorter_ns(scanner: Scanner, raw: np.ndarray) -> float:
    """The NumPy sorter's time per single on a recording's RAW singles (nominal calibration,
    the scanner's window, delay and sectors)."""
    from coincidence.baseline import numpy_take_all_goods
    from daq.pipeline.process.calibration import Calibration

    singles = Calibration.nominal(scanner).apply(raw)
    acq = scanner.acquisition
    args = (scanner.crystal_module, scanner.n_modules, acq["coincidence_window_ps"],
            acq["energy_window_kev"], acq["delay_ps"], acq["min_sector_difference"])
    return best_ns_per_single(lambda: numpy_take_all_goods(singles, *args), singles.size)


def frame_copy_ns(scanner: Scanner, boards: list[np.ndarray]) -> float:
    """A copy of a recording's wire frames, per single (ns)."""
    from hw import wire

    frames = [wire.encode(b, board=k, first_seq=0, scanner=scanner) for k, b in enumerate(boards)]
    return best_ns_per_single(lambda: [bytes(memoryview(f)) for f in frames],
                              sum(b.size for b in boards))


def of_chain(scanner: Scanner, recording: Any, chain: dict[str, Any]) -> CostPerSingle:
    """The cost of a chain run (:func:`daq.perf.e2e.run_chain` of ``recording``'s boards, an
    emulator's :class:`emulator.engine.Simulation`) against the baselines timed now on it."""
    daq_s = chain["cpu"]["daq"]["process_cpu_s"]
    singles = max(chain["singles"], 1)
    return CostPerSingle(daq_s / singles * 1e9, numpy_sorter_ns(scanner, recording.raw),
                         frame_copy_ns(scanner, recording.raw_per_board), chain["singles"],
                         serial_s(chain["cpu"]["daq"]) / singles * 1e9)


def serial_s(daq: dict[str, Any]) -> float:
    """The processing thread's CPU seconds outside the parallel sections and its waits, from a
    DAQ's CPU split (:attr:`daq.pipeline.acquisition.Acquisition.cpu_split`)."""
    t = daq["threads"]["processing"]
    idle = sum(t["parts"].get(p, 0.0) for p in IDLE_PARTS)
    return max(t["cpu_s"] - t.get("shared_s", 0.0) - idle, 0.0)


def measure(scanner: Scanner, recording: Any, seconds: float = CHAIN_S
            ) -> tuple[CostPerSingle, dict[str, Any]]:
    """(the cost, the chain's result) of a chain of ``seconds`` replaying ``recording``."""
    from daq.perf.e2e import run_chain

    chain = run_chain(scanner, recording.raw_per_board, seconds)
    return of_chain(scanner, recording, chain), chain
