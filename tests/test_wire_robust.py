"""hw.wire.Decoder on damaged streams: garbage, flipped bits, truncated, lost and duplicated frames.

The oracle follows the framing rule of hw/WIRE.md: the stream is cut at every 0x00; a piece that
is exactly the COBS encoding of a frame that was sent is an intact frame (decoded once per
sequence number, in arrival order), every other non-empty piece is a damaged frame (counted,
its bytes skipped). Missing frames are counted per board between its oldest and newest frame.
Version 2's leading delimiter makes every frame whose bytes arrived unchanged such a piece,
whatever came before it.
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
                 kind: str, t_ps: int, events_sent: int = 0) -> None:
        self.board, self.index, self.seq, self.data, self.events, self.kind = (
            board, index, seq, data, events, kind)
        self.events_sent = events_sent
        """The board's events sent so far, as its STATUS frames tell."""
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
    sent = dict.fromkeys(range(n_boards), 0)
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
            sent[b] += n
            data = wire.encode(events, board=b, first_seq=seq)
        elif kind == "status":
            data = wire.encode_status(board=b, seq=seq, t_ps=clock_ps[b], events_sent=sent[b],
                                      fifo_overflows=int(rng.integers(0, 5)))
        else:
            data = wire.encode_marker(wire.RUN_START, board=b, seq=seq, t_ps=clock_ps[b], run=i)
        frames.append(Sent(b, i, seq, data, events, kind, clock_ps[b], sent[b]))
    return frames


def damage(rng: np.random.Generator, frames: list[Sent]) -> bytes:
    """The stream as received: frames intact, bit-flipped, truncated, lost, duplicated, and
    garbage between them (with or without a 0x00 in it)."""
    return damaged(rng, frames)[0]


def damaged(rng: np.random.Generator, frames: list[Sent]) -> tuple[bytes, set]:
    """:func:`damage`, and the (board, index) of the frames whose bytes arrived unchanged."""
    out, whole = bytearray(), set()
    for k, fr in enumerate(frames):
        fate = rng.choice(["intact"] * 5 + ["flip", "truncate", "truncate_nodelim", "lost",
                                             "duplicate"])
        data = bytearray(fr.data)
        if fate == "flip":
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(1, len(data) - 1))  # the frame, not its delimiters
                data[pos] ^= 1 << int(rng.integers(8))
        elif fate == "truncate":
            data = data[: int(rng.integers(1, len(data) - 1))] + b"\0"
        elif fate == "truncate_nodelim":
            data = data[: int(rng.integers(1, len(data) - 1))]
        elif fate == "lost":
            data = bytearray()
        elif fate == "duplicate":
            j = int(rng.integers(0, k + 1))
            data += frames[j].data
            whole.add((frames[j].board, frames[j].index))
        if fate in ("intact", "duplicate") or data == fr.data:  # two flips can undo each other
            whole.add((fr.board, fr.index))
        out += data
        if rng.random() < 0.2:
            garbage = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8)
            if rng.random() < 0.5:
                garbage[garbage == 0] = 0x55
            out += garbage.tobytes()
            if rng.random() < 0.5:
                out += b"\0"
    return bytes(out), whole


def feed_in_pieces(dec: wire.Decoder, stream: bytes, rng: np.random.Generator) -> np.ndarray:
    cuts = np.sort(rng.integers(0, len(stream) + 1, int(rng.integers(0, 12))))
    pieces = np.split(np.frombuffer(stream, np.uint8), cuts)
    got = [dec.feed(p if rng.random() < 0.5 else p.tobytes()) for p in pieces]
    got.append(dec.flush())
    return np.concatenate(got)


