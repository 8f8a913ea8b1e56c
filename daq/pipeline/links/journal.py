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

Every block is copied, as it is appended, into the journal's receive ring
(:mod:`daq.pipeline.links.ring`: one block of memory per run, where the bytes lie as the file
holds them), and written from there to the operating system (with direct I/O where the file
system has it: no copy into the page cache, :mod:`daq.pipeline.links.directio`) when
``buffer_bytes`` are waiting and at least every ``flush_interval_s`` (0.25 s by default): a
``kill -9`` loses at most that much. ``fsync`` runs every ``fsync_interval_s`` for power loss. A
block appended with ``hold`` stays in the ring, its payload readable where it lies, until it is
released (:meth:`JournalWriter.release`: the DAQ's decoder reads it there); an append waits
for room while the ring is full of such blocks (back-pressure, never an overwrite). A reader
stops at a truncated tail (a killed writer) and skips a corrupt block by searching for the next
magic, counting what it skipped.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from daq.pipeline.links.directio import PAGE_BYTES, open_direct, pwrite_all
from daq.pipeline.links.ring import ReceiveRing
from hw.wire import crc32
from infra.errors import UserError

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter

MAGIC = b"BPJ1"
_HEADER = struct.Struct("<4sHHIQII")
HEADER_BYTES = _HEADER.size
MAX_BLOCK_BYTES = 64 << 20
RING_BYTES = 32 << 20
"""A journal's receive ring by default (bytes); the DAQ's holds its hand-over queue."""

Buffer = bytes | bytearray | memoryview


class JournalError(UserError):
    """The journal cannot be written (disk full, permissions) or read (missing file)."""


@dataclass(slots=True)
class HeldBlock:
    """A block appended with ``hold``: where it starts in the journal, whether it is released."""

    start: int
    released: bool = False


class Held(NamedTuple):
    """Payloads appended with ``hold``: where they lie in the journal's ring, until released."""

    views: list[memoryview]
    """The payload bytes, read-only, in order (a block that reaches the ring's end is two)."""
    blocks: list[HeldBlock]


class JournalWriter:
    """Append blocks to a journal file; thread-safe; flushes on a timer as well as on size."""

    def __init__(self, path: str | Path, flush_interval_s: float = 0.25,
                 fsync_interval_s: float = 2.0, buffer_bytes: int = 4 << 20,
                 cpu: CpuMeter | None = None, min_free_bytes: int = 0,
                 direct: bool = True, ring_bytes: int = RING_BYTES) -> None:
        """``cpu``: a meter the flush thread clocks its CPU time on (:mod:`daq.pipeline.cpu`).
        ``direct``: write with direct I/O where the file system has it (no copy into the page
        cache: about a nanosecond of kernel time per byte saved).
        ``min_free_bytes``: the journal refuses a block (an error, as a full disk) that would
        leave less free on its disk, so that the run's other files still close whole.
        ``ring_bytes``: the receive ring's capacity (:mod:`daq.pipeline.links.ring`): what held
        blocks and unwritten ones may take at most."""
        self.path = Path(path)
        self._cpu = cpu
        self.min_free_bytes = min_free_bytes
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise JournalError(f"cannot create journal {self.path}: {exc.strerror}") from None
        self._ring = ReceiveRing.take(ring_bytes)
        self._block_limit = min(MAX_BLOCK_BYTES, self._ring.capacity // 4)
        page0 = size - size % PAGE_BYTES
        if size > page0:  # the file's last partial page, which the next direct write rewrites
            self._ring.put(page0, memoryview(os.pread(self._fd, size - page0, page0)))
        self._direct = open_direct(self.path, self._fd, self._ring.regions(page0, PAGE_BYTES)[0],
                                   size) if direct else None
        """Direct I/O (:mod:`daq.pipeline.links.directio`) where the file system has it."""
        self._t0 = time.monotonic_ns()
        self._head = size
        """The journal's size once every block appended is written."""
        self._held: deque[HeldBlock] = deque()
        """Blocks appended with ``hold``, in the ring's order, from the oldest not released."""
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._buffer_bytes = buffer_bytes
        self.flush_interval_s, self.fsync_interval_s = flush_interval_s, fsync_interval_s
        self.bytes_written = size
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

    def append(self, stream: int, payload: Buffer | Sequence[Buffer], hold: bool = False
               ) -> Held | None:
        """Append one block: ``payload``, or the concatenation of a sequence of pieces (what one
        read of a link gave, e.g. several ZeroMQ messages); a payload longer than the largest
        block goes in several, with the same bytes. The pieces are copied into the journal's
        ring at once: the caller may reuse or free them on return. ``hold``: the payload stays
        in the ring until :meth:`release` (returned as a :class:`Held`); waits while the ring
        has no room. Raises :class:`JournalError` if the disk refused earlier writes."""
        pieces = [_byte_view(p) for p in (payload if isinstance(payload, list | tuple)
                                          else (payload,))]
        size = sum(len(p) for p in pieces)
        with self._lock:  # receivers append from their own threads
            self.payload_bytes += size
        if self.error:
            raise JournalError(self.error)
        t_ns = time.monotonic_ns() - self._t0
        blocks = []
        for block in _blocks(pieces, self._block_limit):
            crc, length = 0, 0
            for p in block:
                crc = crc32(p, crc)
                length += len(p)
            blocks.append((_header(stream, length, crc, t_ns), block, length))
        held = Held([], [])
        with self._lock:
            if self.min_free_bytes and not self.error:
                self._refuse_if_full_locked(size + HEADER_BYTES * len(blocks))
            for header, block, length in blocks:
                self._place_locked(header, block, length, held if hold else None)
        if self.error:
            raise JournalError(self.error)
        return held if hold else None

    def _place_locked(self, header: bytes, block: list[memoryview], length: int,
                      held: Held | None) -> None:
        """One block into the ring (once there is room), to be written at the next flush."""
        self._wait_for_room_locked(HEADER_BYTES + length)
        pos = self._head
        self._ring.put(pos, memoryview(header))
        at = pos + HEADER_BYTES
        for piece in block:
            self._ring.put(at, piece)
            at += len(piece)
        self._head = at
        self._pending_payload += length
        self.blocks += 1
        if held is not None:
            record = HeldBlock(pos)
            self._held.append(record)
            held.blocks.append(record)
            held.views.extend(self._ring.views(pos + HEADER_BYTES, length))
        if self._head - self.bytes_written >= self._buffer_bytes:
            self._flush_locked()

    def _wait_for_room_locked(self, n: int) -> None:
        """Until the ring has ``n`` bytes free: blocks not yet written are written, held ones
        waited for (their reader releases them)."""
        while True:
            if self.error:
                raise JournalError(self.error)
            keep = self.bytes_written - (self.bytes_written % PAGE_BYTES
                                         if self._direct is not None else 0)
            if self._held:
                keep = min(keep, self._held[0].start)
            if self._head + n - keep <= self._ring.capacity:
                return
            if self._head > self.bytes_written:
                self._flush_locked()
            else:
                self._room.wait(0.1)

    def release(self, held: Held) -> None:
        """The payloads of ``held`` are read: their room in the ring may be reused."""
        with self._lock:
            for record in held.blocks:
                record.released = True
            while self._held and self._held[0].released:
                self._held.popleft()
            self._room.notify_all()

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered blocks to the operating system (and to the disk with ``fsync``)."""
        with self._lock:
            self._flush_locked()
            if fsync and not self.error:
                self._fsync_locked()
        if self.error:
            raise JournalError(self.error)

    def _flush_locked(self) -> None:
        if self._head == self.bytes_written or self.error:
            return
        payload, self._pending_payload = self._pending_payload, 0
        try:
            if self._direct is not None:  # from the partial page on: whole pages go direct
                start = self.bytes_written - self.bytes_written % PAGE_BYTES
                self._direct.write(self._ring.regions(start, self._head - start), start)
            else:
                at = self.bytes_written
                for view in self._ring.regions(at, self._head - at):
                    pwrite_all(self._fd, view, at)
                    at += len(view)
        except OSError as exc:
            # Keep only whole blocks on disk: cut the partial block so the journal stays readable.
            self.error = f"journal {self.path}: write failed ({exc.strerror}); acquisition stopped"
            self._truncate_to_whole_blocks()
            self._room.notify_all()
            return
        self.bytes_written = self._head
        self._payload_written += payload
        self._room.notify_all()

    def _refuse_if_full_locked(self, more_bytes: int) -> None:
        """Stop journaling (what is buffered written first) when ``more_bytes`` would leave
        less than ``min_free_bytes`` on the disk."""
        st = os.fstatvfs(self._fd)
        unwritten = self._head - self.bytes_written
        if st.f_bavail * st.f_frsize - unwritten - more_bytes >= self.min_free_bytes:
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
            if not self._held:  # nobody reads its bytes any more
                self._ring.give_back()


def _header(stream: int, length: int, crc: int, t_ns: int) -> bytes:
    """A block header for a payload of ``length`` bytes whose CRC-32 is ``crc``."""
    head = _HEADER.pack(MAGIC, stream, 0, length, t_ns, crc, 0)
    return head[:-4] + struct.pack("<I", crc32(head[:-4]))


def _blocks(pieces: list[memoryview], limit: int = MAX_BLOCK_BYTES
            ) -> Iterator[list[memoryview]]:
    """The pieces grouped into blocks of at most ``limit`` bytes (a longer piece is cut; the
    stream of bytes is the same), empty pieces left out."""
    block: list[memoryview] = []
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


def _byte_view(piece: Buffer) -> memoryview:
    """``piece`` as a flat view of bytes."""
    view = memoryview(piece)
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
