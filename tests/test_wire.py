"""hw.wire: frame layout against an independent pure-Python reference, round trips, decoder state.

The reference below (struct + zlib + a textbook COBS) follows hw/WIRE.md directly; the numba
encoder must produce its bytes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import RAW_DTYPE, _cobs, wire
from hw.wire.commands import encode_command, reply_of

GOLDEN = Path(__file__).parent / "golden" / "wire_v2.json"
GOLDEN_V1 = Path(__file__).parent / "golden" / "wire_v1.json"
WIRE_MD = Path(wire.__file__).parent.parent / "WIRE.md"
SETTINGS = settings(max_examples=40, deadline=None)


# ----------------------------------------------------------------------- reference


def ref_cobs(data: bytes) -> bytes:
    """COBS as in the paper: append a phantom 0x00, cut into blocks of <= 254 non-zero bytes."""
    out, block = bytearray(), bytearray()
    for b in data + b"\0":
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block.clear()
    return bytes(out)


def ref_frame(ftype: int, board: int, seq: int, words: list[int]) -> bytes:
    body = struct.pack("<BBHIHH", 2, ftype, board, seq, len(words), 0)
    body += b"".join(struct.pack("<Q", w) for w in words)
    return b"\0" + ref_cobs(body + struct.pack("<I", zlib.crc32(body))) + b"\0"


def frames_of(data: bytes) -> list[bytes]:
    """The whole frames (both delimiters) of an encoded stream."""
    return [b"\0" + x + b"\0" for x in data.split(b"\0") if x]


def ref_split(t: np.ndarray, clock: wire.WireClock) -> tuple[np.ndarray, np.ndarray]:
    """(coarse counter as sent, fine) of times ``t`` in ps."""
    p = clock.period_ps
    coarse = t // p
    fine = ((t - coarse * p) << clock.tdc_bits) // p
    return coarse & ((1 << clock.counter_bits) - 1), fine


def ref_encode(t, channel, adc, board, first_seq, clock) -> bytes:
    coarse, fine = ref_split(np.asarray(t, np.int64), clock)
    words = [int(c) | int(f) << 32 | int(ch) << 40 | int(a) << 52
             for c, f, ch, a in zip(coarse, fine, channel, adc, strict=True)]
    return b"".join(ref_frame(wire.EVENTS, board, (first_seq + i) & 0xFFFFFFFF,
                              words[k: k + 256])
                    for i, k in enumerate(range(0, len(words), 256)))


def quantised(t: np.ndarray, clock: wire.WireClock) -> np.ndarray:
    """The time the decoder must give back for true time ``t`` (WIRE.md, time reconstruction)."""
    p = clock.period_ps
    coarse = t // p
    fine = ((t - coarse * p) << clock.tdc_bits) // p
    return coarse * p + ((fine * p) >> clock.tdc_bits)


# ----------------------------------------------------------------------- helpers


def with_digitizer(scanner, **changes):
    """``scanner`` with its digitizer settings changed (clock_mhz, tdc_bits, counter_bits)."""
    return dataclasses.replace(scanner,
                               digitizer=dataclasses.replace(scanner.digitizer, **changes))


def random_events(rng: np.random.Generator, n: int, *, max_gap_ps: int, n_channels: int = 4096,
                  jitter_ps: int = 0, start_ps: int = 0) -> np.ndarray:
    """RAW_DTYPE events, roughly time ordered (gaps up to ``max_gap_ps``, +- ``jitter_ps``)."""
    raw = np.zeros(n, RAW_DTYPE)
    t = start_ps + np.cumsum(rng.integers(0, max_gap_ps + 1, n))
    if jitter_ps:
        t = np.maximum(t + rng.integers(-jitter_ps, jitter_ps + 1, n), 0)
    raw["t"] = t
    raw["crystal"] = rng.integers(0, n_channels, n)
    raw["adc"] = rng.integers(0, 4096, n)
    return raw


def assert_decoded(decoded: np.ndarray, raw: np.ndarray, clock: wire.WireClock) -> None:
    """``decoded`` is ``raw`` up to the documented time quantisation."""
    assert decoded.dtype == RAW_DTYPE
    assert decoded.size == raw.size
    np.testing.assert_array_equal(decoded["crystal"], raw["crystal"])
    np.testing.assert_array_equal(decoded["adc"], raw["adc"])
    np.testing.assert_array_equal(decoded["t"], quantised(raw["t"], clock))
    err = raw["t"] - decoded["t"]
    assert err.min(initial=0) >= 0
    assert err.max(initial=0) < clock.period_ps / (1 << clock.tdc_bits) + 1


# ----------------------------------------------------------------------- CRC and COBS


def test_crc32_is_zlibs():
    rng = np.random.default_rng(1)
    assert wire.crc32(b"123456789") == 0xCBF43926
    for n in (0, 1, 7, 8, 9, 63, 64, 1000, 4099):
        data = rng.bytes(n)
        assert wire.crc32(data) == zlib.crc32(data)
        assert wire.crc32(bytearray(data), 0xDEADBEEF) == zlib.crc32(data, 0xDEADBEEF)
        assert wire.crc32(memoryview(data)) == wire.crc32(np.frombuffer(data, np.uint8))
    head, tail = b"bedside", b"-pet journal"
    assert wire.crc32(tail, wire.crc32(head)) == zlib.crc32(head + tail)


def test_the_kernels_crc_is_zlibs_with_either_backend():
    """The decoder's kernel (ISA-L where installed) and the tables it falls back to give
    zlib's CRC of any slice, continued from any value."""
    from hw import _crc

    rng = np.random.default_rng(2)
    buf = np.frombuffer(rng.bytes(5000), np.uint8)
    for start, stop, value in ((0, 0, 0), (3, 4, 0), (1, 4999, 0), (17, 2100, 0xDEADBEEF)):
        want = zlib.crc32(buf[start:stop].tobytes(), value)
        assert _crc.crc32_update(value, buf, start, stop) == want
        assert _crc.crc32_tables(value, buf, start, stop) == want
    assert _crc.BACKEND in ("isa-l", "tables")


