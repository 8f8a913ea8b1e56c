"""The C99 firmware frame packer (hw/firmware/) against hw.wire, byte for byte.

The packer is compiled with the system C compiler into a temporary shared library and driven
through ctypes with the same events as the Python encoder; both must also reproduce the golden
frames of tests/golden/wire_v2.json. Skipped only when no C compiler exists.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import RAW_DTYPE, wire

FIRMWARE = Path(wire.__file__).parent.parent / "firmware"
GOLDEN = Path(__file__).parent / "golden" / "wire_v2.json"
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Wshadow",
          "-Werror", "-shared", "-fPIC"]
#: bpet_event_t with the C compiler's natural alignment.
EVENT_DTYPE = np.dtype([("coarse", "<u4"), ("channel", "<u2"), ("adc", "<u2"), ("fine", "u1")],
                       align=True)
SETTINGS = settings(max_examples=40, deadline=None)

u8p = ctypes.POINTER(ctypes.c_uint8)


def c_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    cc = c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine: cannot build the "
                    "firmware packer (apt-get install gcc libc6-dev; .ci/run does)")
    so = tmp_path_factory.mktemp("firmware") / "libbpet_wire.so"
    build = subprocess.run([cc, *CFLAGS, "-o", str(so), str(FIRMWARE / "bpet_wire.c")],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"firmware does not build:\n{build.stderr}"
    lib = ctypes.CDLL(str(so))
    size_t, u16, u32 = ctypes.c_size_t, ctypes.c_uint16, ctypes.c_uint32
    lib.bpet_pack_events.argtypes = [ctypes.c_void_p, u16, u16, u32, u8p, size_t]
    lib.bpet_pack_status.argtypes = [u16, u32, u32, u32, u32, u32, u8p, size_t]
    lib.bpet_pack_marker.argtypes = [ctypes.c_uint8, u16, u32, u32, u32, u8p, size_t]
    lib.bpet_crc32.argtypes = [u32, u8p, size_t]
    lib.bpet_pack_command.argtypes = [u16, u32, ctypes.c_uint8, u32, ctypes.c_uint64, u8p, size_t]
    lib.bpet_pack_reply.argtypes = [u16, u32, ctypes.c_uint8, ctypes.c_uint8, u32, u32, u32, u8p,
                                    size_t]
    lib.bpet_unpack_control.argtypes = [u8p, size_t, ctypes.c_void_p]
    for fn in ("bpet_pack_events", "bpet_pack_status", "bpet_pack_marker", "bpet_event_size",
               "bpet_pack_command", "bpet_pack_reply"):
        getattr(lib, fn).restype = size_t
    lib.bpet_crc32.restype = u32
    assert lib.bpet_event_size() == EVENT_DTYPE.itemsize
    return lib


class Out:
    """An output buffer for one frame."""

    def __init__(self, cap: int = wire.MAX_FRAME_BYTES) -> None:
        self.buf = np.zeros(cap, np.uint8)
        self.ptr = self.buf.ctypes.data_as(u8p)
        self.cap = cap

    def take(self, n: int) -> bytes:
        return self.buf[:n].tobytes()


def c_events(lib, ev: np.ndarray, board: int, first_seq: int) -> bytes:
    """EVENTS frames of ``ev`` (EVENT_DTYPE) packed by the firmware, 256 per frame."""
    out, frames = Out(), []
    for i, k in enumerate(range(0, ev.size, 256)):
        chunk = np.ascontiguousarray(ev[k: k + 256])
        n = lib.bpet_pack_events(chunk.ctypes.data, chunk.size, board,
                                 (first_seq + i) & 0xFFFFFFFF, out.ptr, out.cap)
        assert n > 0
        frames.append(out.take(n))
    return b"".join(frames)


def latched(raw: np.ndarray, channel: np.ndarray, clock: wire.WireClock) -> np.ndarray:
    """What a board's hardware latches for events ``raw`` (WIRE.md section 4, encoding)."""
    p = clock.period_ps
    coarse = raw["t"] // p
    ev = np.zeros(raw.size, EVENT_DTYPE)
    ev["coarse"] = coarse & ((1 << clock.counter_bits) - 1)
    ev["fine"] = ((raw["t"] - coarse * p) << clock.tdc_bits) // p
    ev["channel"] = channel
    ev["adc"] = raw["adc"]
    return ev


def test_source_is_portable_c99():
    """No allocation, no floating point, no library beyond the fixed-width integer headers."""
    for path in ("bpet_wire.c", "bpet_wire.h", "bpet_board.c", "bpet_board.h", "bpet_port.h"):
        code = re.sub(r"/\*.*?\*/", "", (FIRMWARE / path).read_text(encoding="utf-8"),
                      flags=re.S)
        assert set(re.findall(r"#include\s+[<\"]([^>\"]+)", code)) <= {
            "stdint.h", "stddef.h", "bpet_wire.h", "bpet_board.h", "bpet_port.h"}
        for word in ("malloc", "calloc", "realloc", "free", "float", "double", "memcpy"):
            assert not re.search(rf"\b{word}\b", code), f"{path} uses {word}"


