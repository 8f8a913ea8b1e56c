"""Where a run's CPU time goes: seconds per thread, and per part of each thread's work.

Measured, not estimated: each DAQ thread reads its own CPU clock (``time.thread_time()``,
CLOCK_THREAD_CPUTIME_ID: user + system time of that thread only) when it starts, between the
parts of its loop (:meth:`ThreadClock.lap`) and when it ends; a thread still running at the
report is read from ``/proc`` (never through its clock id: a thread that has just ended would
crash the reading). Each clock also keeps the
thread's kernel time and minor page faults (``getrusage(RUSAGE_THREAD)``; ``/proc`` for a thread
still running at the report), which :func:`format_split` prints per thread: a regression in
system time or in fresh memory shows where it came from. Threads the DAQ does
not run itself (ZeroMQ's I/O thread, the main thread) are read from
``/proc/self/task/<tid>/stat`` (utime + stime, in clock ticks) at the start and the end. The
process total is ``time.process_time()`` over the same interval: the threads sum to at most the
total, and ``other_s`` is what no thread accounted for (threads that came and went without a
clock).

A CPU second is not a wall second: a thread that waits for the GIL, for a core or for data does
not run. A clock therefore also keeps wall time per part, and ``busy`` (CPU / wall over the
thread's life) tells a thread that is always working (about 1) from one that mostly waits; a
thread with work waiting (little wall time in its ``wait`` part) and ``busy`` well below 1 is
short of CPU.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)


def _usage(who: int | None) -> tuple[float, int]:
    """(system CPU seconds, minor page faults) of the calling thread or of the process."""
    if who is None:
        return 0.0, 0
    r = resource.getrusage(who)
    return r.ru_stime, r.ru_minflt


def task_cpu_s(only: int | None = None) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every live thread of this process (or of the thread
    ``only``): {tid: (name, s)}.

    Empty where ``/proc`` is not there (not Linux)."""
    return {tid: (u.name, u.cpu_s) for tid, u in task_usage(only).items()}


class TaskUsage(NamedTuple):
    """A thread's totals from ``/proc/self/task/<tid>/stat``."""

    name: str
    cpu_s: float
    """User + system CPU seconds."""
    system_s: float
    page_faults: int
    """Minor page faults."""


