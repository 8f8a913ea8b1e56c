"""The digitizer stand-in of the end-to-end chain: every board's frames encoded ahead, then sent.

A child process (``python -m daq.perf.sender``) replays a recorded (emulated) acquisition, one
PUSH socket and thread per board: the recording is sent again and again with its times shifted by
its duration and its sequence numbers continuing, so a few hundred ms of physics make a sustained
stream of any length with every frame distinct. Every repetition is encoded before the clock
starts, by all cores at once (repetition ``k``'s frames depend on ``k`` alone), and held in
memory: while the DAQ is timed a board thread only hands ready messages to its socket, so the
stand-in sends faster than the DAQ takes on any machine (a board's encoder is hardware). As fast
as the DAQ takes it, the stock is sized for :data:`STOCK_SINGLES_PER_CORE_S` on each core the
DAQ may use (its threads and its receiver) for the run's seconds, within
:data:`STOCK_MEMORY_SHARE` of the memory available; a run that outlasts its stock (a long soak,
or a DAQ faster than that) goes on to its deadline with the later repetitions encoded while
they are sent (``past_stock``: the sender then shares the machine's CPU).

The boards keep in step in data time (:class:`Lockstep`), as boards on one clock do. Each message
is followed by a STATUS heartbeat; a run-stop marker closes each board. ZeroMQ's high-water mark
blocks the sender when the DAQ is behind: back-pressure, never a drop.

Paced (``realtime``), each message leaves when its last event's time has come, as from real
boards; the sender records how far behind that schedule back-pressure held it (the DAQ's lag
behind real time) and stops every board once it is more than ``give_up_lag_s`` behind.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.cpu import CpuMeter
from hw import wire
from hw.scanner import Scanner, load_scanner
from infra.pool import available_cores

MESSAGE_EVENTS = 64 * wire.EVENTS_PER_FRAME
MAX_SKEW_PS = 5 * 10**9
"""How far (data time, ps) a board may run ahead of the slowest: what boards on one clock with
FIFOs of a few ms would show (:class:`Lockstep`)."""
STOCK_SINGLES_PER_CORE_S = 30e6
"""Singles per second and core of the DAQ the stock of a run as fast as the DAQ takes it is
sized for: above what the DAQ takes per core on every machine measured (docs/performance.md),
so the stock runs out before the deadline only where the DAQ outran that or the memory held
less."""
STOCK_MEMORY_SHARE = 0.25
"""The share of the machine's available memory the stock may hold."""

READY = "ready"
"""The line the sender process prints once its stock is encoded and its sockets bound."""

Message = tuple[bytes, int]
"""An encoded message and the data time of its last event (ps)."""


class Lockstep:
    """Boards on one clock: a board sends its next message only while it is at most
    ``MAX_SKEW_PS`` of data time ahead of the slowest board still sending, and every board sends
    the same number of repetitions of the recording.

    Real boards share the scanner's clock, so their streams advance together in data time (apart
    by what their FIFOs hold: milliseconds); here each board's pace is set by its socket's
    back-pressure, i.e. by how fast the DAQ serves that link. Without the lockstep, a board
    served faster runs ahead, and the time merge has to hold all its events beyond the slowest
    board's watermark (gigabytes in a long run) and sort them at the end of the run.

    ``repetitions``: the most every board sends; ``deadline`` (monotonic s): after it, no board
    begins a repetition that no board has begun."""

    def __init__(self, n_boards: int, deadline: float, repetitions: int) -> None:
        self._cond = threading.Condition()
        self._done = [0] * n_boards
        self._started = [0] * n_boards
        self._sent_ps = [0.0] * n_boards
        """Each board's data time sent so far (ps; infinite once it has sent everything)."""
        self._deadline = deadline
        self.repetitions = repetitions
        """How many repetitions every board sends (cut at the deadline, or when a board gives
        up)."""
        self.gave_up = False

    def begin(self, board: int, k: int) -> bool:
        """Wait until repetition ``k`` may start; False when the board has sent them all."""
        with self._cond:
            self._cond.wait_for(lambda: min(self._done) >= k - 1)
            if k > 0 and time.monotonic() >= self._deadline:
                self.repetitions = min(self.repetitions, max(self._started))
            if k >= self.repetitions:
                return False
            self._started[board] = k + 1
            return True

    def give_up(self) -> None:
        """No more repetitions than those begun (a paced board fell too far behind)."""
        with self._cond:
            if not self.gave_up:
                self.gave_up = True
                self.repetitions = min(self.repetitions, max(self._started))

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
        self.realtime, self.give_up_lag_s = realtime, give_up_lag_s
        self.t0 = time.monotonic()
        self._ready = threading.Barrier(n_boards, action=self._start)

    def _start(self) -> None:
        self.t0 = time.monotonic()

    def ready(self) -> None:
        """A board is ready to send: wait until every board is (the clock starts; a board that
        failed to get there breaks the wait for the others after 600 s)."""
        self._ready.wait(600.0)

    def wait(self, t_ps: int) -> None:
        if self.realtime:
            ahead = self.t0 + t_ps * 1e-12 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def lag_s(self, t_ps: int) -> float:
        """How far behind its time a message that just left is (0 when not paced)."""
        return max(time.monotonic() - self.t0 - t_ps * 1e-12, 0.0) if self.realtime else 0.0


