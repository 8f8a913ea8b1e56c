"""Where the digitizer boards' frames go: ZeroMQ PUSH, serial lines (device, pty, pyserial URL),
or a frames file. Every board is its own stream.

``open_sink(spec, n_boards)``:

=============================  =================================================================
``tcp://host:port``            one PUSH socket per board, bound at port + board (bounded SNDHWM:
                               a slow DAQ holds the emulator back, nothing is dropped)
``ipc://path``                 one PUSH per board at ``path`` (board 0) and ``path-<board>``
``pty``                        one pseudo-terminal pair per board; the DAQ opens ``pty:<device>``
``/dev/ttyX`` or a URL         a serial device or pyserial URL (``socket://``, ``rfc2217://``,
                               ``loop://``): all boards' frames on that line (each frame carries its
                               board id), or one line per board given as a comma-separated list
``PATH``                       a frames file with every board's frames in time order, or one file
                               per board when PATH contains ``{board}``
=============================  =================================================================
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios
import time
import tty
from pathlib import Path
from typing import BinaryIO, Protocol

import serial
import zmq

from hw.wire.format import SERIAL_URL_SCHEMES
from infra import keys
from infra.errors import UserError

#: Messages a PUSH socket queues per board before the emulator waits for the DAQ.
SEND_HWM = 256


class Sink(Protocol):
    """A set of per-board byte streams."""

    endpoints: list[str]
    """What the DAQ connects to, per board (for messages and ``--from``)."""

    def send(self, board: int, data: bytes) -> None: ...

    def close(self) -> None: ...


class ZmqSink:
    """One bound PUSH socket per board; with a key folder, only its authorised clients may
    connect (CURVE), so that no other program takes a board's events.

    The sink owns its ZeroMQ context: :meth:`close` ends it, which waits (up to the linger time)
    until the readers have every frame still queued; a process that exits without ending its
    context loses them, and libzmq's threads outlive the interpreter (a crash at exit).
    """

    def __init__(self, endpoints: list[str], hwm: int = SEND_HWM, linger_ms: int = 10_000,
                 key_folder: keys.KeyFolder | None = None) -> None:
        self.endpoints = endpoints
        self._guard = keys.Guard(key_folder) if key_folder else None
        self._ctx = None if self._guard else zmq.Context()
        ctx = self._guard.context if self._guard else self._ctx
        self._socks: list[zmq.Socket] = []
        for endpoint in endpoints:
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.LINGER, linger_ms)
            sock.setsockopt(zmq.SNDBUF, 8 << 20)
            if self._guard is not None:
                self._guard.serve(sock)
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                sock.close(0)
                self.close(0)
                if exc.errno == errno.EADDRINUSE:
                    raise UserError(f"cannot send to {endpoint}: the address is already in use "
                                    "(another emulator or program holds it)") from None
                raise UserError(f"cannot send to {endpoint}: {exc}") from None
            self._socks.append(sock)

    def send(self, board: int, data: bytes) -> None:
        self._socks[board].send(data, copy=len(data) < 65536)

    def close(self, linger_ms: int | None = None) -> None:
        for sock in self._socks:
            sock.close(linger_ms)
        self._socks = []
        if self._guard is not None:  # after the sockets have sent what they hold
            self._guard.close()
            self._guard = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None


#: How long a pty's input queue must stay empty before its master is closed (s).
_PTY_QUIET_S = 0.1


class StreamSink:
    """Byte streams (files, serial ports, pty masters): board b writes to ``streams[route[b]]``."""

    def __init__(self, streams: list[BinaryIO], route: list[int], endpoints: list[str],
                 keep: list[int] | None = None) -> None:
        self.endpoints = endpoints
        self._streams, self._route = streams, route
        self._keep = keep or []          # pty slave descriptors held open until the end

    def send(self, board: int, data: bytes) -> None:
        stream = self._streams[self._route[board]]
        view = memoryview(data)
        while view:                       # unbuffered streams (pty) may take part of it
            view = view[stream.write(view) or 0:]

    def close(self, drain_timeout_s: float = 10.0) -> None:
        for s in self._streams:
            s.flush()
        # a pty loses what its reader has not taken when the master closes: wait until its
        # input queue has stayed empty a while (the kernel hands written bytes over to it
        # asynchronously, so one empty look is not enough)
        deadline = time.monotonic() + drain_timeout_s
        quiet_since = time.monotonic()
        while self._keep and time.monotonic() < deadline:
            if any(_queued(fd) for fd in self._keep):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _PTY_QUIET_S:
                break
            time.sleep(0.01)
        for s in self._streams:
            s.close()
        for fd in self._keep:
            os.close(fd)
        self._streams, self._keep = [], []


def _queued(fd: int) -> int:
    """Bytes waiting in a terminal's input queue."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _zmq_endpoints(spec: str, n_boards: int) -> list[str]:
    """The boards' endpoints of a tcp:// (port + board) or ipc:// (path-board) ``spec``."""
    if not spec.startswith("tcp://"):
        return [spec if b == 0 else f"{spec}-{b}" for b in range(n_boards)]
    host, _, port = spec[6:].rpartition(":")
    if not port.isdigit() or not host:
        raise UserError(f"--to {spec}: expected tcp://host:port")
    if not 1 <= int(port) <= 65536 - n_boards:
        raise UserError(f"--to {spec}: the {n_boards} boards take ports {port} to "
                        f"{int(port) + n_boards - 1}; a TCP port is 1 to 65535")
    return [f"tcp://{host}:{int(port) + b}" for b in range(n_boards)]


