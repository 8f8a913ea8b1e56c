"""hw.wire.Decoder on damaged streams: garbage, flipped bits, truncated, lost and duplicated frames.

The oracle follows the framing rule of hw/WIRE.md: the stream is cut at every 0x00; a piece that
is exactly the COBS encoding of a frame that was sent is an intact frame (decoded once per
sequence number, in arrival order), every other non-empty piece is a damaged frame (counted,
its bytes skipped). Missing frames are counted per board between its oldest and newest frame.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import RAW_DTYPE, wire

SETTINGS = settings(max_examples=60, deadline=None)


class Sent:
    """A frame as the boards sent it: its bytes (delimiter included) and what it carries."""

    def __init__(self, board: int, index: int, seq: int, data: bytes, events: np.ndarray,
                 kind: str, t_ps: int) -> None:
        self.board, self.index, self.seq, self.data, self.events, self.kind = (
            board, index, seq, data, events, kind)
        self.watermark_ps = quantised(events["t"]).max() if events.size else t_ps // P * P
        """The latest time the frame tells, as the decoder must give it."""


P = wire.DEFAULT_CLOCK.period_ps


def quantised(t: np.ndarray) -> np.ndarray:
    coarse = t // P
    return coarse * P + ((((t - coarse * P) << 8) // P * P) >> 8)


def make_frames(rng: np.random.Generator, n_frames: int, n_boards: int) -> list[Sent]:
    """Frames of every type from ``n_boards`` boards, each board's seqs consecutive (and
    wrapping past 2**32 for some), times well inside the counter's half range."""
    first = {b: int(rng.choice([0, 2**32 - 3, rng.integers(0, 2**32)])) for b in range(n_boards)}
    count = dict.fromkeys(range(n_boards), 0)
    clock_ps = dict.fromkeys(range(n_boards), 0)
    frames = []
    for _ in range(n_frames):
        b = int(rng.integers(n_boards))
        i = count[b]
        count[b] += 1
        seq = (first[b] + i) & 0xFFFFFFFF
        kind = rng.choice(["events", "events", "events", "status", "marker"])
        events = np.zeros(0, RAW_DTYPE)
        if kind == "events":
            n = int(rng.choice([1, rng.integers(1, 40), 256]))
            events = np.zeros(n, RAW_DTYPE)
            events["t"] = clock_ps[b] + np.cumsum(rng.integers(0, 50_000, n))
            events["crystal"] = rng.integers(0, 4096, n)
            events["adc"] = rng.integers(0, 4096, n)
            clock_ps[b] = int(events["t"][-1])
            data = wire.encode(events, board=b, first_seq=seq)
        elif kind == "status":
            data = wire.encode_status(board=b, seq=seq, t_ps=clock_ps[b], events_sent=i,
                                      fifo_overflows=int(rng.integers(0, 5)))
        else:
            data = wire.encode_marker(wire.RUN_START, board=b, seq=seq, t_ps=clock_ps[b], run=i)
        frames.append(Sent(b, i, seq, data, events, kind, clock_ps[b]))
    return frames


def damage(rng: np.random.Generator, frames: list[Sent]) -> bytes:
    """The stream as received: frames intact, bit-flipped, truncated, lost, duplicated, and
    garbage between them (with or without a 0x00 in it)."""
    out = bytearray()
    for k, fr in enumerate(frames):
        fate = rng.choice(["intact"] * 5 + ["flip", "truncate", "truncate_nodelim", "lost",
                                             "duplicate"])
        data = bytearray(fr.data)
        if fate == "flip":
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(len(data) - 1))  # the frame, not its delimiter
                data[pos] ^= 1 << int(rng.integers(8))
        elif fate == "truncate":
            data = data[: int(rng.integers(1, len(data) - 1))] + b"\0"
        elif fate == "truncate_nodelim":
            data = data[: int(rng.integers(1, len(data) - 1))]
        elif fate == "lost":
            data = bytearray()
        elif fate == "duplicate":
            data += frames[int(rng.integers(0, k + 1))].data
        out += data
        if rng.random() < 0.2:
            garbage = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8)
            if rng.random() < 0.5:
                garbage[garbage == 0] = 0x55
            out += garbage.tobytes()
            if rng.random() < 0.5:
                out += b"\0"
    return bytes(out)


def feed_in_pieces(dec: wire.Decoder, stream: bytes, rng: np.random.Generator) -> np.ndarray:
    cuts = np.sort(rng.integers(0, len(stream) + 1, int(rng.integers(0, 12))))
    pieces = np.split(np.frombuffer(stream, np.uint8), cuts)
    got = [dec.feed(p if rng.random() < 0.5 else p.tobytes()) for p in pieces]
    got.append(dec.flush())
    return np.concatenate(got)