class Encoder:
    """One board's messages: its recording cut once into messages; repetition ``k`` shifted by
    ``k`` spans in time and numbered on from the ``k`` repetitions before it, so that any
    repetition is encoded without the others (in any order, on any thread)."""

    def __init__(self, scanner: Scanner, board: int, events: np.ndarray, span: int) -> None:
        self.scanner, self.board, self.span = scanner, board, span
        self.chunks = [events[start:start + MESSAGE_EVENTS].copy()
                       for start in range(0, events.size, MESSAGE_EVENTS)]
        self.frames_per_repetition = sum(wire.frames_for(c.size) + 1 for c in self.chunks)
        """Event frames and one STATUS heartbeat per message."""
        self.events_per_repetition = events.size

    def repetition(self, k: int) -> list[Message]:
        """Repetition ``k``'s messages (events, then a STATUS heartbeat)."""
        seq, sent, messages = self.state_after(k)[0], k * self.events_per_repetition, []
        for chunk in self.chunks:
            if k:
                chunk = chunk.copy()
                chunk["t"] += k * self.span
            t_last = int(chunk["t"][-1])
            msg = wire.encode(chunk, board=self.board, first_seq=seq, scanner=self.scanner)
            nf = wire.frames_for(chunk.size)
            sent += chunk.size
            msg += wire.encode_status(board=self.board, seq=seq + nf, t_ps=t_last,
                                      events_sent=sent, fifo_overflows=0, scanner=self.scanner)
            seq += nf + 1
            messages.append((msg, t_last))
        return messages

    def state_after(self, k: int) -> tuple[int, int, int]:
        """(next sequence number, frames sent, events sent) after the run-start marker and
        ``k`` repetitions."""
        frames = 1 + k * self.frames_per_repetition
        return frames, frames, k * self.events_per_repetition


def stock_repetitions(singles_per_repetition: int, bytes_per_repetition: int, seconds: float,
                      realtime: bool, span_ps: int, daq_threads: int) -> int:
    """How many repetitions of the recording to encode ahead: paced, those of ``seconds``;
    as fast as the DAQ takes them, those of :data:`STOCK_SINGLES_PER_CORE_S` on each core the
    DAQ may use (``daq_threads`` and a receiver, at most every core) for ``seconds``, within
    :data:`STOCK_MEMORY_SHARE` of the available memory."""
    if realtime:
        return max(1, round(seconds * 1e12 / span_ps))
    cores = min(daq_threads + 1, available_cores())
    wanted = math.ceil(seconds * STOCK_SINGLES_PER_CORE_S * cores
                       / max(singles_per_repetition, 1))
    room = int(STOCK_MEMORY_SHARE * available_memory_bytes() // max(bytes_per_repetition, 1))
    return max(1, min(wanted, room))


def available_memory_bytes() -> int:
    """The memory the kernel says is available (``MemAvailable``), or 4 GiB where it does not
    say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def encode_stock(encoders: list[Encoder], seconds: float, realtime: bool, daq_threads: int
                 ) -> list[list[list[Message] | None]]:
    """Every board's repetitions encoded ahead on every core: ``stock[board][k]``."""
    first = [enc.repetition(0) for enc in encoders]
    size = sum(len(m) for msgs in first for m, _ in msgs)
    singles = sum(e.events_per_repetition for e in encoders)
    n = stock_repetitions(singles, size, seconds, realtime, encoders[0].span, daq_threads)
    stock: list[list[list[Message] | None]] = [[f, *([None] * (n - 1))] for f in first]
    jobs = [(b, k) for k in range(1, n) for b in range(len(encoders))]

    def encode(job: tuple[int, int]) -> None:
        b, k = job
        stock[b][k] = encoders[b].repetition(k)

    with ThreadPoolExecutor(max_workers=available_cores()) as pool:
        list(pool.map(encode, jobs))
    return stock


def _send_board(sock, enc: Encoder, stock: list[list[Message] | None], lockstep: Lockstep,
                schedule: Schedule, out: dict[str, Any], cpu: CpuMeter) -> None:
    """One board: its encoded repetitions in step with the others."""
    try:
        _board_messages(sock, enc, stock, lockstep, schedule, out, cpu)
    finally:  # a board that stops (done, or failed) holds no other board back
        lockstep.sent(enc.board, float("inf"))


def _board_messages(sock, enc: Encoder, stock: list[list[Message] | None], lockstep: Lockstep,
                    schedule: Schedule, out: dict[str, Any], cpu: CpuMeter) -> None:
    """:func:`_send_board`'s messages: the run-start marker, the repetitions (each given back to
    the memory once sent; those past the stock encoded now), the run-stop marker."""
    board, scanner = enc.board, enc.scanner
    clock = cpu.clock(f"board {board}")
    schedule.ready()
    sock.send(wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=0, run=1,
                                 scanner=scanner))
    clock.lap("prepare")
    k, lag = 0, 0.0
    while lockstep.begin(board, k):
        clock.lap("wait for the other boards")
        messages = stock[k] if k < len(stock) else enc.repetition(k)
        clock.lap("wait for the other boards" if k < len(stock) else "encode")
        for msg, t_last in messages or ():
            schedule.wait(t_last)
            clock.lap("wait for the data's time")
            lockstep.turn(board)
            clock.lap("wait for the other boards")
            sock.send(msg, copy=False)
            lockstep.sent(board, t_last)
            lag = max(lag, schedule.lag_s(t_last))
            clock.lap("send")
        if k < len(stock):
            stock[k] = None
        if lag > schedule.give_up_lag_s:
            lockstep.give_up()
        lockstep.end(board)
        k += 1
    seq, frames, sent = enc.state_after(k)
    sock.send(wire.encode_marker(wire.RUN_STOP, board=board, seq=seq, t_ps=(k + 1) * enc.span,
                                 run=1, scanner=scanner))
    out.update(frames=frames + 1, events=sent, lag_s=lag)
    clock.close("send")