def task_usage(only: int | None = None) -> dict[int, TaskUsage]:
    """:class:`TaskUsage` of every live thread of this process (or of the thread ``only``),
    by tid; empty where ``/proc`` is not there (not Linux)."""
    out: dict[int, TaskUsage] = {}
    base = Path("/proc/self/task")
    try:
        tids = [str(only)] if only is not None else os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        try:
            stat = (base / tid / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        # "tid (name) state ..." -- the name may hold spaces and parentheses
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        utime, stime = int(fields[11]) * _TICK_S, int(fields[12]) * _TICK_S
        out[int(tid)] = TaskUsage(name, utime + stime, stime, int(fields[7]))
    return out


class ThreadClock:
    """One thread's CPU (and wall) time, split into named parts: call :meth:`lap` after each
    part, :meth:`close` when the thread ends. Made and used by that thread only."""

    def __init__(self, meter: CpuMeter, name: str) -> None:
        self.meter, self.name = meter, name
        self.tid = threading.get_native_id()
        self.closed = False
        self._cpu0 = self._cpu = time.thread_time()
        self._wall0 = self._wall = time.perf_counter()
        self._sys0, self._faults0 = _usage(_RUSAGE_THREAD)
        self._sys = self._faults = 0.0
        self._last_faults = self._faults0
        self.parts: dict[str, float] = {}
        self.wall_parts: dict[str, float] = {}
        self.fault_parts: dict[str, int] = {}

    def lap(self, part: str) -> None:
        """Charge the time (and the page faults) since the last lap, or the start, to
        ``part``."""
        cpu, wall = time.thread_time(), time.perf_counter()
        sys_s, faults = _usage(_RUSAGE_THREAD)
        self.parts[part] = self.parts.get(part, 0.0) + cpu - self._cpu
        self.wall_parts[part] = self.wall_parts.get(part, 0.0) + wall - self._wall
        self.fault_parts[part] = self.fault_parts.get(part, 0) + faults - self._last_faults
        self._cpu, self._wall, self._last_faults = cpu, wall, faults
        # the totals so far: a pool thread that ends without closing its clock keeps them
        self._sys, self._faults = sys_s - self._sys0, faults - self._faults0

    def close(self, part: str = "other") -> None:
        """The thread ends: charge the rest to ``part`` and hand the totals to the meter."""
        self.lap(part)
        sys_s, faults = _usage(_RUSAGE_THREAD)
        self._sys, self._faults = sys_s - self._sys0, faults - self._faults0
        self.closed = True

    def summary(self) -> dict[str, Any]:
        """This thread's totals; for a thread still running, its CPU clock read now."""
        cpu, wall = self._cpu - self._cpu0, self._wall - self._wall0
        if not self.closed:
            # from /proc, never through the thread's clock id: reading the clock of a thread
            # that has ended crashes the process (pthread_getcpuclockid on a freed thread)
            if self.tid == threading.get_native_id():  # the reporting thread itself
                cpu, wall = time.thread_time() - self._cpu0, time.perf_counter() - self._wall0
            elif (now := task_usage(self.tid).get(self.tid)) is not None:  # else it ended
                # /proc counts whole clock ticks: never less than the laps already charged
                cpu, wall = max(cpu, now.cpu_s - self._cpu0), time.perf_counter() - self._wall0
                self._sys = max(now.system_s - self._sys0, 0.0)
                self._faults = max(now.page_faults - self._faults0, 0)
        return {"tid": self.tid, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                "busy": round(cpu / wall, 3) if wall > 0 else 0.0,
                "system_s": round(self._sys, 3), "page_faults": int(self._faults),
                "parts": {k: round(v, 3) for k, v in self.parts.items()},
                "wall_parts": {k: round(v, 3) for k, v in self.wall_parts.items()},
                "page_fault_parts": dict(self.fault_parts)}


class CpuMeter:
    """The CPU split of one process over an interval: made at the start, :meth:`report` at the
    end. Thread-safe."""

    def __init__(self) -> None:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._sys0, self._faults0 = _usage(resource.RUSAGE_SELF)
        self._tasks0 = task_usage()
        self._main_tid = os.getpid()
        self._comm = self._tasks0.get(self._main_tid, ("", 0.0))[0]
        self._lock = threading.Lock()
        self._clocks: list[ThreadClock] = []

    def clock(self, name: str) -> ThreadClock:
        """A clock for the calling thread (call at the thread's start)."""
        clk = ThreadClock(self, name)
        with self._lock:
            self._clocks.append(clk)
        return clk

    def report(self) -> dict[str, Any]:
        """``process_cpu_s`` and ``wall_s`` over the interval, ``cores`` (CPU / wall), ``threads``
        (each clocked thread: cpu_s, wall_s, busy, parts), ``native`` (threads not clocked,
        e.g. ZeroMQ's I/O thread, by name, from /proc), ``other_s`` (the rest)."""
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        sys_s, faults = _usage(resource.RUSAGE_SELF)
        with self._lock:
            clocks = list(self._clocks)
        threads: dict[str, dict[str, Any]] = {}
        for clk in clocks:
            name, k = clk.name, 1
            while name in threads:
                k += 1
                name = f"{clk.name}#{k}"
            threads[name] = clk.summary()
        clocked = {clk.tid for clk in clocks}
        native: dict[str, float] = {}
        native_usage: dict[str, list[float]] = {}
        for tid, u in task_usage().items():
            if tid in clocked:
                continue
            before = self._tasks0.get(tid, TaskUsage("", 0.0, 0.0, 0))
            label = "main" if tid == self._main_tid else (
                "unclocked Python threads" if u.name == self._comm else u.name)
            native[label] = native.get(label, 0.0) + max(u.cpu_s - before.cpu_s, 0.0)
            kernel = native_usage.setdefault(label, [0.0, 0])
            kernel[0] += max(u.system_s - before.system_s, 0.0)
            kernel[1] += max(u.page_faults - before.page_faults, 0)
        accounted = sum(t["cpu_s"] for t in threads.values()) + sum(native.values())
        return {"wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
                "cores": round(cpu / wall, 3) if wall > 0 else 0.0,
                "system_s": round(sys_s - self._sys0, 3),
                "page_faults": int(faults - self._faults0),
                "threads": threads, "native": {k: round(v, 3) for k, v in native.items()},
                "native_kernel": {k: {"system_s": round(v[0], 3), "page_faults": int(v[1])}
                                  for k, v in native_usage.items()},
                "other_s": round(max(cpu - accounted, 0.0), 3)}


def format_split(report: dict[str, Any], title: str) -> list[str]:
    """A CPU report as text lines: one per thread with its system (kernel) time and minor page
    faults, its parts in brackets."""
    lines = [f"{title}: {report['process_cpu_s']:.1f} CPU s over {report['wall_s']:.1f} s "
             f"({report['cores']:.2f} cores; kernel {report['system_s']:.1f} s, "
             f"{report['page_faults'] / 1e6:.2f} M page faults)"]
    for name, t in report["threads"].items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(
            t["parts"].items(), key=lambda kv: -kv[1]) if v >= 0.05)
        lines.append(f"  {name:14s} {t['cpu_s']:7.1f} s  busy {t['busy']:4.2f}"
                     f"{_kernel(t.get('system_s', 0.0), t.get('page_faults', 0))}"
                     + (f"  [{parts}]" if parts else "") + _off_cpu(t))
    kernels = report.get("native_kernel", {})
    for name, s in report["native"].items():
        if s >= 0.05:
            k = kernels.get(name, {})
            lines.append(f"  {name:14s} {s:7.1f} s{' ' * 12}"
                         f"{_kernel(k.get('system_s', 0.0), k.get('page_faults', 0))}")
    if report["other_s"] >= 0.05:
        lines.append(f"  {'other':14s} {report['other_s']:7.1f} s")
    return lines