@SETTINGS
@given(st.binary(max_size=1200), st.floats(0.0, 1.0))
def test_cobs_matches_reference(data, zero_fraction):
    # thin the zeros out (or in) so that long zero-free runs (254-byte blocks) are common
    rng = np.random.default_rng(len(data))
    arr = np.frombuffer(data, np.uint8).copy()
    arr[arr == 0] = 1
    arr[rng.random(arr.size) < zero_fraction * 0.05] = 0
    data = arr.tobytes()
    enc = _cobs.encode(data)
    assert enc == ref_cobs(data)
    assert 0 not in enc and len(enc) <= _cobs.max_encoded_len(len(data))
    assert _cobs.decode(enc) == data


def test_cobs_block_boundaries():
    for n in (253, 254, 255, 508, 509, 2064):
        data = b"\x07" * n
        assert _cobs.encode(data) == ref_cobs(data)
        assert len(_cobs.encode(data)) == _cobs.max_encoded_len(n)
        assert _cobs.decode(_cobs.encode(data)) == data
    assert _cobs.decode(b"\x05\x01\x02") is None  # block runs past the end


# ----------------------------------------------------------------------- encoder


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(0, 700), board=st.integers(0, 0xFFFF),
       first_seq=st.integers(0, 2**32 - 1), max_gap_ps=st.sampled_from([10, 10**6, 10**13]))
def test_encode_matches_reference(seed, n, board, first_seq, max_gap_ps):
    raw = random_events(np.random.default_rng(seed), n, max_gap_ps=max_gap_ps)
    data = wire.encode(raw, board=board, first_seq=first_seq)
    assert data == ref_encode(raw["t"], raw["crystal"], raw["adc"], board, first_seq,
                              wire.DEFAULT_CLOCK)
    assert data.count(0) == 2 * wire.frames_for(n)


