"""Byte sources a DAQ receiver reads frames from: ZeroMQ, serial (pyserial), a frames file.

Every source has ``read(timeout_s) -> bytes | None``: the bytes that arrived (possibly ``b""`` when
nothing came within the timeout), or ``None`` at the end of the stream (end of file). ``describe``
names it for messages. A source may also have ``read_parts(timeout_s) -> list``: the same bytes as
several buffers, not joined (ZeroMQ: one per message, without a copy). :func:`open_source` turns
a ``--from`` specification into a source:

==========================  ==========================================================
``tcp://host:port``         ZeroMQ PULL connected to a digitizer's PUSH (also ``ipc://``)
``/dev/ttyUSB0``            a serial device (pyserial), at ``baudrate``
``pty:/dev/pts/5``          the DAQ end of a pseudo-terminal pair made by ``petdaq emulate``
``socket://host:port``      any pyserial URL (also ``rfc2217://``, ``loop://``)
``PATH.frames``             a recorded frames file, read as fast as possible
==========================  ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import serial
import zmq

from hw.wire.format import SERIAL_URL_SCHEMES
from infra import keys
from infra.errors import UserError

ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")
MESSAGES_PER_READ = 64
"""ZeroMQ messages taken from a link at once at most (one journal block)."""
RCVHWM = 64
"""ZeroMQ messages a link's socket holds at most before its board waits (back-pressure)."""


class Source(Protocol):
    """Where frame bytes come from."""

    describe: str

    def read(self, timeout_s: float) -> bytes | None: ...

    def close(self) -> None: ...


class ZmqSource:
    """ZeroMQ PULL socket connected to one board's PUSH endpoint (bounded high-water mark)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None, hwm: int = RCVHWM,
                 secure: keys.Secure | None = None) -> None:
        """``secure``: the DAQ's CURVE identity, for boards that take only authorised keys."""
        self.describe = endpoint
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVBUF, 8 << 20)
        if secure is not None:
            secure(self._sock)
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise UserError(f"cannot connect to {endpoint}: {exc}") from None
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)

    def read(self, timeout_s: float) -> bytes:
        return b"".join(self.read_parts(timeout_s))

    def read_parts(self, timeout_s: float) -> list[memoryview]:
        """The messages waiting (up to 64: one journal block), each as a read-only view of
        ZeroMQ's own buffer: no copy (the journal writes them from there, the decoder reads them
        there)."""
        if not self._poller.poll(int(timeout_s * 1000)):
            return []
        return self.drain()

    def drain(self, limit: int = MESSAGES_PER_READ) -> list[memoryview]:
        """The messages waiting now, up to ``limit`` (``[]`` when none), as :meth:`read_parts`
        gives them, without waiting."""
        parts = []
        while len(parts) < limit:
            try:
                parts.append(self._sock.recv(zmq.NOBLOCK, copy=False).buffer.toreadonly())
            except zmq.Again:
                break
        return parts

    @property
    def socket(self) -> zmq.Socket:
        """The PULL socket (for a :class:`ZmqLinks` poller that serves several boards)."""
        return self._sock

    def close(self) -> None:
        self._sock.close()


class ZmqLinks:
    """Several ZeroMQ links read by one thread: one poll over every socket, then what each
    ready socket holds (a thread per link would hand the GIL and the CPU back and forth at
    every message)."""

    def __init__(self, sources: list[ZmqSource]) -> None:
        self.sources = list(sources)
        self._poller = zmq.Poller()
        self._open = set(range(len(self.sources)))
        for s in self.sources:
            self._poller.register(s.socket, zmq.POLLIN)

    def read(self, timeout_s: float) -> dict[int, list[memoryview]]:
        """{link: its messages} for every open link that has some, waiting up to ``timeout_s``
        for the first; ``{}`` when none came."""
        ready = dict(self._poller.poll(int(timeout_s * 1000)))
        out = {}
        for k in sorted(self._open):
            if self.sources[k].socket in ready:
                parts = self.sources[k].drain()
                if parts:
                    out[k] = parts
        return out

    def close(self, k: int) -> None:
        """Stop polling link ``k`` and close it."""
        if k in self._open:
            self._open.discard(k)
            self._poller.unregister(self.sources[k].socket)
            self.sources[k].close()

    @property
    def open_links(self) -> list[int]:
        return sorted(self._open)


