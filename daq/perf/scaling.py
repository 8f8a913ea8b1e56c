"""``petdaq bench --scaling``: the live chain and the emulator on 1, 2, 4, ... up to every core.

For each thread count: the end-to-end zero-loss rate (:func:`daq.perf.e2e.run_chain`, the DAQ's
processing on that many threads), the DAQ's CPU per event, and the emulator's singles/s (brain
phantom, 20 MBq, the emulator on that many threads); each with its parallel efficiency, rate over
(threads x the one-thread rate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hw.scanner import Scanner

#: Emulated seconds of the brain phantom at 20 MBq timed per thread count, by mode.
EMULATOR_S = {"quick": 0.03, "default": 0.1, "full": 0.3}
#: Seconds each end-to-end chain is sustained, by mode.
CHAIN_S = {"quick": 3.0, "default": 6.0, "full": 20.0}


@dataclass
class ScalingPoint:
    """One thread count."""

    threads: int
    e2e_singles_per_s: float
    zero_loss: bool
    daq_cpu_ns_per_event: float
    emulator_singles_per_s: float
    limited_by: str = ""
    """Which side limited the chain (:func:`daq.perf.e2e.limited_by`)."""
    processing_on_cpu: float = 0.0
    """The chain's processing thread: its CPU over its wall (:func:`daq.perf.e2e.daq_shares`)."""
    workers_on_cpu: float = 0.0
    """The chain's workers: their CPU over their wall, the mean."""
    e2e_efficiency: float = 1.0
    emulator_efficiency: float = 1.0


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... below ``cores``, then ``cores``."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, cores]


def emulator_rate(scanner: Scanner, threads: int, seconds: float) -> float:
    """Singles/s of the emulator on ``threads`` threads (brain, 20 MBq, after a warm-up)."""
    import emulator

    emulator.simulate(scanner, "brain", "F-18", 20.0, 0.002, seed=2, threads=threads)
    t0 = time.perf_counter()
    sim = emulator.simulate(scanner, "brain", "F-18", 20.0, seconds, seed=1, threads=threads)
    return sim.raw.size / (time.perf_counter() - t0)


def measure(scanner: Scanner, boards: list, mode: str, cores: int,
            progress=lambda s: None) -> list[ScalingPoint]:
    """Every thread count of :func:`thread_counts` (``boards``: the recording the chain
    replays, as in ``petdaq bench``)."""
    from daq.perf.e2e import daq_shares, run_chain

    points = []
    for n in thread_counts(cores):
        progress(f"scaling: {n} thread{'s' if n > 1 else ''}")
        r = run_chain(scanner, boards, CHAIN_S[mode], threads=n)
        shares = daq_shares(r["cpu"]["daq"])
        points.append(ScalingPoint(
            n, r["singles_per_s"] if r["zero_loss"] else 0.0, r["zero_loss"],
            r["cpu"]["daq"]["process_cpu_s"] / max(r["singles"], 1) * 1e9,
            emulator_rate(scanner, n, EMULATOR_S[mode]), r["limited_by"],
            shares.processing_on_cpu, shares.workers_on_cpu))
    one = points[0]
    for p in points:
        p.e2e_efficiency = p.e2e_singles_per_s / (p.threads * one.e2e_singles_per_s or 1.0)
        p.emulator_efficiency = p.emulator_singles_per_s / (
            p.threads * one.emulator_singles_per_s or 1.0)
    return points


def format_table(points: list[ScalingPoint]) -> list[str]:
    """The scaling table as text lines."""
    lines = [f"{'threads':>7s} {'end to end':>12s} {'eff.':>5s} {'DAQ CPU':>9s} "
             f"{'emulator':>12s} {'eff.':>5s} {'on a CPU:':>10s} {'':>8s}  chain limited by",
             f"{'':>7s} {'M singles/s':>12s} {'':>5s} {'ns/event':>9s} {'M singles/s':>12s} "
             f"{'':>5s} {'processing':>10s} {'workers':>8s}"]
    for p in points:
        e2e = f"{p.e2e_singles_per_s / 1e6:12.2f}" if p.zero_loss else f"{'LOSS':>12s}"
        lines.append(f"{p.threads:7d} {e2e} {p.e2e_efficiency:5.2f} "
                     f"{p.daq_cpu_ns_per_event:9.0f} {p.emulator_singles_per_s / 1e6:12.2f} "
                     f"{p.emulator_efficiency:5.2f} {p.processing_on_cpu:10.0%} "
                     f"{p.workers_on_cpu:8.0%}  {p.limited_by}")
    return lines