def test_frames_for_and_frame_size():
    assert [wire.frames_for(n) for n in (0, 1, 256, 257, 512, 513)] == [0, 1, 1, 2, 2, 3]
    assert wire.MAX_FRAME_BYTES == 2075
    raw = np.zeros(256, RAW_DTYPE)  # a frame with as few zero bytes as the layout allows
    raw["t"] = (2**32 - 1) * 5000 + 4999
    raw["crystal"] = raw["adc"] = 0xFFF
    frame = wire.encode(raw, board=0xFFFF, first_seq=2**32 - 1)
    assert len(frame) <= wire.MAX_FRAME_BYTES
    assert frame == ref_encode(raw["t"], raw["crystal"], raw["adc"], 0xFFFF, 2**32 - 1,
                               wire.DEFAULT_CLOCK)


def test_encode_with_scanner_sends_channels(brain):
    rng = np.random.default_rng(5)
    board = 2
    crystals = np.flatnonzero(brain.crystal_board == board)
    raw = random_events(rng, 1000, max_gap_ps=10**6)
    raw["crystal"] = rng.choice(crystals, raw.size)
    data = wire.encode(raw, board=board, first_seq=9, scanner=brain)
    assert data == ref_encode(raw["t"], brain.crystal_channel[raw["crystal"]], raw["adc"],
                              board, 9, wire.WireClock.of(brain))
    dec = wire.Decoder(brain)
    assert_decoded(dec.feed(data), raw, wire.WireClock.of(brain))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("t", -1, "negative"),
    ("crystal", 4096, "out of range"),
    ("crystal", -1, "out of range"),
    ("adc", 4096, "12 bits"),
])
def test_encode_rejects_unsendable_events(field, value, message):
    raw = np.zeros(300, RAW_DTYPE)
    raw[field][277] = value
    with pytest.raises(ValueError, match=f"event 277: .*{message}"):
        wire.encode(raw, board=0, first_seq=0)


def test_encode_rejects_other_boards_crystals_and_bad_arguments(brain):
    raw = np.zeros(3, RAW_DTYPE)
    raw["crystal"] = np.flatnonzero(brain.crystal_board == 1)[:3]
    raw["crystal"][1] = np.flatnonzero(brain.crystal_board == 0)[0]
    with pytest.raises(ValueError, match=r"event 1: crystal .* not read by board 1"):
        wire.encode(raw, board=1, first_seq=0, scanner=brain)
    raw["crystal"][1] = brain.n_crystals
    with pytest.raises(ValueError, match=r"event 1: .*out of range"):
        wire.encode(raw, board=1, first_seq=0, scanner=brain)
    with pytest.raises(ValueError, match="board id 65536"):
        wire.encode(raw[:0], board=65536, first_seq=0)
    with pytest.raises(ValueError, match="flags"):
        wire.encode_status(board=0, seq=0, t_ps=0, events_sent=0, fifo_overflows=0, flags=2**32)
    with pytest.raises(ValueError, match="marker kind 2"):
        wire.encode_marker(wire.STATUS, board=0, seq=0, t_ps=0, run=1)
    with pytest.raises(ValueError, match="negative"):
        wire.encode_marker(wire.RUN_START, board=0, seq=0, t_ps=-5, run=1)


def test_control_frames_match_reference():
    t = 30 * 10**12  # 30 s: the 32-bit counter at 200 MHz has wrapped once
    c = (t // 5000) & 0xFFFFFFFF
    assert wire.encode_status(board=3, seq=2**32 + 5, t_ps=t, events_sent=2**32 + 10,
                              fifo_overflows=4, flags=0x80000001) == ref_frame(
        wire.STATUS, 3, 5, [c | 10 << 32, 4 | 0x80000001 << 32])
    assert wire.encode_marker(wire.RUN_STOP, board=7, seq=1, t_ps=t, run=2**32 - 1) == ref_frame(
        wire.RUN_STOP, 7, 1, [c | (2**32 - 1) << 32, 0])


# ----------------------------------------------------------------------- round trips


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(0, 3000), counter_bits=st.integers(16, 32),
       tdc_bits=st.integers(0, 8), clock_mhz=st.sampled_from([100.0, 125.0, 160.0, 200.0, 250.0]),
       board=st.integers(0, 3), first_seq=st.integers(0, 2**32 - 1), feeds=st.integers(1, 7))
