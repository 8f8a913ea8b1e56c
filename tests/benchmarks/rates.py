"""Throughput figures of a pytest-benchmark run, stored in ``extra_info`` for the JSON report and
CI's ratio check (daq/perf/benchcheck.py)."""

from __future__ import annotations


def record(benchmark, events: int, *, n_bytes: int | None = None, threads: int | None = None
           ) -> None:
    """``events_per_s`` of the median round (and of the best); MB/s for ``n_bytes``, per-thread
    figures for ``threads``. Nothing when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    t = stats.stats.median
    info = {"events": events, "seconds": t, "events_per_s": events / t,
            "events_per_s_best": events / stats.stats.min}
    if n_bytes is not None:
        info |= {"bytes": n_bytes, "mb_per_s": n_bytes / t / 1e6}
    if threads is not None:
        info |= {"threads": threads, "events_per_s_per_thread": events / t / threads}
    benchmark.extra_info.update(info)
