"""The run journal: raw frames exactly as received, appended in checksummed blocks.

The journal is the record of truth of a run: it is written before anything else touches the data,
so a run can always be replayed or recovered from it. A block is::

    offset size  field
    0      4     magic b"BPJ1"
    4      2     stream id (u16, little-endian): which receiver (board link) the bytes came from
    6      2     reserved (0)
    8      4     payload length in bytes (u32)
    12     8     receive time, ns since the journal was opened (u64, monotonic clock)
    20     4     CRC-32 (zlib's) of the payload
    24     4     CRC-32 (zlib) of bytes 0..23 (the header itself)
    28     n     payload: the bytes read from the link, unmodified

Blocks are buffered in memory (the received buffers themselves: no copy) and handed to the
operating system in one ``writev`` (with direct I/O where the file system has it: one copy into
an aligned buffer, none into the page cache, :mod:`daq.pipeline.links.directio`) when they reach
``buffer_bytes`` and at least every ``flush_interval_s`` (0.25 s by default): a ``kill -9``
loses at most that much. ``fsync`` runs
every ``fsync_interval_s`` for power loss. A reader stops at a truncated tail (a killed writer) and
skips a corrupt block by searching for the next magic, counting what it skipped.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from daq.pipeline.links.directio import open_direct
from hw.wire import crc32
from infra.errors import UserError

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter

MAGIC = b"BPJ1"
_HEADER = struct.Struct("<4sHHIQII")
HEADER_BYTES = _HEADER.size
MAX_BLOCK_BYTES = 64 << 20
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16

Buffer = bytes | bytearray | memoryview


class JournalError(UserError):
    """The journal cannot be written (disk full, permissions) or read (missing file)."""


class JournalWriter:
    """Append blocks to a journal file; thread-safe; flushes on a timer as well as on size."""

    def __init__(self, path: str | Path, flush_interval_s: float = 0.25,
                 fsync_interval_s: float = 2.0, buffer_bytes: int = 4 << 20,
                 cpu: CpuMeter | None = None, min_free_bytes: int = 0,
                 direct: bool = True) -> None:
        """``cpu``: a meter the flush thread clocks its CPU time on (:mod:`daq.pipeline.cpu`).
        ``direct``: write with direct I/O where the file system has it (no copy into the page
        cache: about a nanosecond of kernel time per byte saved).
        ``min_free_bytes``: the journal refuses a block (an error, as a full disk) that would
        leave less free on its disk, so that the run's other files still close whole."""
        self.path = Path(path)
        self._cpu = cpu
        self.min_free_bytes = min_free_bytes
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            raise JournalError(f"cannot create journal {self.path}: {exc.strerror}") from None
        self._direct = open_direct(self.path, self._fd, os.fstat(self._fd).st_size) \
            if direct else None
        """Direct I/O (:mod:`daq.pipeline.links.directio`) where the file system has it."""
        self._t0 = time.monotonic_ns()
        self._pending: list[bytes | memoryview] = []
        """Blocks not yet written: headers and payloads as they were handed over (no copy)."""
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._buffer_bytes = buffer_bytes
        self.flush_interval_s, self.fsync_interval_s = flush_interval_s, fsync_interval_s
        self.bytes_written = os.fstat(self._fd).st_size
        """Bytes of the journal file on disk (after a failed write: its whole blocks)."""
        self.payload_bytes = 0
        """Payload bytes handed to :meth:`append` (refused ones included)."""
        self._pending_payload = 0
        self._payload_written = 0
        self._payload_on_disk: int | None = None
        """Payload bytes in the journal once it stopped taking blocks (None while it takes them)."""
        self.blocks = 0
        self.error: str | None = None
        self._last_fsync = time.monotonic()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._flush_loop, name="journal-flush", daemon=True)
        self._timer.start()

    def append(self, stream: int, payload: Buffer | Sequence[Buffer]) -> None:
        """Append one block: ``payload``, or the concatenation of a sequence of pieces (what one
        read of a link gave, e.g. several ZeroMQ messages). Raises :class:`JournalError` if the
        disk refused earlier writes.

        The pieces are not copied: they are written (``writev``) from where they are, so they
        must not change afterwards (bytes and ZeroMQ frames do not; a bytearray or a writable
        view is copied)."""
        pieces = [_frozen(p) for p in (payload if isinstance(payload, list | tuple)
                                       else (payload,))]
        size = sum(len(p) for p in pieces)
        with self._lock:  # receivers append from their own threads
            self.payload_bytes += size
        if self.error:
            raise JournalError(self.error)
        t_ns = time.monotonic_ns() - self._t0
        blocks = []
        for block in _blocks(pieces):
            crc = 0
            for p in block:
                crc = crc32(p, crc)
            blocks.append((_header(stream, sum(len(p) for p in block), crc, t_ns), block))
        if not blocks:
            return
        with self._lock:
            if self.min_free_bytes and not self.error:
                self._refuse_if_full_locked(size + HEADER_BYTES * len(blocks))
            if self.error:
                raise JournalError(self.error)
            for header, block in blocks:
                self._pending.append(header)
                self._pending += block
                self._pending_bytes += HEADER_BYTES + sum(len(p) for p in block)
                self._pending_payload += sum(len(p) for p in block)
                self.blocks += 1
            if self._pending_bytes >= self._buffer_bytes:
                self._flush_locked()
        if self.error:
            raise JournalError(self.error)

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered blocks to the operating system (and to the disk with ``fsync``)."""
        with self._lock:
            self._flush_locked()
            if fsync and not self.error:
                self._fsync_locked()
        if self.error:
            raise JournalError(self.error)

    def _flush_locked(self) -> None:
        if not self._pending or self.error:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        payload, self._pending_payload = self._pending_payload, 0
        written, i = 0, 0  # i: the first piece not written whole
        try:
            if self._direct is not None:
                written, i = self._direct.write(pending), len(pending)
            while i < len(pending):
                n = os.writev(self._fd, pending[i:i + _IOV_MAX])
                written += n
                while i < len(pending) and n >= len(pending[i]):
                    n -= len(pending[i])
                    i += 1
                if n:  # a piece went out in part: its rest goes next
                    pending[i] = memoryview(pending[i])[n:]
        except OSError as exc:
            # Keep only whole blocks on disk: cut the partial block so the journal stays readable.
            self.error = f"journal {self.path}: write failed ({exc.strerror}); acquisition stopped"
            self._truncate_to_whole_blocks()
            return
        self.bytes_written += written
        self._payload_written += payload

    def _refuse_if_full_locked(self, more_bytes: int) -> None:
        """Stop journaling (what is buffered written first) when ``more_bytes`` would leave
        less than ``min_free_bytes`` on the disk."""
        st = os.fstatvfs(self._fd)
        if st.f_bavail * st.f_frsize - self._pending_bytes - more_bytes >= self.min_free_bytes:
            return
        self._flush_locked()
        if not self.error:
            self.error = (f"journal {self.path}: the disk is full (a run keeps "
                          f"{self.min_free_bytes >> 20} MiB free); acquisition stopped")
            self._payload_on_disk = self._payload_written

    @property
    def payload_bytes_lost(self) -> int:
        """Payload bytes handed over that are not in the journal (0 unless a write failed)."""
        return 0 if self._payload_on_disk is None else self.payload_bytes - self._payload_on_disk

    def _fsync_locked(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:  # the disk refused what the OS held: what is on it is unknown
            self.error = f"journal {self.path}: fsync failed ({exc.strerror}); acquisition stopped"
            self._truncate_to_whole_blocks()
        self._last_fsync = time.monotonic()

    def _truncate_to_whole_blocks(self) -> None:
        size = os.fstat(self._fd).st_size
        good, payload_bytes = 0, 0
        for offset, _stream, _t, payload in _scan(self.path, strict=False):
            good = offset + HEADER_BYTES + len(payload)
            payload_bytes += len(payload)
        if good < size:
            os.ftruncate(self._fd, good)
        os.lseek(self._fd, good, os.SEEK_SET)
        self.bytes_written, self._payload_on_disk = good, payload_bytes

    def _flush_loop(self) -> None:
        clock = self._cpu.clock("journal flush") if self._cpu is not None else None
        while not self._stop.wait(self.flush_interval_s):
            with self._lock:
                self._flush_locked()
                if not self.error and time.monotonic() - self._last_fsync > self.fsync_interval_s:
                    self._fsync_locked()
        if clock is not None:
            clock.close("flush")

    def close(self) -> None:
        """Flush, fsync and close. Raises :class:`JournalError` if the last write failed."""
        self._stop.set()
        self._timer.join()
        try:
            self.flush(fsync=True)
        finally:
            if self._direct is not None:
                self._direct.close()
            os.close(self._fd)


def _header(stream: int, length: int, crc: int, t_ns: int) -> bytes:
    """A block header for a payload of ``length`` bytes whose CRC-32 is ``crc``."""
    head = _HEADER.pack(MAGIC, stream, 0, length, t_ns, crc, 0)
    return head[:-4] + struct.pack("<I", crc32(head[:-4]))


def _blocks(pieces: list[bytes | memoryview], limit: int = MAX_BLOCK_BYTES
            ) -> Iterator[list[bytes | memoryview]]:
    """The pieces grouped into blocks of at most ``limit`` bytes (a longer piece is cut; the
    stream of bytes is the same), empty pieces left out."""
    block: list[bytes | memoryview] = []
    size = 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            if size == limit:
                yield block
                block, size = [], 0
            take = min(len(piece) - start, limit - size)
            block.append(piece if take == len(piece) else memoryview(piece)[start:start + take])
            size += take
            start += take
    if block:
        yield block


def _frozen(piece: Buffer) -> bytes | memoryview:
    """``piece`` as bytes or a read-only byte view: as is when it cannot change, else a copy."""
    if isinstance(piece, bytes):
        return piece
    view = memoryview(piece)
    if not view.readonly:
        return view.tobytes()
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


@dataclass
class JournalStats:
    """What reading a journal found: good blocks, corrupt ones and a truncated tail."""

    blocks: int = 0
    bytes: int = 0
    corrupt_blocks: int = 0
    bytes_skipped: int = 0
    truncated_tail_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def read_journal(path: str | Path, stats: JournalStats | None = None
                 ) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(stream, receive_time_ns, payload)`` of every intact block, in file order.

    Corrupt blocks are skipped (counted in ``stats``); a truncated tail ends the iteration.
    """
    p = Path(path)
    if not p.is_file():
        raise JournalError(f"journal {p} does not exist")
    stats = stats if stats is not None else JournalStats()
    for _offset, stream, t_ns, payload in _scan(p, strict=True, stats=stats):
        stats.blocks += 1
        stats.bytes += len(payload)
        yield stream, t_ns, payload