def test_golden_vectors_c_side(lib):
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    kinds = {"RUN_START": wire.RUN_START, "RUN_STOP": wire.RUN_STOP}
    out = Out()
    for fr in doc["frames"]:
        if fr["type"] == "EVENTS":
            rows = np.array(fr["events"], np.int64).reshape(-1, 5)
            ev = np.zeros(len(rows), EVENT_DTYPE)
            ev["coarse"], ev["fine"], ev["channel"], ev["adc"] = rows[:, 1:].T
            got = c_events(lib, ev, fr["board"], fr["seq"])
        elif fr["type"] == "STATUS":
            got = out.take(lib.bpet_pack_status(fr["board"], fr["seq"], fr["coarse"],
                                                fr["events_sent"], fr["fifo_overflows"],
                                                fr["flags"], out.ptr, out.cap))
        elif fr["type"] == "COMMAND":
            got = out.take(lib.bpet_pack_command(fr["board"], fr["seq"], fr["opcode"], fr["a"],
                                                 fr["b"], out.ptr, out.cap))
            assert unpack(lib, got) == (5, fr["board"], fr["seq"], fr["opcode"], fr["a"],
                                        fr["b"] & 0xFFFFFFFF, fr["b"] >> 32)
        elif fr["type"] == "REPLY":
            got = out.take(lib.bpet_pack_reply(fr["board"], fr["seq"], fr["opcode"],
                                               fr["result"], fr["cmd_seq"], fr["value"],
                                               fr["rejected"], out.ptr, out.cap))
        else:
            got = out.take(lib.bpet_pack_marker(kinds[fr["type"]], fr["board"], fr["seq"],
                                                fr["coarse"], fr["run"], out.ptr, out.cap))
        assert got.hex() == fr["hex"], fr["name"]


class Control(ctypes.Structure):
    """bpet_control_t."""

    _fields_ = [("type", ctypes.c_uint8), ("board", ctypes.c_uint16), ("seq", ctypes.c_uint32),
                ("w0_lo", ctypes.c_uint32), ("w0_hi", ctypes.c_uint32),
                ("w1_lo", ctypes.c_uint32), ("w1_hi", ctypes.c_uint32)]


def unpack(lib, frame: bytes) -> tuple | None:
    """The firmware's reading of one frame (delimiters included): its fields, or None."""
    chunk = np.frombuffer(frame[1:-1], np.uint8).copy()
    c = Control()
    if not lib.bpet_unpack_control(chunk.ctypes.data_as(u8p), chunk.size, ctypes.byref(c)):
        return None
    return c.type, c.board, c.seq, c.w0_lo, c.w0_hi, c.w1_lo, c.w1_hi


def test_the_firmware_refuses_a_damaged_command(lib):
    """Every single-byte change of a COMMAND frame (other than to 0x00) is refused."""
    frame = bytearray(wire_command(lib))
    assert unpack(lib, bytes(frame)) is not None
    for i in range(1, len(frame) - 1):
        for value in (1, 0x55, 0xFF):
            if frame[i] == value:
                continue
            bad = bytearray(frame)
            bad[i] = value
            assert unpack(lib, bytes(bad)) is None, (i, value)
    assert unpack(lib, bytes(frame[:-3]) + b"\x00") is None  # cut short


def wire_command(lib) -> bytes:
    out = Out()
    return out.take(lib.bpet_pack_command(7, 3, 2, 17, 0, out.ptr, out.cap))


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(0, 800), board=st.integers(0, 3),
       first_seq=st.integers(0, 2**32 - 1), counter_bits=st.integers(16, 32),
       tdc_bits=st.integers(0, 8), clock_mhz=st.sampled_from([100.0, 160.0, 200.0, 250.0]),
       max_gap_ps=st.sampled_from([1, 1000, 10**7, 10**13]))
def test_c_packer_equals_python_encoder(lib, brain, seed, n, board, first_seq, counter_bits,
                                        tdc_bits, clock_mhz, max_gap_ps):
    scanner = dataclasses.replace(brain, digitizer=dataclasses.replace(
        brain.digitizer, counter_bits=counter_bits, tdc_bits=tdc_bits, clock_mhz=clock_mhz))
    rng = np.random.default_rng(seed)
    raw = np.zeros(n, RAW_DTYPE)
    raw["t"] = np.cumsum(rng.integers(0, max_gap_ps + 1, n))
    raw["crystal"] = rng.choice(np.flatnonzero(scanner.crystal_board == board), n)
    raw["adc"] = rng.integers(0, 4096, n)
    ev = latched(raw, scanner.crystal_channel[raw["crystal"]], wire.WireClock.of(scanner))
    assert c_events(lib, ev, board, first_seq) == wire.encode(
        raw, board=board, first_seq=first_seq, scanner=scanner)