def expected_outcome(frames: list[Sent], stream: bytes) -> dict:
    by_chunk = {fr.data[1:-1]: fr for fr in frames}
    accepted, seen, bad, skipped, dups = [], set(), 0, 0, 0
    words, lost = {}, {}
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
            words[fr.board] = words.get(fr.board, 0) + fr.events.size
            if fr.kind == "status":
                lost[fr.board] = max(fr.events_sent - words[fr.board], 0)
    gaps = 0
    for b in {fr.board for fr in accepted}:
        idx = [fr.index for fr in accepted if fr.board == b]
        gaps += max(idx) - min(idx) + 1 - len(idx)
    return {"accepted": accepted, "frames_bad": bad, "bytes_skipped": skipped,
            "duplicates": dups, "seq_gaps": gaps, "events_lost": sum(lost.values())}


@SETTINGS
@given(seed=st.integers(0, 2**32), n_frames=st.integers(1, 30), n_boards=st.integers(1, 3))
def test_damaged_stream(seed, n_frames, n_boards):
    rng = np.random.default_rng(seed)
    frames = make_frames(rng, n_frames, n_boards)
    stream, whole = damaged(rng, frames)
    dec = wire.Decoder()
    got = feed_in_pieces(dec, stream, rng)
    exp = expected_outcome(frames, stream)
    acc = exp["accepted"]
    assert {(fr.board, fr.index) for fr in acc} == whole  # every unchanged frame, no other
    events = np.concatenate([np.zeros(0, RAW_DTYPE)] + [fr.events for fr in acc])
    np.testing.assert_array_equal(got["crystal"], events["crystal"])
    np.testing.assert_array_equal(got["adc"], events["adc"])
    np.testing.assert_array_equal(got["t"], quantised(events["t"]))
    s = dec.stats
    assert s.frames_ok == len(acc)
    assert s.events == events.size
    assert (s.frames_bad, s.bytes_skipped, s.duplicates, s.seq_gaps, s.events_lost) == (
        exp["frames_bad"], exp["bytes_skipped"], exp["duplicates"], exp["seq_gaps"],
        exp["events_lost"])
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
    fed in any slices, each in several buffers (cut anywhere, or between frames), gives the
    events, markers and counters of one piece on one thread."""
    from hw.wire import decode
    from infra.pool import Workers

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
            if workers is None:
                k = dec.feed_into(stream[a:b], *cols)
            else:  # in several buffers, as a link's messages: cut anywhere or between frames
                k, = decode.decode_streams([dec], [_buffers(rng, stream[a:b])], [cols], workers)
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


def _buffers(rng: np.random.Generator, data: bytes) -> list[bytes | np.ndarray]:
    """``data`` in a few buffers: cut at random, or just after a delimiter (whole frames)."""
    ends = [i + 1 for i, b in enumerate(data) if b == 0]
    cuts = sorted(set(rng.integers(0, len(data) + 1, 3).tolist()
                      + (rng.choice(ends, min(3, len(ends))).tolist() if ends else [])))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [np.frombuffer(p, np.uint8) if k % 2 else p for k, p in enumerate(parts)]


def _board_stream(rng: np.random.Generator, board: int, n_frames: int, reset_at: int | None
                  ) -> list[tuple[bytes, np.ndarray, bool]]:
    """One board's frames, (bytes, events, must arrive whole): a run-start marker, EVENTS frames
    of 16 events with a STATUS heartbeat (events sent so far) after every 8, and a last
    heartbeat. ``reset_at``: the board restarts there (firmware reset: a heartbeat, then a
    run-start marker with sequence numbers and counters from 0)."""
    out = [(wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=0, run=1),
            np.zeros(0, RAW_DTYPE), True)]
    seq, sent, t = 1, 0, 0
    for k in range(n_frames):
        if k == reset_at:
            out.append((wire.encode_status(board=board, seq=seq, t_ps=t, events_sent=sent,
                                           fifo_overflows=0), np.zeros(0, RAW_DTYPE), True))
            out.append((wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=t, run=1),
                        np.zeros(0, RAW_DTYPE), True))
            seq, sent = 1, 0
        if k % 9 == 8:
            out.append((wire.encode_status(board=board, seq=seq, t_ps=t, events_sent=sent,
                                           fifo_overflows=0), np.zeros(0, RAW_DTYPE), False))
        else:
            ev = random_events_after(rng, t, 16)
            t, sent = int(ev["t"][-1]), sent + 16
            out.append((wire.encode(ev, board=board, first_seq=seq), ev, False))
        seq += 1
    out.append((wire.encode_status(board=board, seq=seq, t_ps=t, events_sent=sent,
                                   fifo_overflows=0), np.zeros(0, RAW_DTYPE), True))
    return out


def random_events_after(rng: np.random.Generator, t_ps: int, n: int) -> np.ndarray:
    ev = np.zeros(n, RAW_DTYPE)
    ev["t"] = t_ps + np.cumsum(rng.integers(1, 20_000, n))
    ev["crystal"] = rng.integers(0, 4096, n)
    ev["adc"] = rng.integers(0, 4096, n)
    return ev


def test_stress_every_kind_of_damage():
    """10^5 frames from 4 boards with every kind of damage (noise with and without a 0x00
    before frames, truncation with and without a delimiter, bit flips, drops, duplicates, a
    board reset, a forged sequence number): no exception, every frame whose bytes arrived
    unchanged decoded, and every event sent either decoded or counted as lost."""
    rng = np.random.default_rng(2024)
    boards = [_board_stream(rng, b, 25_000, 12_000 if b == 2 else None) for b in range(4)]
    order = np.argsort(np.concatenate([np.linspace(0, 1, len(s)) for s in boards]),
                       kind="stable")  # the boards' frames interleaved, each in its order
    frames = [f for s in boards for f in s]
    forged_at = len(order) // 2
    forged = wire.encode(random_events_after(rng, 0, 16), board=1, first_seq=3_000_000)
    out, whole, copies, previous = bytearray(), set(), 0, None
    for i, k in enumerate(order.tolist()):
        data, _, keep = frames[k]
        if i == forged_at:
            out += forged
        if not keep and rng.random() < 0.05:  # line noise before the frame
            noise = rng.integers(1, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
            out += noise + (b"\0" if rng.random() < 0.5 else b"")
        fate = "intact" if keep else rng.choice(
            ["intact"] * 14 + ["flip", "cut", "cut_nodelim", "lost", "duplicate"])
        if fate == "flip":
            buf = bytearray(data)
            for pos in rng.integers(1, len(buf) - 1, int(rng.integers(1, 4))).tolist():
                buf[pos] ^= 1 << int(rng.integers(8))
            out += buf if bytes(buf) != data else b""  # a flip that undid itself: not sent
        elif fate in ("cut", "cut_nodelim"):
            out += data[: int(rng.integers(1, len(data) - 1))] + (b"\0" if fate == "cut" else b"")
        elif fate != "lost":
            out += data
            whole.add(k)
            copies += 1
            if fate == "duplicate":
                out += data + (frames[previous][0] if previous is not None else b"")
                copies += 1 + (previous is not None)
                whole.update({previous} - {None})
        previous = k
    dec = wire.Decoder()
    got = feed_in_pieces(dec, bytes(out), rng)
    s = dec.stats
    arrived = np.concatenate([frames[k][1] for k in sorted(whole)])
    assert got.size == arrived.size
    np.testing.assert_array_equal(np.sort(got, order=["t", "crystal", "adc"])["t"],
                                  np.sort(quantised(arrived["t"])))
    n_sent = sum(f[1].size for f in frames)
    assert s.events + s.events_lost == n_sent  # every event decoded or counted as lost
    assert s.frames_ok == len(whole)
    assert s.seq_gaps == len(frames) - len(whole)  # every frame not received is counted
    assert s.duplicates == copies - len(whole)
    assert (s.out_of_sequence, s.sequence_restarts) == (1, 1)
    assert s.boards[2].sequence_restarts == 1 and s.boards[1].out_of_sequence == 1
    assert len(frames) >= 100_000 and s.frames_bad > 0
