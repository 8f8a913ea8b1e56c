"""Frame packers: the host's numba encoder (hw.wire) or the firmware's C packer (hw/firmware).

Both produce the same bytes (the hw tests hold them to it); ``--firmware c`` runs the C99 code that
the digitizer's microcontroller runs, built here with the system C compiler into a cache folder
and driven through ctypes, one frame of up to 256 events per call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

from emulator.detector.electronics import latched
from emulator.outputs.qemuboards import QemuPacker
from hw import wire
from hw.scanner import Scanner
from infra.errors import UserError

SOURCE = Path(wire.__file__).parent.parent / "firmware" / "bpet_wire.c"
#: bpet_event_t with the C compiler's natural alignment (hw/firmware/bpet_wire.h).
EVENT_DTYPE = np.dtype([("coarse", "<u4"), ("channel", "<u2"), ("adc", "<u2"), ("fine", "u1")],
                       align=True)
_FLAGS = ["-O2", "-std=c99", "-shared", "-fPIC"]


class Packer(Protocol):
    """Turns a board's events, heartbeats and markers into wire frames."""

    def events(self, raw: np.ndarray, board: int, first_seq: int) -> bytes: ...

    def status(self, board: int, seq: int, t_ps: int, events_sent: int) -> bytes: ...

    def marker(self, kind: int, board: int, seq: int, t_ps: int, run: int) -> bytes: ...

    def close(self) -> None: ...


class NumbaPacker:
    """hw.wire's encoder (numba kernels)."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    def events(self, raw: np.ndarray, board: int, first_seq: int) -> bytes:
        return wire.encode(raw, board=board, first_seq=first_seq, scanner=self.scanner)

    def status(self, board: int, seq: int, t_ps: int, events_sent: int) -> bytes:
        return wire.encode_status(board=board, seq=seq, t_ps=t_ps, events_sent=events_sent,
                                  fifo_overflows=0, scanner=self.scanner)

    def marker(self, kind: int, board: int, seq: int, t_ps: int, run: int) -> bytes:
        return wire.encode_marker(kind, board=board, seq=seq, t_ps=t_ps, run=run,
                                  scanner=self.scanner)

    def close(self) -> None:
        pass


def _library() -> ctypes.CDLL:
    code = SOURCE.read_bytes()
    tag = hashlib.sha256(code + " ".join(_FLAGS).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bedside-pet"
    so = cache / f"libbpet_wire-{tag}.so"
    if not so.exists():
        cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)),
                  None)
        if cc is None:
            raise UserError("--firmware c needs a C compiler (cc, gcc or clang) to build "
                            f"{SOURCE.name}; none found")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            target = Path(tmp) / so.name
            build = subprocess.run([cc, *_FLAGS, "-o", str(target), str(SOURCE)],
                                   capture_output=True, text=True, check=False)
            if build.returncode:
                raise UserError(f"cannot build {SOURCE}: {build.stderr.strip().splitlines()[-1]}")
            os.replace(target, so)
    lib = ctypes.CDLL(str(so))
    u8p, size_t = ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t
    u16, u32 = ctypes.c_uint16, ctypes.c_uint32
    lib.bpet_pack_events.argtypes = [ctypes.c_void_p, u16, u16, u32, u8p, size_t]
    lib.bpet_pack_status.argtypes = [u16, u32, u32, u32, u32, u32, u8p, size_t]
    lib.bpet_pack_marker.argtypes = [ctypes.c_uint8, u16, u32, u32, u32, u8p, size_t]
    for fn in ("bpet_pack_events", "bpet_pack_status", "bpet_pack_marker", "bpet_event_size"):
        getattr(lib, fn).restype = size_t
    if lib.bpet_event_size() != EVENT_DTYPE.itemsize:
        raise UserError(f"{so}: bpet_event_t is {lib.bpet_event_size()} bytes, expected "
                        f"{EVENT_DTYPE.itemsize}")
    return lib


class CPacker:
    """The firmware's C packer (hw/firmware/bpet_wire.c) through ctypes."""

    def __init__(self, scanner: Scanner) -> None:
        self.lib = _library()
        self.clock = wire.WireClock.of(scanner)
        self.channel = scanner.crystal_channel
        self._out = np.zeros(wire.MAX_FRAME_BYTES, np.uint8)
        self._ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))

    def _coarse(self, t_ps: int) -> int:
        return (int(t_ps) // self.clock.period_ps) & ((1 << self.clock.counter_bits) - 1)

    def events(self, raw: np.ndarray, board: int, first_seq: int) -> bytes:
        ev = latched(raw, self.clock, self.channel, np.zeros(raw.size, EVENT_DTYPE))
        frames = []
        for i, k in enumerate(range(0, ev.size, wire.EVENTS_PER_FRAME)):
            part = np.ascontiguousarray(ev[k:k + wire.EVENTS_PER_FRAME])
            n = self.lib.bpet_pack_events(part.ctypes.data, part.size, board,
                                          (first_seq + i) & 0xFFFFFFFF, self._ptr,
                                          self._out.size)
            frames.append(self._out[:n].tobytes())
        return b"".join(frames)

    def status(self, board: int, seq: int, t_ps: int, events_sent: int) -> bytes:
        n = self.lib.bpet_pack_status(board, seq & 0xFFFFFFFF, self._coarse(t_ps),
                                      events_sent & 0xFFFFFFFF, 0, 0, self._ptr, self._out.size)
        return self._out[:n].tobytes()

    def marker(self, kind: int, board: int, seq: int, t_ps: int, run: int) -> bytes:
        n = self.lib.bpet_pack_marker(kind, board, seq & 0xFFFFFFFF, self._coarse(t_ps), run,
                                      self._ptr, self._out.size)
        return self._out[:n].tobytes()

    def close(self) -> None:
        pass


def packer(kind: str, scanner: Scanner, commands: str | None = None) -> Packer:
    """``numba`` (hw.wire), ``c`` (the firmware's packer) or ``qemu`` (the whole firmware, each
    board in its own emulated microcontroller: :mod:`emulator.outputs.qemuboards`; ``commands``: where
    the host's commands come from, else the packer starts and stops the boards' runs)."""
    if commands is not None and kind != "qemu":
        raise UserError("--commands is for --firmware qemu: only the firmware takes commands")
    if kind == "numba":
        return NumbaPacker(scanner)
    if kind == "c":
        return CPacker(scanner)
    if kind == "qemu":
        return QemuPacker(scanner, commands=commands)
    raise UserError(f"unknown firmware '{kind}': choose numba, c or qemu")