def _off_cpu(thread: dict[str, Any]) -> str:
    """The wall seconds a thread spent off a CPU in each of its working parts (not its waits
    for work): waiting for a lock (the GIL), for other threads or for the kernel; nothing for a
    thread that hardly ran (a timer's)."""
    if thread["cpu_s"] < 0.05:
        return ""
    off = {k: w - thread["parts"].get(k, 0.0) for k, w in thread.get("wall_parts", {}).items()
           if k not in _WAITS}
    shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(off.items(), key=lambda kv: -kv[1])
                      if v >= 0.05)
    return f"  off CPU [{shown}]" if shown else ""


IDLE_PARTS = ("wait", "before the first data")
"""A DAQ thread's parts that are its waiting for data or for work (the processing thread's
before its first data, the workers' between their tasks)."""
_WAITS = frozenset({*IDLE_PARTS, "other", "wait for the other boards", "wait for the data's time"})
"""Parts that are a thread's waiting for work, not its work (the sender's boards' too)."""


def _kernel(system_s: float, page_faults: int) -> str:
    """A thread's kernel time (s) and minor page faults (thousands), aligned."""
    return f"  kernel {system_s:4.1f}  faults {page_faults / 1e3:6.1f} k"


def machine_cpu_s() -> dict[str, float] | None:
    """The whole machine's CPU seconds so far (every core, every process; ``/proc/stat``):
    ``busy``, ``idle`` (idle + iowait), ``steal`` (taken by the hypervisor: a virtual machine's
    cores are not always there) and the ``wall`` clock; None where it is not there."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle, steal = ticks[3] + ticks[4], ticks[7]
    return {"busy": (sum(ticks) - idle - steal) * _TICK_S, "idle": idle * _TICK_S,
            "steal": steal * _TICK_S, "wall": time.perf_counter()}


def machine_split(before: dict[str, float] | None, after: dict[str, float] | None
                   ) -> dict[str, float] | None:
    """Whole-machine CPU over the chain (every process, /proc/stat): busy cores of how many."""
    if before is None or after is None:
        return None
    d = {k: after[k] - before[k] for k in after}
    wall = d["wall"] if d["wall"] > 0 else 1.0
    return {"busy_cpu_s": round(d["busy"], 2), "idle_cpu_s": round(d["idle"], 2),
            "steal_cpu_s": round(d["steal"], 2), "wall_s": round(d["wall"], 2),
            "cores": os.cpu_count() or 0, "busy_cores": round(d["busy"] / wall, 2),
            "steal_cores": round(d["steal"] / wall, 2)}