class _KeepingSerial(serial.Serial):
    """pyserial's port without its flush of the input at open: bytes a board sent before the
    DAQ opened the line are data (a frame survives whatever came before it, hw/WIRE.md)."""

    def _reset_input_buffer(self) -> None:
        pass


class SerialSource:
    """A serial line through pyserial: a device path, a pty, or a pyserial URL. What arrived
    before the line was opened is read too."""

    def __init__(self, port: str, baudrate: int = 3_000_000, read_bytes: int = 1 << 16) -> None:
        self.describe = port
        self._read_bytes = read_bytes
        try:
            self._port = (serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
                          if port.startswith(SERIAL_URL_SCHEMES) else
                          _KeepingSerial(port, baudrate=baudrate, timeout=0.05))
        except (serial.SerialException, ValueError, OSError) as exc:
            if not port.startswith(SERIAL_URL_SCHEMES) and not os.path.exists(port):
                raise UserError(f"serial device {port} does not exist") from None
            raise UserError(f"cannot open serial port {port}: {exc}") from None

    def read(self, timeout_s: float) -> bytes:
        """What is waiting (at most ``read_bytes``), else wait up to the port timeout (50 ms)."""
        try:
            waiting = self._port.in_waiting
            data = self._port.read(min(max(waiting, 1), self._read_bytes))
            if data and not waiting:
                data += self._port.read(min(self._port.in_waiting, self._read_bytes))
            return data
        except (serial.SerialException, OSError) as exc:
            raise UserError(f"serial port {self.describe} failed: {exc}") from None

    def close(self) -> None:
        self._port.close()


#: Bytes at the start of a frames file that must hold an intact frame.
CHECK_BYTES = 1 << 20


def _has_a_frame(data: bytes) -> bool:
    """Whether ``data`` holds at least one intact frame of the wire protocol."""
    from hw import wire

    decoder = wire.Decoder()
    decoder.feed(data)
    return decoder.stats.frames_ok > 0


class FileSource:
    """A recorded frames file, read in large pieces as fast as the pipeline takes them."""

    def __init__(self, path: str | Path, read_bytes: int = 4 << 20) -> None:
        self.describe = str(path)
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
            head = self._fh.read(CHECK_BYTES)
            self._fh.seek(0)
        except OSError as exc:
            raise UserError(f"cannot read frames file {path}: {exc.strerror}") from None
        if not _has_a_frame(head):
            self._fh.close()
            raise UserError(f"{path} is not a frames file: no intact frame in its first "
                            f"{len(head)} bytes (petdaq emulate --to FILE.frames records one)")
        self._read_bytes = read_bytes

    def read(self, timeout_s: float) -> bytes | None:
        data = self._fh.read(self._read_bytes)
        return data or None

    def close(self) -> None:
        self._fh.close()


def open_source(spec: str, baudrate: int = 3_000_000, secure: keys.Secure | None = None
                ) -> Source:
    """The source a ``--from`` specification names (see the module docstring); ``secure``:
    the DAQ's CURVE identity for ZeroMQ boards that need keys."""
    if spec.startswith(ZMQ_SCHEMES):
        return ZmqSource(spec, secure=secure)
    if spec.startswith("pty:"):
        return SerialSource(spec[4:], baudrate)
    if spec.startswith(SERIAL_URL_SCHEMES) or spec.startswith("/dev/"):
        return SerialSource(spec, baudrate)
    if Path(spec).is_file():
        return FileSource(spec)
    raise UserError(
        f"cannot read from '{spec}': not a tcp:// or ipc:// endpoint, a serial device or URL, "
        "pty:/dev/pts/N, or an existing frames file"
    )
