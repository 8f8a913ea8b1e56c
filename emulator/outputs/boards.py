"""The digitizer boards' output: frames per board, run markers, heartbeats, pacing; replay.

Each board is its own stream: a RUN_START marker, its EVENTS frames (at most
``MESSAGE_FRAMES`` frames per message), a STATUS heartbeat at the end of every chunk of emulated
time (the board's watermark for the DAQ's time merge), a RUN_STOP marker. In real time a chunk's
frames leave when the emulated time of its end has come on the wall clock; otherwise as fast as
the sink takes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.detector.electronics import wire_time
from emulator.engine import Chunk
from emulator.jit import kernel
from emulator.outputs.packers import Packer
from emulator.outputs.sinks import Sink
from hw import wire
from hw.scanner import Scanner
from infra.errors import UserError

MESSAGE_FRAMES = 64


@dataclass
class Sent:
    """What went out."""

    events: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    late_s: float = 0.0
    """Real time only: how far behind the wall clock the last chunk left."""


class BoardStream:
    """One board's frames: sequence numbers and the events-sent counter."""

    def __init__(self, packer: Packer, board: int, scanner: Scanner, run: int = 1) -> None:
        self.packer, self.board, self.run = packer, board, run
        self.period_ps, self.tdc_bits = scanner.digitizer.clock_period_ps, \
            scanner.digitizer.tdc_bits
        self.seq = 0
        self.events_sent = 0

    def _next(self, frames: int = 1) -> int:
        seq = self.seq
        self.seq = (self.seq + frames) & 0xFFFFFFFF
        return seq

    def marker(self, kind: int, t_ps: int) -> bytes:
        return self.packer.marker(kind, self.board, self._next(), t_ps, self.run)

    def status(self, t_ps: int) -> bytes:
        return self.packer.status(self.board, self._next(), t_ps, self.events_sent)

    def events(self, raw: np.ndarray) -> list[bytes]:
        """Messages of EVENTS frames for ``raw`` (this board's events, time-ordered)."""
        sent = raw.copy()
        sent["t"] = wire_time(raw["t"], self.period_ps, self.tdc_bits)   # decodes to raw["t"]
        step = MESSAGE_FRAMES * wire.EVENTS_PER_FRAME
        out = []
        for k in range(0, raw.size, step):
            part = sent[k:k + step]
            out.append(self.packer.events(part, self.board, self._next(wire.frames_for(part.size))))
        self.events_sent += raw.size
        return out


def transmit(chunks: Iterable[Chunk], sink: Sink, scanner: Scanner, packer: Packer, *,
             realtime: bool, start_ps: int = 0, run: int = 1,
             on_chunk: Callable[[Chunk, Sent], None] | None = None) -> Sent:
    """Send every board's stream for ``chunks`` to ``sink``; returns the totals."""
    streams = [BoardStream(packer, b, scanner, run) for b in range(scanner.n_boards)]
    sent = Sent()

    def put(board: int, data: bytes, frames: int) -> None:
        sink.send(board, data)
        sent.frames += frames
        sent.bytes += len(data)

    for b, s in enumerate(streams):
        put(b, s.marker(wire.RUN_START, start_ps), 1)
    wall0 = time.monotonic()
    end_ps = start_ps
    for chunk in chunks:
        if realtime:
            due = wall0 + (chunk.t_stop_ps - start_ps) * 1e-12
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sent.late_s = max(0.0, -wait)
        for b, events in enumerate(chunk.raw_per_board):
            for message in streams[b].events(events):
                if message:  # a firmware in the loop sends a chunk's frames with its heartbeat
                    put(b, message, 0)
            sent.frames += wire.frames_for(events.size)
            put(b, streams[b].status(chunk.t_stop_ps), 1)
        sent.events += chunk.raw.size
        end_ps = chunk.t_stop_ps
        sent.seconds = time.monotonic() - wall0
        if on_chunk is not None:
            on_chunk(chunk, sent)
    for b, s in enumerate(streams):
        put(b, s.marker(wire.RUN_STOP, end_ps), 1)
    sent.seconds = time.monotonic() - wall0
    return sent


# --------------------------------------------------------------------------- replay


@kernel
def _frame_heads(buf, starts, ends):
    """Board, type and payload words of each frame ``buf[starts[f]:ends[f]]`` (its bytes
    between two 0x00): the first 12 bytes COBS-decoded. -1 board for a frame too short to hold
    a header."""
    n = ends.size
    board = np.full(n, -1, np.int64)
    ftype = np.zeros(n, np.int64)
    words = np.zeros(n, np.int64)
    head = np.zeros(12, np.uint8)
    for f in range(n):
        stop = ends[f]
        i, k = starts[f], 0
        while i < stop and k < 12:
            code = int(buf[i])
            i += 1
            j = 0
            while j < code - 1 and k < 12 and i < stop:
                head[k] = buf[i]
                k += 1
                i += 1
                j += 1
            if code != 0xFF and k < 12:
                head[k] = 0
                k += 1
        if k == 12:
            board[f] = int(head[2]) | (int(head[3]) << 8)
            ftype[f] = head[1]
            words[f] = int(head[8]) | (int(head[9]) << 8)
    return board, ftype, words


def _chunks(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The 0x00-ended chunks of ``buf`` up to the last frame: (starts, ends: the 0x00's
    position, frame: whether the chunk holds bytes). None when no frame ends in ``buf``. Empty
    chunks (a frame's leading 0x00, version 2) are kept: every byte is sent."""
    ends = np.flatnonzero(buf == 0)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    frame = ends > starts
    if not frame.any():
        return None
    last = int(np.flatnonzero(frame)[-1]) + 1
    return starts[:last], ends[:last], frame[:last]


def replay(path: str | Path, sink: Sink, n_boards: int, *, block_bytes: int = 32 << 20,
           max_message_bytes: int = 1 << 20) -> Sent:
    """Send a recorded frames file's frames, each to its board's stream, as fast as the sink
    takes them (no re-simulation); the boards' frames keep their order, and a frame's leading
    0x00 goes with it."""
    sent = Sent()
    t0 = time.monotonic()
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot read frames file {path}: {exc.strerror}") from None
    with fh:
        tail = b""
        while True:
            block = fh.read(block_bytes)
            if not block:
                break
            data = tail + block if tail else block
            buf = np.frombuffer(data, np.uint8)
            chunks = _chunks(buf)
            if chunks is None:
                tail = data
                continue
            starts, ends, frame = chunks
            tail = data[ends[-1] + 1:]
            heads = np.flatnonzero(frame)
            board_f, ftype, words = _frame_heads(buf, starts[heads], ends[heads])
            if board_f.max() >= n_boards or board_f.min() < 0:
                raise UserError(f"frames file {path}: frame of board {board_f.max()} (or an "
                                f"unreadable frame) but the scanner has {n_boards} boards")
            sent.events += int(words[ftype == wire.EVENTS].sum())
            sent.frames += heads.size
            # an empty chunk goes with the frame after it; runs of one board cut into messages
            board = board_f[np.searchsorted(heads, np.arange(ends.size))]
            cut = np.flatnonzero(np.diff(board)) + 1
            for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [board.size]]),
                            strict=True):
                lo = starts[a]
                while lo <= ends[b - 1]:
                    hi = int(ends[min(np.searchsorted(ends, lo + max_message_bytes), b - 1)])
                    sink.send(int(board[a]), data[lo:hi + 1])
                    sent.bytes += hi + 1 - lo
                    lo = hi + 1
    sent.seconds = time.monotonic() - t0
    return sent
