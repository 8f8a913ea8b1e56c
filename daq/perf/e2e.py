"""The end-to-end chain at rate: a digitizer stand-in process -> ZeroMQ (tcp loopback) -> DAQ.

The sender is a child process that replays a recorded (emulated) acquisition, one PUSH socket per
board, as fast as the DAQ takes it: the recording is sent again and again with its times shifted
by its duration and its sequence numbers continuing, so a few hundred ms of physics make a
sustained stream of any length with every frame distinct. The boards keep in step in data time
(:class:`Lockstep`), as boards on one clock do. Each message is followed by a STATUS
heartbeat; a run-stop marker closes each board. ZeroMQ's high-water mark blocks the sender when
the DAQ is behind: back-pressure, never a drop. The result counts only with zero loss: frames
sent == frames journaled, sequence gaps 0.

Paced (``realtime``), each message leaves when its last event's time has come, as from real
boards; the sender records how far behind that schedule back-pressure held it (the DAQ's lag
behind real time) and stops every board once it is more than ``give_up_lag_s`` behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from daq.pipeline.cpu import CpuMeter, format_split, machine_cpu_s, machine_split
from hw import wire
from hw.scanner import Scanner, load_scanner

MESSAGE_EVENTS = 64 * wire.EVENTS_PER_FRAME
MAX_SKEW_PS = 5 * 10**9
"""How far (data time, ps) a board may run ahead of the slowest: what boards on one clock with
FIFOs of a few ms would show (:class:`Lockstep`)."""


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
        [sys.executable, "-m", "daq.perf.e2e", scanner.source, str(work / "template.npz"),
         str(base), str(seconds), str(report), str(int(pace.realtime)),
         str(pace.give_up_lag_s)], stderr=subprocess.PIPE, text=True)
    run = RunDir.create(work, "run")
    acq = Acquisition(run, scanner, [ZmqSource(f"tcp://127.0.0.1:{base + b}")
                                     for b in range(scanner.n_boards)],
                      SortSettings(), calibration.Calibration.nominal(scanner),
                      no_data_timeout_s=60, threads=pace.threads)
    machine0 = machine_cpu_s()
    acq.start()
    acq.wait()
    _, err = sender.communicate(timeout=60)
    machine1 = machine_cpu_s()
    if sender.returncode != 0:
        raise RuntimeError(f"e2e sender failed: {err.strip()}")
    sent = json.loads(report.read_text())
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
            "gave_up": sent["gave_up"],
            "cpu": {"daq": acq.cpu_split, "sender": sent["cpu"],
                    "machine": machine_split(machine0, machine1)}}


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
        return (f"the DAQ's processing stage (the processing thread and its workers): it had "
                f"work waiting ({thread})")
    return f"upstream of the processing stage (receivers, links or sender): {thread}"


class Lockstep:
    """Boards on one clock: a board sends its next message only while it is at most
    ``MAX_SKEW_PS`` of data time ahead of the slowest board still sending, and every board sends
    the same number of repetitions of the recording.

    Real boards share the scanner's clock, so their streams advance together in data time (apart
    by what their FIFOs hold: milliseconds); here each board's pace is set by its socket's
    back-pressure, i.e. by how fast the DAQ serves that link. Without the lockstep, a board
    served faster runs ahead, and the time merge has to hold all its events beyond the slowest
    board's watermark (gigabytes in a long run) and sort them at the end of the run."""

    def __init__(self, n_boards: int, deadline: float, repetitions: int | None = None) -> None:
        import threading

        self._cond = threading.Condition()
        self._done = [0] * n_boards
        self._started = [0] * n_boards
        self._sent_ps = [0] * n_boards
        """Each board's data time sent so far (ps; infinite once it has sent everything)."""
        self._deadline = deadline
        self.repetitions = repetitions
        """How many repetitions every board sends (set up front, or once the deadline has
        passed, or when a board gives up)."""
        self.gave_up = False

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

    def give_up(self) -> None:
        """No more repetitions than those begun (a paced board fell too far behind)."""
        with self._cond:
            if not self.gave_up:
                self.gave_up = True
                self.repetitions = min(self.repetitions or max(self._started),
                                       max(self._started))

    def end(self, board: int) -> None:
        with self._cond:
            self._done[board] += 1
            self._cond.notify_all()

    def turn(self, board: int) -> None:
        """Wait while ``board`` is more than MAX_SKEW_PS of data time ahead of the slowest
        board (the slowest itself never waits)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._sent_ps[board] <= min(self._sent_ps) + MAX_SKEW_PS)

    def sent(self, board: int, t_ps: float) -> None:
        """``board`` has sent its data up to ``t_ps`` (``inf``: all it will send)."""
        with self._cond:
            self._sent_ps[board] = t_ps
            self._cond.notify_all()


class Schedule:
    """When each message leaves: as fast as the DAQ takes it, or (``realtime``) when the data
    time of its last event has come, data time 0 being when every board is ready."""

    def __init__(self, n_boards: int, realtime: bool, give_up_lag_s: float) -> None:
        import threading

        self.realtime, self.give_up_lag_s = realtime, give_up_lag_s
        self.t0 = time.monotonic()
        self._ready = threading.Barrier(n_boards, action=self._start)

    def _start(self) -> None:
        self.t0 = time.monotonic()

    def ready(self) -> None:
        """A board has prepared its messages: wait until every board has (the clock starts; a
        board that failed to get there breaks the wait for the others after 600 s)."""
        self._ready.wait(600.0)

    def wait(self, t_ps: int) -> None:
        if self.realtime:
            ahead = self.t0 + t_ps * 1e-12 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def lag_s(self, t_ps: int) -> float:
        """How far behind its time a message that just left is (0 when not paced)."""
        return max(time.monotonic() - self.t0 - t_ps * 1e-12, 0.0) if self.realtime else 0.0


class _Encoder:
    """One board's messages: its recording cut once, then each repetition shifted in time and
    encoded (events, then a STATUS heartbeat) with the sequence numbers continuing."""

    def __init__(self, scanner: Scanner, board: int, events: np.ndarray, span: int) -> None:
        self.scanner, self.board, self.span = scanner, board, span
        self.chunks = [events[start:start + MESSAGE_EVENTS].copy()
                       for start in range(0, events.size, MESSAGE_EVENTS)]
        self.seq, self.frames, self.sent = 1, 1, 0

    def repetition(self, k: int, clock: Any) -> Iterator[tuple[bytes, int]]:
        """Repetition ``k``'s messages with the data time of each one's last event (ps)."""
        for chunk in self.chunks:
            if k:
                chunk["t"] += self.span
            clock.lap("shift times")
            seq, t_last = self.seq, int(chunk["t"][-1])
            msg = wire.encode(chunk, board=self.board, first_seq=seq, scanner=self.scanner)
            nf = wire.frames_for(chunk.size)
            self.sent += chunk.size
            msg += wire.encode_status(board=self.board, seq=seq + nf, t_ps=t_last,
                                      events_sent=self.sent, fifo_overflows=0,
                                      scanner=self.scanner)
            self.seq, self.frames = seq + nf + 1, self.frames + nf + 1
            clock.lap("encode")
            yield msg, t_last

    def state(self) -> tuple[int, int, int]:
        """(next sequence number, frames, events) after what was encoded so far."""
        return self.seq, self.frames, self.sent

    def encoded(self, k: int, clock: Any) -> tuple[list[tuple[bytes, int]], tuple[int, int, int]]:
        """Repetition ``k`` encoded ahead, with the state after it."""
        return list(self.repetition(k, clock)), self.state()


def _send_board(sock, scanner: Scanner, board: int, events: np.ndarray, span: int,
                lockstep: Lockstep, schedule: Schedule, out: dict[str, Any], cpu: CpuMeter
                ) -> None:
    """One board: its recording again and again, shifted in time, in step with the others.
    Paced, every repetition is encoded before the clock starts (a board's encoder is hardware:
    the stand-in's CPU must not compete with the DAQ while it is measured)."""
    try:
        _board_messages(sock, scanner, board, events, span, lockstep, schedule, out, cpu)
    finally:  # a board that stops (done, or failed) holds no other board back
        lockstep.sent(board, float("inf"))


def _board_messages(sock, scanner: Scanner, board: int, events: np.ndarray, span: int,
                    lockstep: Lockstep, schedule: Schedule, out: dict[str, Any], cpu: CpuMeter
                    ) -> None:
    """:func:`_send_board`'s messages: the run-start marker, the repetitions, the run-stop
    marker."""
    clock = cpu.clock(f"board {board}")
    enc = _Encoder(scanner, board, events, span)
    ready = [enc.encoded(k, clock) for k in range(lockstep.repetitions or 0)] \
        if schedule.realtime else None
    schedule.ready()
    sock.send(wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=0, run=1,
                                 scanner=scanner))
    clock.lap("prepare")
    k, lag, done = 0, 0.0, enc.state()
    while lockstep.begin(board, k):
        clock.lap("wait for the other boards")
        messages, after = ready[k] if ready is not None else (enc.repetition(k, clock), None)
        for msg, t_last in messages:
            schedule.wait(t_last)
            clock.lap("wait for the data's time")
            lockstep.turn(board)
            clock.lap("wait for the other boards")
            sock.send(msg, copy=False)
            lockstep.sent(board, t_last)
            lag = max(lag, schedule.lag_s(t_last))
            clock.lap("send")
        if ready is not None:
            ready[k] = ([], after)
        done = after or enc.state()
        if lag > schedule.give_up_lag_s:
            lockstep.give_up()
        lockstep.end(board)
        k += 1
    seq, frames, sent = done
    sock.send(wire.encode_marker(wire.RUN_STOP, board=board, seq=seq, t_ps=(k + 1) * span,
                                 run=1, scanner=scanner))
    out.update(frames=frames + 1, events=sent, lag_s=lag)
    clock.close("send")