def expected_outcome(frames: list[Sent], stream: bytes) -> dict:
    by_chunk = {fr.data[:-1]: fr for fr in frames}
    accepted, seen, bad, skipped, dups = [], set(), 0, 0, 0
    for chunk in (stream + b"\0").split(b"\0")[:-1]:
        fr = by_chunk.get(chunk)
        if fr is None:
            bad += chunk != b""
            skipped += len(chunk)
        elif (fr.board, fr.index) in seen:
            dups += 1
        else:
            seen.add((fr.board, fr.index))
            accepted.append(fr)
    gaps = 0
    for b in {fr.board for fr in accepted}:
        idx = [fr.index for fr in accepted if fr.board == b]
        gaps += max(idx) - min(idx) + 1 - len(idx)
    return {"accepted": accepted, "frames_bad": bad, "bytes_skipped": skipped,
            "duplicates": dups, "seq_gaps": gaps}


@SETTINGS
@given(seed=st.integers(0, 2**32), n_frames=st.integers(1, 30), n_boards=st.integers(1, 3))
def test_damaged_stream(seed, n_frames, n_boards):
    rng = np.random.default_rng(seed)
    frames = make_frames(rng, n_frames, n_boards)
    stream = damage(rng, frames)
    dec = wire.Decoder()
    got = feed_in_pieces(dec, stream, rng)
    exp = expected_outcome(frames, stream)
    acc = exp["accepted"]
    events = np.concatenate([np.zeros(0, RAW_DTYPE)] + [fr.events for fr in acc])
    np.testing.assert_array_equal(got["crystal"], events["crystal"])
    np.testing.assert_array_equal(got["adc"], events["adc"])
    np.testing.assert_array_equal(got["t"], quantised(events["t"]))
    s = dec.stats
    assert s.frames_ok == len(acc)
    assert s.events == events.size
    assert (s.frames_bad, s.bytes_skipped, s.duplicates, s.seq_gaps) == (
        exp["frames_bad"], exp["bytes_skipped"], exp["duplicates"], exp["seq_gaps"])
    assert s.status_frames == sum(fr.kind == "status" for fr in acc)
    assert dec.markers == [wire.RunMarker("start", fr.board, fr.seq, fr.index, fr.watermark_ps)
                           for fr in acc if fr.kind == "marker"]
    assert dec.pending_bytes == 0
    assert sorted(s.boards) == sorted({fr.board for fr in acc})
    for b, info in s.boards.items():
        mine = [fr for fr in acc if fr.board == b]
        assert info.frames == len(mine)
        assert info.watermark_ps == dec.watermarks_ps[b] == max(fr.watermark_ps for fr in mine)


@SETTINGS
@given(st.binary(max_size=6000), st.integers(0, 2**32))
def test_random_garbage_never_raises(garbage, seed):
    rng = np.random.default_rng(seed)
    dec = wire.Decoder()
    got = feed_in_pieces(dec, garbage, rng)
    chunks = (garbage + b"\0").split(b"\0")[:-1]
    s = dec.stats
    assert got.size == 0 and s.frames_ok == 0
    assert s.frames_bad == sum(c != b"" for c in chunks)
    assert s.bytes_skipped == len(garbage) - garbage.count(0)


@SETTINGS
@given(st.integers(0, 2**32))
def test_garbage_then_frames_resynchronise(seed):
    """After any garbage, the first frame behind a 0x00 decodes."""
    rng = np.random.default_rng(seed)
    frames = make_frames(rng, 4, 1)
    garbage = rng.integers(0, 256, int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()
    dec = wire.Decoder()
    got = feed_in_pieces(dec, garbage + b"\0" + b"".join(fr.data for fr in frames), rng)
    assert got.size == sum(fr.events.size for fr in frames)
    assert dec.stats.frames_ok == 4


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), piece=st.sampled_from([1, 7, 300, 5000]),
       cuts=st.integers(0, 5))
def test_pieces_and_threads_give_the_same_decoding(seed, piece, cuts):
    """A damaged multi-board stream decoded in parallel pieces of any size (on three threads),
    fed in any slices, gives the events, markers and counters of one piece on one thread."""
    from hw.pool import Workers
    from hw.wire import decode

    rng = np.random.default_rng(seed)
    stream = damage(rng, make_frames(rng, 120, 3))
    slices = sorted(rng.integers(0, len(stream) + 1, cuts).tolist())
    bounds = list(zip([0, *slices], [*slices, len(stream)], strict=True))

    def run(piece_bytes: int, workers: Workers | None) -> tuple:
        decode.PIECE_BYTES = piece_bytes
        dec = wire.Decoder()
        out = []
        for a, b in bounds:
            n = dec.max_events(b - a)
            cols = (np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.uint16))
            k = dec.feed_into(stream[a:b], *cols, workers=workers)
            out.append(np.stack([c[:k].astype(np.int64) for c in cols]))
        out.append(np.stack([dec.flush()[f].astype(np.int64) for f in ("t", "crystal", "adc")]))
        return (np.concatenate(out, axis=1).tolist(), dec.markers, dec.stats,
                dec.watermarks_ps, dec.pending_bytes)

    default = decode.PIECE_BYTES
    workers = Workers(3)
    try:
        assert run(piece, workers) == run(1 << 30, None)
    finally:
        decode.PIECE_BYTES = default
        workers.close()