def send(scanner: Scanner, template: list[np.ndarray], base: int, seconds: float,
         realtime: bool = False, give_up_lag_s: float = float("inf"),
         daq_threads: int | None = None, go: Callable[[], None] = lambda: None
         ) -> dict[str, Any]:
    """Every board on its own thread and PUSH socket, as independent digitizer boards, from
    the stock encoded ahead (:func:`encode_stock`; ``daq_threads``: the DAQ's processing
    threads, None: every core). ``go`` is called once the stock is encoded and the sockets
    bound, and returns when the boards may start (the clock starts then)."""
    import zmq

    span = max(int(t["t"][-1]) for t in template if t.size) + 1
    encoders = [Encoder(scanner, b, events, span) for b, events in enumerate(template)]
    t_encode = time.monotonic()
    stock = encode_stock(encoders, seconds, realtime, daq_threads or available_cores())
    encode_s = time.monotonic() - t_encode
    n_stock = len(stock[0])
    ctx = zmq.Context.instance()
    results: list[dict[str, Any]] = [{} for _ in template]
    socks = []
    for enc in encoders:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.LINGER, -1)
        sock.bind(f"tcp://127.0.0.1:{base + enc.board}")
        socks.append(sock)
    go()
    cpu, t0 = CpuMeter(), time.monotonic()
    lockstep = Lockstep(len(template), math.inf if realtime else t0 + seconds,
                        n_stock if realtime else sys.maxsize)
    schedule = Schedule(len(template), realtime, give_up_lag_s)
    threads = [threading.Thread(target=_send_board, args=(
        sock, enc, board_stock, lockstep, schedule, out, cpu))
        for sock, enc, board_stock, out in zip(socks, encoders, stock, results, strict=True)]
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
            "repetitions": lockstep.repetitions, "stock_repetitions": n_stock,
            "past_stock": lockstep.repetitions > n_stock, "encode_s": encode_s, "ended_at": ended,
            "lag_s": max(r["lag_s"] for r in results), "gave_up": lockstep.gave_up}


def _ready_then_wait() -> None:
    """Say ``ready`` on stdout, then wait for a line on stdin (the DAQ has started); stdin's
    end (the DAQ's process is gone) ends the sender."""
    print(READY, flush=True)
    if not sys.stdin.readline():
        raise SystemExit("e2e sender: the DAQ went away before the boards started")


def _main(argv: list[str]) -> int:
    scanner_path, template_path, base, seconds, report, realtime, give_up_lag_s, threads = argv
    scanner = load_scanner(scanner_path)
    with np.load(template_path) as z:
        template = [z[f"arr_{i}"] for i in range(len(z.files))]
    result = send(scanner, template, int(base), float(seconds), realtime == "1",
                  float(give_up_lag_s), int(threads) or None, _ready_then_wait)
    Path(report).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