def _send(scanner: Scanner, template: list[np.ndarray], base: int, seconds: float,
          realtime: bool = False, give_up_lag_s: float = float("inf")) -> dict[str, Any]:
    """Every board on its own thread and PUSH socket, as independent digitizer boards."""
    import threading

    import zmq

    _warm_up(scanner, template)
    cpu = CpuMeter()
    ctx = zmq.Context.instance()
    span = max(int(t["t"][-1]) for t in template if t.size) + 1
    results: list[dict[str, Any]] = [{} for _ in template]
    socks, threads = [], []
    t0 = time.monotonic()
    lockstep = Lockstep(len(template), t0 + seconds,
                        max(1, round(seconds * 1e12 / span)) if realtime else None)
    schedule = Schedule(len(template), realtime, give_up_lag_s)
    for b, events in enumerate(template):
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.LINGER, -1)
        sock.bind(f"tcp://127.0.0.1:{base + b}")
        socks.append(sock)
        threads.append(threading.Thread(target=_send_board, args=(
            sock, scanner, b, events, span, lockstep, schedule, results[b], cpu)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.monotonic()
    split = cpu.report()  # before the context ends: its I/O thread is still there to read
    for sock in socks:
        sock.close()
    ctx.term()
    return {"frames": sum(r["frames"] for r in results),
            "events": sum(r["events"] for r in results), "seconds": ended - t0, "cpu": split,
            "repetitions": lockstep.repetitions, "ended_at": ended,
            "lag_s": max(r["lag_s"] for r in results), "gave_up": lockstep.gave_up}


def _warm_up(scanner: Scanner, template: list[np.ndarray]) -> None:
    """Run the encoders once before the clock starts: on a fresh install numba compiles them
    here (seconds), which must not eat the chain's time (every board sends at least one
    repetition anyway)."""
    one = next(t[:1] for t in template if t.size)
    wire.encode(one, board=0, first_seq=1, scanner=scanner)
    wire.encode_status(board=0, seq=2, t_ps=0, events_sent=1, fifo_overflows=0, scanner=scanner)
    wire.encode_marker(wire.RUN_START, board=0, seq=0, t_ps=0, run=1, scanner=scanner)


def _main(argv: list[str]) -> int:
    scanner_path, template_path, base, seconds, report, realtime, give_up_lag_s = argv
    scanner = load_scanner(scanner_path)
    with np.load(template_path) as z:
        template = [z[f"arr_{i}"] for i in range(len(z.files))]
    result = _send(scanner, template, int(base), float(seconds), realtime == "1",
                   float(give_up_lag_s))
    Path(report).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
