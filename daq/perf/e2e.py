"""The end-to-end chain at rate: a digitizer stand-in process -> ZeroMQ (tcp loopback) -> DAQ.

The stand-in (:mod:`daq.perf.sender`) encodes every board's frames ahead, then sends them as fast
as the DAQ takes them, or paced at the recording's own rate (``realtime``). The result counts
only with zero loss: frames sent == frames journaled, sequence gaps 0. Every run says which side
limited it (:func:`limited_by`): the DAQ, the sender or the machine's CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from daq.perf.sender import MESSAGE_EVENTS, READY
from daq.pipeline.cpu import format_split, machine_cpu_s, machine_split
from hw.scanner import Scanner

__all__ = ["MESSAGE_EVENTS", "bottleneck", "format_cpu", "limited_by", "run_chain"]


def run_chain(scanner: Scanner, template: list[np.ndarray], seconds: float, keep: bool = False,
              threads: int | None = None, realtime: bool = False,
              give_up_lag_s: float = float("inf")) -> dict[str, Any]:
    """Sustain the chain for about ``seconds``; returns rates, counts, the zero-loss check and
    the CPU split (``cpu``: the DAQ process per thread and per part of each thread's work, the
    sender process, the whole machine; :mod:`daq.pipeline.cpu`).

    ``template``: each board's time-ordered RAW events of one recording (the emulator's
    ``raw_per_board()``). The run directory (gigabytes of journal) is removed afterwards unless
    ``keep``. ``threads``: the DAQ's processing threads (None: every core). ``realtime``: paced at
    the recording's own rate (see the module docstring); ``lag_s`` is then the most the sender
    was held behind real time and ``end_lag_s`` how long after the last frame was sent the DAQ
    had sorted the last event.
    """
    work = Path(tempfile.mkdtemp(prefix="petdaq-e2e-"))
    try:
        return _run_chain(scanner, template, seconds, work, keep,
                          _Pace(threads, realtime, give_up_lag_s))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


class _Pace(NamedTuple):
    """How a chain is driven: the DAQ's threads, the sender's pacing."""

    threads: int | None
    realtime: bool
    give_up_lag_s: float


def _run_chain(scanner: Scanner, template: list[np.ndarray], seconds: float, work: Path,
               keep: bool, pace: _Pace) -> dict[str, Any]:
    from daq.control.emulated import free_port_block
    from daq.pipeline.acquisition import Acquisition
    from daq.pipeline.links.sources import ZmqSource
    from daq.pipeline.process import calibration
    from daq.pipeline.process.processor import SortSettings
    from runstore.rundir import RunDir

    _warm_daq(scanner, template, pace.threads)
    np.savez(work / "template.npz", *template)
    base = free_port_block(scanner.n_boards)
    report = work / "sent.json"
    sender = subprocess.Popen(
        [sys.executable, "-m", "daq.perf.sender", scanner.source, str(work / "template.npz"),
         str(base), str(seconds), str(report), str(int(pace.realtime)),
         str(pace.give_up_lag_s), str(pace.threads or 0)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # a chain that fails leaves no sender behind
        _await_sender(sender)
        run = RunDir.create(work, "run")
        acq = Acquisition(run, scanner, [ZmqSource(f"tcp://127.0.0.1:{base + b}")
                                         for b in range(scanner.n_boards)],
                          SortSettings(), calibration.Calibration.nominal(scanner),
                          no_data_timeout_s=60, threads=pace.threads)
        machine0 = machine_cpu_s()
        acq.start()
        sender.stdin.write("go\n")
        sender.stdin.flush()
        acq.wait()
        _, err = sender.communicate(timeout=60)
    except BaseException:
        sender.kill()
        sender.communicate()
        raise
    machine1 = machine_cpu_s()
    if sender.returncode != 0:
        raise RuntimeError(f"e2e sender failed: {err.strip()}")
    sent = json.loads(report.read_text())
    cpu = {"daq": acq.cpu_split, "sender": sent["cpu"],
           "machine": machine_split(machine0, machine1)}
    stop = acq.stop_doc
    counts, losses = stop.counts, stop.losses
    elapsed = acq.processing_s  # through the last merge and sort, not only the last byte
    zero_loss = (sent["events"] > 0 and counts["frames"] == sent["frames"]
                 and losses["frames_lost"] == 0
                 and counts["singles"] == sent["events"] and not any(losses.values()))
    return {"singles": counts["singles"], "seconds": elapsed,
            "singles_per_s": counts["singles"] / elapsed, "frames_sent": sent["frames"],
            "frames_journaled": counts["frames"], "seq_gaps": losses["frames_lost"],
            "losses": losses, "zero_loss": zero_loss, "prompts": counts["prompts"],
            "journal_bytes": counts["journal_bytes"], "run": str(run.path) if keep else None,
            "note": "frames sent == journaled, seq gaps 0" if zero_loss else "LOSS",
            "reason": stop.reason, "sender_seconds": sent["seconds"],
            "threads": acq.workers.threads, "realtime": pace.realtime, "lag_s": sent["lag_s"],
            "end_lag_s": (acq.processed_at or time.monotonic()) - sent["ended_at"],
            "gave_up": sent["gave_up"], "past_stock": sent["past_stock"],
            "sender_encode_s": sent["encode_s"], "limited_by": limited_by(cpu)[0], "cpu": cpu}


SENDER_READY_S = 300.0
"""The longest the sender may take to encode its stock."""


def _await_sender(sender: subprocess.Popen) -> None:
    """Wait until the sender has encoded its stock and bound its sockets: the DAQ starts
    then, so that its CPU split covers the stream alone."""
    import select

    ready, _, _ = select.select([sender.stdout], [], [], SENDER_READY_S)
    line = sender.stdout.readline().strip() if ready else f"not ready in {SENDER_READY_S:g} s"
    if line != READY:
        sender.kill()
        _, err = sender.communicate(timeout=60)
        raise RuntimeError(f"e2e sender failed before sending: {(line + ' ' + err).strip()}")


def _warm_daq(scanner: Scanner, template: list[np.ndarray], threads: int | None) -> None:
    """The DAQ's processing of one repetition of the recording, in this process, before the
    chain is timed: on a fresh install numba compiles its kernels here (tens of seconds), which
    must not be counted as the chain's time."""
    from daq.pipeline.process.calibration import Calibration
    from daq.pipeline.process.processor import SortSettings
    from daq.pipeline.warmup import warm_up

    warm_up(scanner, SortSettings(), Calibration.nominal(scanner), threads, template)