def test_round_trip_with_counter_wraps(brain, seed, n, counter_bits, tdc_bits, clock_mhz,
                                       board, first_seq, feeds):
    scanner = with_digitizer(brain, counter_bits=counter_bits, tdc_bits=tdc_bits,
                             clock_mhz=clock_mhz)
    clock = wire.WireClock.of(scanner)
    half_wrap_ps = (1 << (counter_bits - 1)) * clock.period_ps
    rng = np.random.default_rng(seed)
    # consecutive events stay within half a wrap of each other (and of counter 0 at start)
    raw = random_events(rng, n, max_gap_ps=half_wrap_ps // 3, jitter_ps=half_wrap_ps // 4,
                        start_ps=int(rng.integers(0, half_wrap_ps // 4)))
    raw["crystal"] = rng.choice(np.flatnonzero(scanner.crystal_board == board), n)
    data = wire.encode(raw, board=board, first_seq=first_seq, scanner=scanner)
    dec = wire.Decoder(scanner)
    cuts = np.sort(rng.integers(0, len(data) + 1, feeds - 1))
    out = np.concatenate([dec.feed(part) for part in np.split(np.frombuffer(data, np.uint8),
                                                              cuts)])
    assert_decoded(out, raw, clock)
    s = dec.stats
    assert (s.frames_ok, s.frames_bad, s.seq_gaps, s.events) == (wire.frames_for(n), 0, 0, n)
    assert dec.pending_bytes == 0
    if n >= 100:
        assert raw["t"].max() > 4 * 2 * half_wrap_ps  # the counter really wrapped, many times
    if n:
        assert dec.watermarks_ps == {board: int(quantised(raw["t"], clock).max())}


def test_round_trip_32_bit_counter_across_wraps():
    """Default clock (the 32-bit counter wraps every 21.47 s): events up to 8 s apart, ~15 min."""
    raw = random_events(np.random.default_rng(7), 200, max_gap_ps=8 * 10**12)
    assert raw["t"].max() > 20 * (2**32 * 5000)
    dec = wire.Decoder()
    assert_decoded(dec.feed(wire.encode(raw, board=5, first_seq=0)), raw, wire.DEFAULT_CLOCK)


def test_split_at_every_byte():
    """A small stream of every frame type, cut at every possible byte into two feeds."""
    rng = np.random.default_rng(11)
    raw = random_events(rng, 300, max_gap_ps=20_000)
    stream = (wire.encode_marker(wire.RUN_START, board=4, seq=0, t_ps=0, run=3)
              + wire.encode(raw, board=4, first_seq=1)
              + wire.encode_status(board=4, seq=3, t_ps=int(raw["t"][-1]), events_sent=300,
                                   fifo_overflows=2)
              + wire.encode_marker(wire.RUN_STOP, board=4, seq=4, t_ps=int(raw["t"][-1]) + 1,
                                   run=3))
    expected_markers = [wire.RunMarker("start", 4, 0, 3, 0),
                        wire.RunMarker("stop", 4, 4, 3, (int(raw["t"][-1]) + 1) // 5000 * 5000)]
    for cut in range(len(stream) + 1):
        dec = wire.Decoder()
        first = dec.feed(stream[:cut])
        assert dec.pending_bytes == cut - (stream.rfind(b"\0", 0, cut) + 1)
        out = np.concatenate([first, dec.feed(stream[cut:])])
        assert_decoded(out, raw, wire.DEFAULT_CLOCK)
        s = dec.stats
        assert (s.frames_ok, s.frames_bad, s.bytes_skipped, s.seq_gaps) == (5, 0, 0, 0)
        assert dec.markers == expected_markers
        assert s.boards[4].status == wire.StatusReport(int(raw["t"][-1]) // 5000 * 5000, 300,
                                                       2, 0)
    dec = wire.Decoder()  # and one byte per feed
    out = np.concatenate([dec.feed(stream[i: i + 1]) for i in range(len(stream))])
    assert_decoded(out, raw, wire.DEFAULT_CLOCK)


def test_every_board_id():
    """One event and one heartbeat from each of the 65536 board ids, interleaved in one stream."""
    boards = np.arange(1 << 16)
    raw = np.zeros(boards.size, RAW_DTYPE)
    raw["t"] = 10**9 + boards * 1000
    raw["crystal"] = boards % 4096
    raw["adc"] = boards >> 4
    stream = b"".join(wire.encode(raw[b: b + 1], board=b, first_seq=b) for b in boards.tolist())
    stream += b"".join(wire.encode_status(board=b, seq=b + 1, t_ps=2 * 10**9, events_sent=1,
                                          fifo_overflows=b) for b in boards.tolist())
    dec = wire.Decoder()
    assert_decoded(dec.feed(stream), raw, wire.DEFAULT_CLOCK)
    s = dec.stats
    assert (s.frames_ok, s.frames_bad, s.seq_gaps, s.status_frames) == (2 << 16, 0, 0, 1 << 16)
    assert sorted(s.boards) == boards.tolist()
    assert all(s.boards[b].status.fifo_overflows == b for b in (0, 1, 4095, 65535))
    assert set(dec.watermarks_ps.values()) == {2 * 10**9}


def test_multi_board_stream_with_scanner(brain):
    rng = np.random.default_rng(3)
    parts, expected = [], []
    for board in range(brain.n_boards):
        raw = random_events(rng, 600, max_gap_ps=10**6)
        raw["crystal"] = rng.choice(np.flatnonzero(brain.crystal_board == board), raw.size)
        parts.append(wire.encode(raw, board=board, first_seq=100 * board, scanner=brain))
        expected.append(raw)
    # interleave whole frames of the boards (as a multiplexing transport would)
    frames = [frames_of(p) for p in parts]
    stream = b"".join(fr[i] for i in range(3) for fr in frames)
    dec = wire.Decoder(brain)
    out = dec.feed(stream)
    board_of = brain.crystal_board[out["crystal"]]
    for board, raw in enumerate(expected):
        assert_decoded(out[board_of == board], raw, wire.WireClock.of(brain))
    assert dec.stats.events == 600 * brain.n_boards


def test_unwrap_needs_heartbeats_within_half_a_wrap(brain):
    """Two events 0.8 wrap apart: decoded wrongly alone, right with a heartbeat in between."""
    scanner = with_digitizer(brain, counter_bits=16)
    wrap_ps = (1 << 16) * 5000
    raw = np.zeros(2, RAW_DTYPE)
    raw["t"] = [1000, 1000 + 8 * wrap_ps // 10]
    raw["crystal"] = np.flatnonzero(scanner.crystal_board == 0)[:2]
    frames = [wire.encode(raw[i: i + 1], board=0, first_seq=2 * i, scanner=scanner)
              for i in range(2)]
    alone = wire.Decoder(scanner).feed(frames[0] + frames[1])
    assert alone["t"][1] < 0  # 0.8 wrap forwards read as 0.2 wrap backwards
    beat = wire.encode_status(board=0, seq=1, t_ps=4 * wrap_ps // 10, events_sent=1,
                              fifo_overflows=0, scanner=scanner)
    dec = wire.Decoder(scanner)
    assert_decoded(dec.feed(frames[0] + beat + frames[1]), raw, wire.WireClock.of(scanner))
    assert dec.stats.seq_gaps == 0


def test_duplicates_late_frames_and_sequence_wrap():
    rng = np.random.default_rng(8)
    raw = random_events(rng, 256 * 6, max_gap_ps=1000)
    data = wire.encode(raw, board=9, first_seq=2**32 - 3)  # seqs ..., 2**32 - 1, 0, 1, 2
    f = frames_of(data)
    dec = wire.Decoder()
    out = dec.feed(f[0] + f[2] + f[1] + f[1] + f[3] + f[0] + f[5])  # late f[1], dups, gap f[4]
    order = [0, 2, 1, 3, 5]
    assert_decoded(out, np.concatenate([raw[256 * i: 256 * i + 256] for i in order]),
                   wire.DEFAULT_CLOCK)
    s = dec.stats
    assert (s.frames_ok, s.duplicates, s.seq_gaps) == (5, 2, 1)
    assert dec.feed(f[4]).size == 256  # the missing one arrives late after all
    assert (dec.stats.seq_gaps, dec.feed(data).size, dec.stats.duplicates) == (0, 0, 8)


def test_unknown_channels_are_dropped_and_counted(brain):
    raw = np.zeros(10, RAW_DTYPE)
    raw["crystal"] = np.arange(10)
    dec = wire.Decoder(brain)
    ok = dec.feed(wire.encode(raw, board=0, first_seq=0))
    assert ok.size == 10 and (brain.crystal_board[ok["crystal"]] == 0).all()
    raw["crystal"][3:] = 4000  # channel 4000 is not wired on a bedside-brain board
    assert dec.feed(wire.encode(raw, board=1, first_seq=0)).size == 3
    assert dec.feed(wire.encode(raw[:4], board=brain.n_boards, first_seq=0)).size == 0
    s = dec.stats
    assert (s.frames_ok, s.frames_bad, s.bad_channel, s.events) == (3, 0, 11, 13)
    assert (s.boards[1].bad_channel, s.boards[brain.n_boards].bad_channel) == (7, 4)


def test_tail_flush_and_overlong_garbage():
    raw = np.zeros(5, RAW_DTYPE)
    raw["t"] = np.arange(5) * 10**6
    frame = wire.encode(raw, board=1, first_seq=0)
    dec = wire.Decoder()
    assert dec.feed(frame[:-1]).size == 0 and dec.pending_bytes == len(frame) - 2
    assert dec.flush().size == 5  # the sender never sent the delimiter
    assert dec.feed(frame[:20]).size == 0
    assert dec.flush().size == 0  # truncated for good
    assert (dec.stats.frames_bad, dec.stats.bytes_skipped) == (1, 19)
    garbage = b"\xaa" * 5000  # no delimiter for longer than any frame can be
    dec = wire.Decoder()
    assert dec.feed(garbage[:3000]).size == 0 and dec.pending_bytes == 0
    assert dec.feed(garbage[3000:] + b"\0" + frame).size == 5
    assert dec.feed(wire.encode(raw, board=1, first_seq=1)).size == 5
    assert (dec.stats.frames_bad, dec.stats.bytes_skipped, dec.stats.frames_ok) == (1, 5000, 2)


# ----------------------------------------------------------------------- golden vectors


def golden_frames() -> tuple[wire.WireClock, list[dict]]:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert doc["version"] == wire.VERSION
    assert doc["event_fields"] == ["t_ps", "coarse", "fine", "channel", "adc"]
    return wire.WireClock(**doc["clock"]), doc["frames"]


def golden_raw(frame: dict) -> np.ndarray:
    ev = np.array(frame["events"], np.int64).reshape(-1, 5)
    raw = np.zeros(len(ev), RAW_DTYPE)
    raw["t"], raw["crystal"], raw["adc"] = ev[:, 0], ev[:, 3], ev[:, 4]
    return raw


def test_golden_vectors_python_side():
    clock, frames = golden_frames()
    assert clock == wire.DEFAULT_CLOCK
    kinds = {"RUN_START": wire.RUN_START, "RUN_STOP": wire.RUN_STOP}
    for fr in frames:
        expected = bytes.fromhex(fr["hex"])
        if fr["type"] == "EVENTS":
            raw = golden_raw(fr)
            coarse, fine = ref_split(raw["t"], clock)
            ev = np.array(fr["events"], np.int64).reshape(-1, 5)
            np.testing.assert_array_equal(ev[:, 1], coarse)
            np.testing.assert_array_equal(ev[:, 2], fine)
            assert wire.encode(raw, board=fr["board"], first_seq=fr["seq"]) == expected
            dec = wire.Decoder()
            decoded = dec.feed(expected)
            np.testing.assert_array_equal(decoded["crystal"], raw["crystal"])
            np.testing.assert_array_equal(decoded["adc"], raw["adc"])
            # a lone frame is unwrapped from counter 0: times agree modulo the counter wrap
            wrap = (1 << clock.counter_bits) * clock.period_ps
            np.testing.assert_array_equal((quantised(raw["t"], clock) - decoded["t"]) % wrap, 0)
        elif fr["type"] == "STATUS":
            assert wire.encode_status(board=fr["board"], seq=fr["seq"], t_ps=fr["t_ps"],
                                      events_sent=fr["events_sent"],
                                      fifo_overflows=fr["fifo_overflows"],
                                      flags=fr["flags"]) == expected
        elif fr["type"] == "COMMAND":
            assert encode_command(fr["opcode"], board=fr["board"], seq=fr["seq"], a=fr["a"],
                                  b=fr["b"]) == expected
        elif fr["type"] == "REPLY":
            reply = reply_of(expected[1:-1])
            assert (reply.board, reply.opcode, reply.result, reply.cmd_seq, reply.value,
                    reply.rejected) == (fr["board"], fr["opcode"], fr["result"], fr["cmd_seq"],
                                        fr["value"], fr["rejected"])
        else:
            assert wire.encode_marker(kinds[fr["type"]], board=fr["board"], seq=fr["seq"],
                                      t_ps=fr["t_ps"], run=fr["run"]) == expected
        dec = wire.Decoder()
        dec.feed(expected)  # a board never sends a COMMAND: from a board it is damaged
        ok = (0, 1) if fr["type"] == "COMMAND" else (1, 0)
        assert (dec.stats.frames_ok, dec.stats.frames_bad) == ok


def test_version_1_frames_still_decode():
    """Journals recorded with version 1 (no leading delimiter, version byte 1) replay: each
    golden v1 frame decodes to what its v2 twin decodes to, alone and as one stream."""
    _, frames = golden_frames()
    frames = [f for f in frames if f["type"] not in ("COMMAND", "REPLY")]  # new in version 2
    old = json.loads(GOLDEN_V1.read_text(encoding="utf-8"))
    assert old["version"] == 1 and [f["name"] for f in old["frames"]] == [f["name"] for f in frames]
    for v1, v2 in zip(old["frames"], frames, strict=True):
        a, b = bytes.fromhex(v1["hex"]), bytes.fromhex(v2["hex"])
        assert a[0] != 0 and b[0] == 0 and a != b[1:]
        d1, d2 = wire.Decoder(), wire.Decoder()
        np.testing.assert_array_equal(d1.feed(a), d2.feed(b))
        assert d1.stats.as_dict() == d2.stats.as_dict() and d1.markers == d2.markers
    d1, d2 = wire.Decoder(), wire.Decoder()
    np.testing.assert_array_equal(d1.feed(b"".join(bytes.fromhex(f["hex"]) for f in old["frames"])),
                                  d2.feed(b"".join(bytes.fromhex(f["hex"]) for f in frames)))
    assert d1.stats == d2.stats and d1.stats.frames_bad == 0


def test_a_frame_after_noise_or_a_cut_frame_is_kept():
    """Version 2's leading delimiter: a frame cut short, then line noise without a 0x00, cost
    only themselves, never the intact frame behind them; a frame that lost only its trailing
    delimiter is still whole."""
    raw = random_events(np.random.default_rng(5), 256 * 3, max_gap_ps=1000)
    f = frames_of(wire.encode(raw, board=2, first_seq=0))
    dec = wire.Decoder()
    out = dec.feed(f[0][:700] + bytes(range(1, 200)) + f[1][:-1] + f[2])
    assert_decoded(out, raw[256:], wire.DEFAULT_CLOCK)
    s = dec.stats
    assert (s.frames_ok, s.frames_bad, s.bytes_skipped) == (2, 1, 699 + 199)


def test_wire_md_worked_example_is_a_golden_vector():
    _, frames = golden_frames()
    example = next(fr for fr in frames if "worked example" in fr["name"])
    text = "".join(WIRE_MD.read_text(encoding="utf-8").split()).lower()  # hex in the document may wrap lines
    assert example["hex"] in text


def test_a_feed_of_many_short_frames_decodes_every_one():
    """Heartbeats only (34 bytes each): many more frames per piece than full EVENTS frames, so
    the piece's frame table grows; none is lost, the events after them still come out."""
    n = 20_000
    status = b"".join(wire.encode_status(board=0, seq=1 + k, t_ps=5000 * k, events_sent=0,
                                         fifo_overflows=0) for k in range(n))
    events = np.zeros(3, RAW_DTYPE)
    events["t"] = 5000 * n + np.arange(3) * 5000
    d = wire.Decoder()
    out = d.feed(status + wire.encode(events, board=0, first_seq=n + 1))
    assert d.stats.status_frames == n and d.stats.frames_bad == 0 and d.stats.seq_gaps == 0
    assert out["t"].tolist() == events["t"].tolist()


def _frames(raw: np.ndarray, board: int, first_seq: int) -> list[bytes]:
    return frames_of(wire.encode(raw, board=board, first_seq=first_seq))


def test_a_forged_sequence_number_costs_one_frame_never_the_boards_data():
    rng = np.random.default_rng(12)
    raw = random_events(rng, 256 * 40, max_gap_ps=1000)
    good = _frames(raw, board=3, first_seq=100)
    forged = _frames(random_events(rng, 256, max_gap_ps=1000), board=3, first_seq=2_000_000)[0]
    dec = wire.Decoder()
    out = dec.feed(b"".join(good[:10]) + forged + b"".join(good[10:]))
    assert out.size == raw.size  # every real frame's events; the forged frame dropped
    assert_decoded(out, raw, wire.DEFAULT_CLOCK)
    s = dec.stats
    assert (s.out_of_sequence, s.sequence_restarts, s.duplicates, s.seq_gaps) == (1, 0, 0, 0)


@pytest.mark.parametrize("marker", [True, False])
def test_a_board_that_restarts_its_sequence_numbers_goes_on_being_decoded(marker):
    rng = np.random.default_rng(13)
    before = random_events(rng, 256 * 20, max_gap_ps=1000)
    after = random_events(rng, 256 * 20, max_gap_ps=1000)
    after["t"] += before["t"][-1] + 1000
    restart = wire.encode_marker(wire.RUN_START, board=1, seq=0, t_ps=int(after["t"][0]),
                                 run=2) if marker else b""
    first = 1 if marker else 0
    stream = (b"".join(_frames(before, 1, 5000)) + restart
              + b"".join(_frames(after, 1, first)))
    dec = wire.Decoder()
    out = dec.feed(stream)
    s = dec.stats
    # a run-start marker announces it; without one, a frame 0 that is not the board's frame 0
    # received before (its CRC) starts the new numbers: nothing lost either way
    assert_decoded(out, np.concatenate([before, after]), wire.DEFAULT_CLOCK)
    assert (s.sequence_restarts, s.out_of_sequence) == (1, 0)
    assert (s.duplicates, s.seq_gaps) == (0, 0)


def test_a_stale_copy_of_a_boards_first_frame_is_a_duplicate_not_a_restart():
    """Frame 0 sent again long after (a stale copy: the same bytes) is a duplicate; the board's
    numbers go on."""
    rng = np.random.default_rng(14)
    raw = random_events(rng, 256 * 100, max_gap_ps=1000)
    frames = _frames(raw, 1, 0)
    dec = wire.Decoder()
    out = dec.feed(b"".join(frames[:90]) + frames[0] + b"".join(frames[90:]))
    assert_decoded(out, raw, wire.DEFAULT_CLOCK)
    s = dec.stats
    assert (s.duplicates, s.sequence_restarts, s.out_of_sequence, s.seq_gaps) == (1, 0, 0, 0)