def check_sink(spec: str, n_boards: int, key_folder: keys.KeyFolder | None = None) -> None:
    """Refuse a ``--to`` that cannot work before anything is emulated (the sink itself opens
    once the emulator's kernels are compiled): a bad endpoint, or boards reachable from other
    machines without keys."""
    if spec.startswith(("tcp://", "ipc://")):
        _zmq_endpoints(spec, n_boards)
        if spec.startswith("tcp://"):
            keys.needs_keys(spec[6:].rpartition(":")[0], key_folder, "the boards' data links")
    elif "://" in spec and not spec.startswith(SERIAL_URL_SCHEMES):
        raise UserError(f"--to {spec}: unknown scheme (tcp://, ipc://, pty, a serial device or "
                        "pyserial URL, or a file path)")


def _zmq(spec: str, n_boards: int, key_folder: keys.KeyFolder | None) -> ZmqSink:
    check_sink(spec, n_boards, key_folder)
    return ZmqSink(_zmq_endpoints(spec, n_boards), key_folder=key_folder)


def _pty(n_boards: int) -> StreamSink:
    streams, keep, names = [], [], []
    for _ in range(n_boards):
        master, slave = os.openpty()
        tty.setraw(slave)                     # bytes as they are: no echo, no line editing
        streams.append(os.fdopen(master, "wb", buffering=0))
        keep.append(slave)
        names.append(f"pty:{os.ttyname(slave)}")
    return StreamSink(streams, list(range(n_boards)), names, keep)


def _serial(ports: list[str], n_boards: int, baudrate: int) -> StreamSink:
    if len(ports) not in (1, n_boards):
        raise UserError(f"--to: give one serial line for all boards or one per board "
                        f"({n_boards}), got {len(ports)}")
    streams = []
    for port in ports:
        try:
            streams.append(serial.serial_for_url(port, baudrate=baudrate, write_timeout=None))
        except (serial.SerialException, ValueError) as exc:
            for s in streams:
                s.close()
            if not port.startswith(SERIAL_URL_SCHEMES) and not Path(port).exists():
                raise UserError(f"serial device {port} does not exist") from None
            raise UserError(f"cannot open serial line {port}: {exc}") from None
    route = [0] * n_boards if len(ports) == 1 else list(range(n_boards))
    return StreamSink(streams, route, [ports[r] for r in route])


def file_paths(spec: str, n_boards: int) -> list[Path] | None:
    """The frames file(s) a ``--to`` names (one, or one per board with ``{board}``); None when
    it names another transport."""
    parts = spec.split(",")
    if spec.startswith(("tcp://", "ipc://")) or spec == "pty" or "://" in spec or all(
            p.startswith(SERIAL_URL_SCHEMES) or p.startswith("/dev/") for p in parts):
        return None
    return [Path(spec.format(board=b)) for b in range(n_boards)] if "{board}" in spec \
        else [Path(spec)]


def _files(spec: str, n_boards: int) -> StreamSink:
    return open_files(file_paths(spec, n_boards) or [], n_boards)


def open_files(paths: list[Path], n_boards: int) -> StreamSink:
    """A sink writing every board's frames to ``paths`` (one file, or one per board)."""
    streams = []
    for path in paths:
        try:
            streams.append(path.open("wb"))
        except OSError as exc:
            raise UserError(f"cannot write frames file {path}: {exc.strerror}") from None
    route = list(range(n_boards)) if len(paths) > 1 else [0] * n_boards
    return StreamSink(streams, route, [str(paths[r]) for r in route])


def open_sink(spec: str, n_boards: int, baudrate: int = 3_000_000,
              key_folder: keys.KeyFolder | None = None) -> Sink:
    """The per-board streams named by ``spec`` (see the module docstring); ZeroMQ boards with
    ``key_folder``: CURVE servers."""
    if spec.startswith(("tcp://", "ipc://")):
        return _zmq(spec, n_boards, key_folder)
    if spec == "pty":
        return _pty(n_boards)
    parts = spec.split(",")
    if all(p.startswith(SERIAL_URL_SCHEMES) or p.startswith("/dev/") for p in parts):
        return _serial(parts, n_boards, baudrate)
    if "://" in spec:
        raise UserError(f"--to {spec}: unknown scheme (tcp://, ipc://, pty, a serial device or "
                        "pyserial URL, or a file path)")
    return _files(spec, n_boards)