def check_journal(path: str | Path) -> None:
    """Refuse a file that holds no intact journal block (a :class:`JournalError` naming it): what
    a replay or a recovery would read is nothing."""
    stats = JournalStats()
    if next(iter(read_journal(path, stats)), None) is None:
        raise JournalError(f"{path} holds no intact journal block ({stats.bytes_skipped} bytes of "
                        "something else): nothing to replay")


def _scan(path: Path, strict: bool, stats: JournalStats | None = None,
          read_bytes: int = 16 << 20) -> Iterator[tuple[int, int, int, bytes]]:
    """Walk the blocks of a journal, streaming it in ``read_bytes`` pieces."""
    stats = stats if stats is not None else JournalStats()
    with open(path, "rb") as fh:
        buf, base, pos, eof = bytearray(), 0, 0, False

        def have(k: int) -> bool:
            nonlocal buf, base, pos, eof
            while len(buf) - pos < k and not eof:
                if pos:
                    del buf[:pos]
                    base, pos = base + pos, 0
                more = fh.read(max(read_bytes, k))
                eof = not more
                buf += more
            return len(buf) - pos >= k

        while have(HEADER_BYTES):
            magic, stream, _res, length, t_ns, crc, hcrc = _HEADER.unpack_from(buf, pos)
            header_ok = (magic == MAGIC and length <= MAX_BLOCK_BYTES
                         and crc32(buf[pos:pos + HEADER_BYTES - 4]) == hcrc)
            if header_ok and not have(HEADER_BYTES + length):
                break  # a block cut short by a killed writer: the tail
            if header_ok:
                payload = bytes(buf[pos + HEADER_BYTES:pos + HEADER_BYTES + length])
                if crc32(payload) == crc:
                    yield base + pos, stream, t_ns, payload
                    pos += HEADER_BYTES + length
                    continue
            start = base + pos
            nxt = buf.find(MAGIC, pos + 1)
            while nxt < 0 and not eof:
                pos = max(pos, len(buf) - len(MAGIC))
                have(len(buf) - pos + 1)
                nxt = buf.find(MAGIC, pos)
            pos = len(buf) if nxt < 0 else nxt
            if strict:
                stats.corrupt_blocks += 1
                stats.bytes_skipped += base + pos - start
                stats.problems.append(
                    f"corrupt journal block at byte {start}: skipped {base + pos - start} bytes")
        stats.truncated_tail_bytes = len(buf) - pos