def format_cpu(cpu: dict[str, Any], singles: int) -> list[str]:
    """The chain's CPU split as text lines (``petdaq bench`` prints them under its table)."""
    lines = format_split(cpu["daq"], "DAQ process")
    lines += format_split(cpu["sender"], "sender process (digitizer stand-in)")
    m = cpu.get("machine")
    if m:
        lines.append(f"whole machine: {m['busy_cores']:.2f} of {m['cores']} cores busy over "
                     f"{m['wall_s']:.1f} s (every process and the kernel; the hypervisor took "
                     f"{m['steal_cores']:.2f} more)")
    daq_cpu = cpu["daq"]["process_cpu_s"]
    if daq_cpu > 0:
        lines.append(f"DAQ CPU per event: {daq_cpu / max(singles, 1) * 1e9:.0f} ns "
                     f"({singles / daq_cpu / 1e6:.1f} M singles per DAQ CPU second)")
    lines.append(f"bottleneck: {bottleneck(cpu)}")
    return lines


class DaqShares(NamedTuple):
    """How the DAQ's processing spent its wall from the first data on."""

    processing_on_cpu: float
    """The processing thread's CPU over that wall."""
    processing_waited: float
    """The share of that wall the processing thread waited for data."""
    workers_on_cpu: float
    """The workers' CPU over their wall, their mean (0 without workers)."""


def daq_shares(daq: dict[str, Any]) -> DaqShares:
    """:class:`DaqShares` of the DAQ process's CPU split."""
    proc = daq["threads"].get("processing")
    on = waited = 0.0
    if proc:
        running = proc["wall_s"] - proc["wall_parts"].get("before the first data", 0.0)
        if running > 0:
            on, waited = proc["cpu_s"] / running, proc["wall_parts"].get("wait", 0.0) / running
    workers = [t["busy"] for n, t in daq["threads"].items() if n.startswith("worker")]
    return DaqShares(on, waited, sum(workers) / len(workers) if workers else 0.0)


SIDES = ("the machine's CPU", "the sender", "the DAQ's processing", "the DAQ's receivers")
"""What can limit a chain (:func:`limited_by`)."""
SENDER_BUSY = 0.8
"""A sender whose busiest board thread was on a CPU this share of the time or more limited the
chain: its messages are encoded ahead, so it waits only for the DAQ's back-pressure."""


def limited_by(cpu: dict[str, Any]) -> tuple[str, str]:
    """Which side limited the chain (one of :data:`SIDES`) and why, from the measured split:
    the machine's CPU when every core was busy; else the sender when a board thread of it was
    on a CPU at least :data:`SENDER_BUSY` of the time; else the DAQ's processing stage when it
    had work waiting (it waited for data less than a quarter of the time); else the DAQ's
    receivers (the processing waited for them while the sender waited for the DAQ)."""
    daq, sender, machine = cpu["daq"], cpu["sender"], cpu.get("machine")
    wall = daq["wall_s"] or 1.0
    name, t = max(daq["threads"].items(), key=lambda kv: kv[1]["busy"])
    part = max(t["parts"].items(), key=lambda kv: kv[1])[0] if t["parts"] else "-"
    waited = daq_shares(daq).processing_waited
    boards = [b for n, b in sender["threads"].items() if n.startswith("board")]
    sender_busy = max((b["busy"] for b in boards), default=0.0)
    thread = (f"busiest DAQ thread: {name}, on a CPU {t['busy']:.0%} of the time, most in "
              f"{part}; the processing thread waited for data {waited:.0%} of the time; the "
              f"sender's busiest board thread on a CPU {sender_busy:.0%} of the time")
    daq_cores, sender_cores = daq["process_cpu_s"] / wall, sender["process_cpu_s"] / wall
    if machine and machine["busy_cores"] + machine["steal_cores"] >= 0.9 * machine["cores"]:
        other = max(machine["busy_cores"] - daq_cores - sender_cores, 0.0)
        return SIDES[0], (f"{machine['busy_cores']:.2f} of {machine['cores']} cores busy (DAQ "
                          f"{daq_cores:.2f}, sender {sender_cores:.2f}, the rest {other:.2f}: "
                          f"kernel threads and other processes); {thread}")
    if sender_busy >= SENDER_BUSY:
        return SIDES[1], thread
    if waited < 0.25:
        return SIDES[2], f"it had work waiting; {thread}"
    return SIDES[3], thread


def bottleneck(cpu: dict[str, Any]) -> str:
    """What limited the chain, in one line (:func:`limited_by`)."""
    side, why = limited_by(cpu)
    return f"{side} ({why})"
