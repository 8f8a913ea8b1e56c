"""The end-to-end chain at rate: a digitizer stand-in process -> ZeroMQ (tcp loopback) -> DAQ.

The sender is a child process that replays a recorded (emulated) acquisition, one PUSH socket per
board, as fast as the DAQ takes it: the recording is sent again and again with its times shifted
by its duration and its sequence numbers continuing, so a few hundred ms of physics make a
sustained stream of any length with every frame distinct. The boards keep in step in data time
(:class:`Lockstep`), as boards on one clock do. Each message is followed by a STATUS
heartbeat; a run-stop marker closes each board. ZeroMQ's high-water mark blocks the sender when
the DAQ is behind: back-pressure, never a drop. The result counts only with zero loss: frames
sent == frames journaled, sequence gaps 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from daq.cpu import CpuMeter, format_split, machine_cpu_s, machine_split
from hw import wire
from hw.scanner import Scanner, load_scanner

MESSAGE_EVENTS = 64 * wire.EVENTS_PER_FRAME


def run_chain(scanner: Scanner, template: list[np.ndarray], seconds: float, keep: bool = False
              ) -> dict[str, Any]:
    """Sustain the chain for about ``seconds``; returns rates, counts, the zero-loss check and
    the CPU split (``cpu``: the DAQ process per thread and per part of each thread's work, the
    sender process, the whole machine; :mod:`daq.cpu`).

    ``template``: each board's time-ordered RAW events of one recording (the emulator's
    ``raw_per_board()``). The run directory (gigabytes of journal) is removed afterwards unless
    ``keep``.
    """
    work = Path(tempfile.mkdtemp(prefix="petdaq-e2e-"))
    try:
        return _run_chain(scanner, template, seconds, work, keep)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _run_chain(scanner: Scanner, template: list[np.ndarray], seconds: float, work: Path,
               keep: bool) -> dict[str, Any]:
    from daq import calibration
    from daq.acquisition import Acquisition
    from daq.emulated import free_port_block
    from daq.processor import SortSettings
    from daq.rundir import RunDir
    from daq.sources import ZmqSource

    np.savez(work / "template.npz", *template)
    base = free_port_block(scanner.n_boards)
    report = work / "sent.json"
    sender = subprocess.Popen(
        [sys.executable, "-m", "daq.e2e", scanner.source, str(work / "template.npz"),
         str(base), str(seconds), str(report)], stderr=subprocess.PIPE, text=True)
    run = RunDir.create(work, "run")
    acq = Acquisition(run, scanner, [ZmqSource(f"tcp://127.0.0.1:{base + b}")
                                     for b in range(scanner.n_boards)],
                      SortSettings(), calibration.Calibration.nominal(scanner),
                      no_data_timeout_s=60)
    machine0 = machine_cpu_s()
    acq.start()
    acq.wait()
    _, err = sender.communicate(timeout=60)
    machine1 = machine_cpu_s()
    if sender.returncode != 0:
        raise RuntimeError(f"e2e sender failed: {err.strip()}")
    sent = json.loads(report.read_text())
    stop = run.read()["stop"]
    counts, losses = stop["counts"], stop["losses"]
    elapsed = acq.processing_s  # through the last merge and sort, not only the last byte
    zero_loss = (sent["events"] > 0 and counts["frames"] == sent["frames"]
                 and losses["seq_gaps"] == 0
                 and counts["singles"] == sent["events"] and not any(losses.values()))
    return {"singles": counts["singles"], "seconds": elapsed,
            "singles_per_s": counts["singles"] / elapsed, "frames_sent": sent["frames"],
            "frames_journaled": counts["frames"], "seq_gaps": losses["seq_gaps"],
            "losses": losses, "zero_loss": zero_loss, "prompts": counts["prompts"],
            "journal_bytes": counts["journal_bytes"], "run": str(run.path) if keep else None,
            "note": "frames sent == journaled, seq gaps 0" if zero_loss else "LOSS",
            "reason": stop["reason"], "sender_seconds": sent["seconds"],
            "cpu": {"daq": acq.cpu_split, "sender": sent["cpu"],
                    "machine": machine_split(machine0, machine1)}}


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


def bottleneck(cpu: dict[str, Any]) -> str:
    """What limited the chain, in one line, from the measured split: the machine's CPU when
    every core was busy, else the busiest DAQ thread when it was always running or always had
    work, else the sender (the DAQ waited for data)."""
    daq, sender, machine = cpu["daq"], cpu["sender"], cpu.get("machine")
    wall = daq["wall_s"] or 1.0
    threads = daq["threads"]
    name, t = max(threads.items(), key=lambda kv: kv[1]["busy"])
    part = max(t["parts"].items(), key=lambda kv: kv[1])[0] if t["parts"] else "-"
    proc = threads.get("processing")
    waited = 0.0
    if proc:
        running = proc["wall_s"] - proc["wall_parts"].get("before the first data", 0.0)
        waited = proc["wall_parts"].get("wait", 0.0) / running if running > 0 else 0.0
    thread = (f"busiest DAQ thread: {name}, on a CPU {t['busy']:.0%} of the time, most in "
              f"{part}; the processing thread waited for data {waited:.0%} of the time")
    daq_cores, sender_cores = daq["process_cpu_s"] / wall, sender["process_cpu_s"] / wall
    if machine and machine["busy_cores"] + machine["steal_cores"] >= 0.9 * machine["cores"]:
        other = max(machine["busy_cores"] - daq_cores - sender_cores, 0.0)
        return (f"the machine's CPU: {machine['busy_cores']:.2f} of {machine['cores']} cores "
                f"busy (DAQ {daq_cores:.2f}, sender {sender_cores:.2f}, the rest {other:.2f}: "
                f"kernel threads and other processes); {thread}")
    if waited < 0.25:
        return (f"the DAQ's processor thread, the one serial stage: it had work waiting but a "
                f"core only part of the time ({thread})")
    return f"upstream of the processor (receivers, links or sender): {thread}"


class Lockstep:
    """Boards on one clock: a board starts its next repetition of the recording only when no
    board is more than one repetition behind, and every board sends the same number of them.

    Real boards share the scanner's clock, so their streams advance together in data time; here
    each board's pace is set by its socket's back-pressure, i.e. by how fast the DAQ serves that
    link. Without the lockstep, a board served faster runs ahead, and the time merge has to hold
    all its events beyond the slowest board's watermark (gigabytes in a long run) and sort them
    at the end of the run."""

    def __init__(self, n_boards: int, deadline: float) -> None:
        import threading

        self._cond = threading.Condition()
        self._done = [0] * n_boards
        self._started = [0] * n_boards
        self._deadline = deadline
        self.repetitions: int | None = None
        """How many repetitions every board sends, once the deadline has passed."""

    def begin(self, board: int, k: int) -> bool:
        """Wait until repetition ``k`` may start; False when the board has sent them all."""
        with self._cond:
            self._cond.wait_for(lambda: min(self._done) >= k - 1)
            if self.repetitions is None and k > 0 and time.monotonic() >= self._deadline:
                self.repetitions = max(self._started)  # those begun are finished, no more
            if self.repetitions is not None and k >= self.repetitions:
                return False
            self._started[board] = k + 1
            return True

    def end(self, board: int) -> None:
        with self._cond:
            self._done[board] += 1
            self._cond.notify_all()


def _send_board(sock, scanner: Scanner, board: int, events: np.ndarray, span: int,
                lockstep: Lockstep, out: dict[str, int], cpu: CpuMeter) -> None:
    """One board: its recording again and again, shifted in time, in step with the others."""
    clock = cpu.clock(f"board {board}")
    # the recording cut in messages once; each repetition shifts their times in place
    messages = [events[start:start + MESSAGE_EVENTS].copy()
                for start in range(0, events.size, MESSAGE_EVENTS)]
    sock.send(wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=0, run=1,
                                 scanner=scanner))
    clock.lap("prepare")
    seq, frames, sent, k = 1, 1, 0, 0
    while lockstep.begin(board, k):
        clock.lap("wait for the other boards")
        for chunk in messages:
            if k:
                chunk["t"] += span
            clock.lap("shift times")
            msg = wire.encode(chunk, board=board, first_seq=seq, scanner=scanner)
            nf = wire.frames_for(chunk.size)
            sent += chunk.size
            msg += wire.encode_status(board=board, seq=seq + nf, t_ps=int(chunk["t"][-1]),
                                      events_sent=sent, fifo_overflows=0, scanner=scanner)
            seq, frames = seq + nf + 1, frames + nf + 1
            clock.lap("encode")
            sock.send(msg, copy=False)
            clock.lap("send")
        lockstep.end(board)
        k += 1
    sock.send(wire.encode_marker(wire.RUN_STOP, board=board, seq=seq, t_ps=(k + 1) * span,
                                 run=1, scanner=scanner))
    out.update(frames=frames + 1, events=sent)
    clock.close("send")


def _send(scanner: Scanner, template: list[np.ndarray], base: int, seconds: float
          ) -> dict[str, Any]:
    """Every board on its own thread and PUSH socket, as independent digitizer boards."""
    import threading

    import zmq

    _warm_up(scanner, template)
    cpu = CpuMeter()
    ctx = zmq.Context.instance()
    span = max(int(t["t"][-1]) for t in template if t.size) + 1
    results: list[dict[str, int]] = [{} for _ in template]
    socks, threads = [], []
    t0 = time.monotonic()
    lockstep = Lockstep(len(template), t0 + seconds)
    for b, events in enumerate(template):
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.LINGER, -1)
        sock.bind(f"tcp://127.0.0.1:{base + b}")
        socks.append(sock)
        threads.append(threading.Thread(target=_send_board, args=(
            sock, scanner, b, events, span, lockstep, results[b], cpu)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    split = cpu.report()  # before the context ends: its I/O thread is still there to read
    for sock in socks:
        sock.close()
    ctx.term()
    return {"frames": sum(r["frames"] for r in results),
            "events": sum(r["events"] for r in results), "seconds": elapsed, "cpu": split,
            "repetitions": lockstep.repetitions}


def _warm_up(scanner: Scanner, template: list[np.ndarray]) -> None:
    """Run the encoders once before the clock starts: on a fresh install numba compiles them
    here (seconds), which must not eat the chain's time (every board sends at least one
    repetition anyway)."""
    one = next(t[:1] for t in template if t.size)
    wire.encode(one, board=0, first_seq=1, scanner=scanner)
    wire.encode_status(board=0, seq=2, t_ps=0, events_sent=1, fifo_overflows=0, scanner=scanner)
    wire.encode_marker(wire.RUN_START, board=0, seq=0, t_ps=0, run=1, scanner=scanner)


def _main(argv: list[str]) -> int:
    scanner_path, template_path, base, seconds, report = argv
    scanner = load_scanner(scanner_path)
    with np.load(template_path) as z:
        template = [z[f"arr_{i}"] for i in range(len(z.files))]
    result = _send(scanner, template, int(base), float(seconds))
    Path(report).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