@SETTINGS
@given(board=st.integers(0, 0xFFFF), seq=st.integers(0, 2**32 - 1),
       t_ps=st.integers(0, 2**62), a=st.integers(0, 2**32 - 1), b=st.integers(0, 2**32 - 1),
       flags=st.integers(0, 2**32 - 1), stop=st.booleans())
def test_c_control_frames_equal_python(lib, board, seq, t_ps, a, b, flags, stop):
    out = Out()
    coarse = (t_ps // 5000) & 0xFFFFFFFF
    n = lib.bpet_pack_status(board, seq, coarse, a, b, flags, out.ptr, out.cap)
    assert out.take(n) == wire.encode_status(board=board, seq=seq, t_ps=t_ps, events_sent=a,
                                             fifo_overflows=b, flags=flags)
    kind = wire.RUN_STOP if stop else wire.RUN_START
    n = lib.bpet_pack_marker(kind, board, seq, coarse, a, out.ptr, out.cap)
    assert out.take(n) == wire.encode_marker(kind, board=board, seq=seq, t_ps=t_ps, run=a)


def test_c_crc32_is_zlibs(lib):
    rng = np.random.default_rng(2)
    for n in (0, 1, 9, 100, 2064):
        data = np.frombuffer(rng.bytes(n), np.uint8).copy()
        assert lib.bpet_crc32(0, data.ctypes.data_as(u8p), n) == zlib.crc32(data.tobytes())
    check = np.frombuffer(b"123456789", np.uint8).copy()
    assert lib.bpet_crc32(0, check.ctypes.data_as(u8p), 9) == 0xCBF43926


def test_c_packer_rejects_bad_arguments(lib):
    ev = np.zeros(257, EVENT_DTYPE)
    out = Out()
    assert lib.bpet_pack_events(ev.ctypes.data, 257, 0, 0, out.ptr, out.cap) == 0
    assert lib.bpet_pack_events(ev.ctypes.data, 256, 0, 0, out.ptr, out.cap) > 0
    small = Out(wire.MAX_FRAME_BYTES - 1)  # below the worst case of a full frame
    assert lib.bpet_pack_events(ev.ctypes.data, 256, 0, 0, small.ptr, small.cap) == 0
    ev["channel"][5] = 4096
    assert lib.bpet_pack_events(ev.ctypes.data, 10, 0, 0, out.ptr, out.cap) == 0
    ev["channel"][5], ev["adc"][7] = 4095, 4096
    assert lib.bpet_pack_events(ev.ctypes.data, 10, 0, 0, out.ptr, out.cap) == 0
    assert lib.bpet_pack_marker(wire.STATUS, 0, 0, 0, 0, out.ptr, out.cap) == 0
    assert lib.bpet_pack_status(0, 0, 0, 0, 0, 0, out.ptr, 34) == 0
    assert lib.bpet_pack_status(0, 0, 0, 0, 0, 0, out.ptr, 35) > 0


def test_firmware_frames_decode_on_the_host(lib, brain):
    """A board's whole run as the firmware would send it: marker, events, heartbeats, marker."""
    rng = np.random.default_rng(4)
    raw = np.zeros(2000, RAW_DTYPE)
    raw["t"] = np.cumsum(rng.integers(0, 30_000_000, raw.size))  # ~30 s: the counter wraps
    raw["crystal"] = rng.choice(np.flatnonzero(brain.crystal_board == 3), raw.size)
    raw["adc"] = rng.integers(0, 4096, raw.size)
    ev = latched(raw, brain.crystal_channel[raw["crystal"]], wire.WireClock.of(brain))
    out, stream, seq = Out(), bytearray(), 0
    stream += out.take(lib.bpet_pack_marker(wire.RUN_START, 3, seq, 0, 12, out.ptr, out.cap))
    for k in range(0, raw.size, 100):
        seq += 1
        stream += c_events(lib, ev[k: k + 100], 3, seq)
        seq += 1
        stream += out.take(lib.bpet_pack_status(3, seq, int(ev["coarse"][k + 99]), k + 100, 0, 0,
                                                out.ptr, out.cap))
    dec = wire.Decoder(brain)
    got = dec.feed(bytes(stream))
    np.testing.assert_array_equal(got["crystal"], raw["crystal"])
    np.testing.assert_array_equal(got["adc"], raw["adc"])
    err = raw["t"] - got["t"]
    assert err.min() >= 0 and err.max() < 5000 / 256 + 1
    s = dec.stats
    assert (s.frames_ok, s.frames_bad, s.seq_gaps, s.status_frames) == (41, 0, 0, 20)
    assert s.boards[3].status.events_sent == 2000
    assert dec.markers == [wire.RunMarker("start", 3, 0, 12, 0)]
