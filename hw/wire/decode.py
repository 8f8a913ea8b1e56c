"""The decoder: any byte stream of frames back into events, surviving garbage, damaged, truncated and
duplicated frames, and unwrapping each board's coarse counter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from hw._cobs import cobs_decode, find_zero, load_u64
from hw._crc import as_bytes_array, crc32_update
from hw.dtypes import RAW_DTYPE
from hw.scanner import Scanner
from hw.wire.format import (
    CRC_BYTES,
    EVENTS,
    EVENTS_PER_FRAME,
    HEADER_BYTES,
    MAX_CHUNK_BYTES,
    OLDEST_READ_VERSION,
    REPLY,
    RUN_START,
    RUN_STOP,
    SEQ_WINDOW,
    STATUS,
    VERSION,
    WireClock,
)
from infra.pool import SERIAL, Workers

_N_BOARD_IDS = 1 << 16

Buffer = bytes | bytearray | memoryview | np.ndarray
Columns = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Decoded events as three arrays: t (int64 ps), crystal (int32), adc (uint16)."""

# --------------------------------------------------------------------------- decoder kernel

# Decoder-wide counters (Decoder._stats).
(_S_OK, _S_BAD, _S_SKIPPED, _S_EVENTS, _S_DUPS, _S_STATUS, _S_MARKERS, _S_BADCH, _S_NBOARDS,
 _S_STRAYS, _S_RESTARTS) = range(11)
# Per-board state columns (Decoder._board, one row per board id).
(_B_SEEN, _B_HIGH, _B_SPAN, _B_ACCEPTED, _B_DUPS, _B_EVENTS, _B_BADCH, _B_LAST, _B_WM,
 _B_ST_T, _B_ST_SENT, _B_ST_OVF, _B_ST_FLAGS, _B_ST_COUNT, _B_STRAY, _B_STRAYS,
 _B_RESTARTS, _B_WORDS, _B_MISSING, _B_MISSING_DONE, _B_CRC0, _B_CRC0_BEFORE) = range(22)
_B_COLS = 22
#: A frame this many sequence numbers or more ahead of its board's newest is not a gap but
#: out of sequence (a forged or corrupted number, or a board that restarted).
SEQ_JUMP = 1 << 16
_SEQ_DUP, _SEQ_OK, _SEQ_STRAY = 0, 1, 2


@numba.njit(nogil=True, cache=True)
def _frame_ok(raw: np.ndarray, n: int) -> bool:
    """Decoded frame ``raw[:n]`` is well-formed and its CRC matches (``raw``: 8 bytes slack)."""
    if n < HEADER_BYTES + CRC_BYTES:
        return False
    h0 = load_u64(raw, 0)
    h1 = load_u64(raw, 8)
    ftype = (h0 >> 8) & 0xFF
    nw = h1 & 0xFFFF
    if not OLDEST_READ_VERSION <= h0 & 0xFF <= VERSION or (h1 >> 16) & 0xFFFF != 0:
        return False
    if ftype == EVENTS:
        if nw > EVENTS_PER_FRAME:
            return False
    elif ftype < EVENTS or (ftype > RUN_STOP and ftype != REPLY) or nw != 2:
        return False
    if n != HEADER_BYTES + 8 * nw + CRC_BYTES:
        return False
    return crc32_update(0, raw, 0, n - CRC_BYTES) == load_u64(raw, n - CRC_BYTES) & 0xFFFFFFFF


@numba.njit(nogil=True, cache=True)
def _accept_seq(st: np.ndarray, window: np.ndarray, boards: np.ndarray, stats: np.ndarray,
                b: int, seq: int, ftype: int, crc: int) -> int:
    """Sequence bookkeeping of board ``b``: _SEQ_OK, _SEQ_DUP (already accepted) or _SEQ_STRAY
    (out of sequence: :func:`_restart_or_stray`).

    ``span`` is newest - oldest accepted seq + 1 of each run of the board's numbers, so its
    missing frames are span - accepted. ``window`` bit k is set when seq newest - k has been
    accepted (k < SEQ_WINDOW).
    """
    if st[b, _B_SEEN] == 0:
        st[b, _B_SEEN] = 1
        st[b, _B_HIGH] = seq
        st[b, _B_SPAN] = 1
        st[b, _B_ACCEPTED] = 1
        st[b, _B_LAST] = 0
        st[b, _B_WM] = -1
        st[b, _B_STRAY] = -1
        window[b] = np.uint64(1)
        boards[stats[_S_NBOARDS]] = b
        stats[_S_NBOARDS] += 1
        return _SEQ_OK
    d = (seq - st[b, _B_HIGH]) & 0xFFFFFFFF
    if d == 0:
        return _SEQ_DUP
    if d < SEQ_JUMP:  # ahead: the d - 1 frames in between are missing (for now)
        window[b] = (window[b] << np.uint64(d)) | np.uint64(1) if d < SEQ_WINDOW else np.uint64(1)
        st[b, _B_HIGH] = seq
        st[b, _B_SPAN] += d
        st[b, _B_ACCEPTED] += 1
        st[b, _B_STRAY] = -1
        return _SEQ_OK
    k = 0x100000000 - d  # behind by k: a late frame if not yet seen
    if k < SEQ_WINDOW:
        if (window[b] >> np.uint64(k)) & np.uint64(1):
            return _SEQ_DUP
        window[b] |= np.uint64(1) << np.uint64(k)
        st[b, _B_ACCEPTED] += 1
        st[b, _B_SPAN] = max(st[b, _B_SPAN], k + 1)
        return _SEQ_OK
    return _restart_or_stray(st, window, stats, b, seq, ftype, crc)


@numba.njit(nogil=True, cache=True)
def _restart_or_stray(st, window, stats, b, seq, ftype, crc):
    """A frame far from its board's sequence (SEQ_JUMP or more ahead, SEQ_WINDOW or more
    behind). A run-start marker, a frame numbered 0 that is none of the board's frames 0
    received before (their CRCs: a restarted board's first frame; a stale copy of an old one
    repeats its bytes and is a duplicate), or the second of two such frames in sequence, means
    the board restarted its numbers: a new run of them begins there (counted, no gap). A lone
    one (a forged or corrupted number) is dropped and counted as out of sequence, and the
    board's sequence goes on: one bad number costs at most one frame, never the board's data."""
    if seq == 0 and crc + 1 in (st[b, _B_CRC0], st[b, _B_CRC0_BEFORE]):
        return _SEQ_DUP
    if ftype == RUN_START or seq == 0 or (st[b, _B_STRAY] >= 0
                                          and seq == (st[b, _B_STRAY] + 1) & 0xFFFFFFFF):
        st[b, _B_HIGH] = seq
        window[b] = np.uint64(1)
        st[b, _B_SPAN] += 1
        st[b, _B_ACCEPTED] += 1
        st[b, _B_STRAY] = -1
        st[b, _B_RESTARTS] += 1
        st[b, _B_MISSING_DONE] += st[b, _B_MISSING]  # the board's counters start over too
        st[b, _B_MISSING] = 0
        st[b, _B_WORDS] = 0
        stats[_S_RESTARTS] += 1
        return _SEQ_OK
    st[b, _B_STRAY] = seq
    st[b, _B_STRAYS] += 1
    stats[_S_STRAYS] += 1
    return _SEQ_STRAY


@numba.njit(nogil=True, cache=True, inline="always")
def _missing(sent: int, received: int) -> int:
    """Events a board says it sent (mod 2**32) that did not arrive: 0 when more arrived (a
    frame sent after the heartbeat overtook it)."""
    d = (sent - received) & 0xFFFFFFFF
    return d if d < 0x80000000 else 0


@numba.njit(nogil=True, cache=True, inline="always")
def _unwrap(last: int, counter: int, cmask: int) -> int:
    """The unwrapped counter nearest ``last`` (half-range rule) whose low bits are ``counter``."""
    delta = (counter - last) & cmask
    return last + delta - (cmask + 1) if delta > cmask >> 1 else last + delta


@numba.njit(nogil=True, cache=True, inline="always")
def _step(before: int, counter: int, cmask: int) -> int:
    """How far the counter ``counter`` is from the counter ``before`` (half-range rule): the
    unwrapped counter of ``counter`` is that of ``before`` plus this. Only the low bits of the
    two are used, so that unwrapping a chain of counters adds steps of the raw words (no
    dependency on the unwrapped value but an addition)."""
    delta = (counter - before) & cmask
    return delta - (cmask + 1) if delta > cmask >> 1 else delta


# Frame table columns (a row per intact frame, :func:`_scan`; F_OUT and F_LAST by :func:`_sequence`,
# F_T_MAX by :func:`_write`).
(F_BOARD, F_TYPE, F_SEQ, F_NW, F_WORD, F_GOOD, F_C0, F_REL, F_T_MAX, F_OUT, F_LAST,
 F_CRC) = range(12)
_F_COLS = 12
#: Bytes of a byte stream scanned as one piece (pieces are scanned and written in parallel).
PIECE_BYTES = 1 << 20
_TYPICAL_FRAME_BYTES = 512
"""A piece's frame table starts with a row per this many bytes and grows when they are
shorter (full EVENTS frames are about 2 kB)."""


@numba.njit(nogil=True, cache=True)
def _scan(buf, lo, hi, discarding, period_ps, tdc_bits, cmask, cmap, use_map, words, word0,
          counts):
    """Phase 1 (a piece at a time, in parallel): every 0x00-terminated chunk of
    ``buf[lo:hi]`` (``hi`` just after a delimiter) COBS-decoded and checked. Returns the
    piece's frame table, a row per intact frame; its payload words go to ``words`` from
    ``word0``. An EVENTS frame's row has its first counter and its counter chain relative to
    it (unwrapped from the first counter: the whole chain moves by whole counter periods with
    its start, so the board's earlier frames are not needed here). ``counts`` gets the bad
    chunks, their bytes and the marker frames. ``discarding``: the first chunk is the end of
    an over-long one."""
    frames = np.empty(((hi - lo) // _TYPICAL_FRAME_BYTES + 16, _F_COLS), np.int64)
    raw = np.empty(MAX_CHUNK_BYTES + 8, np.uint8)
    n_map_boards, n_map_channels = cmap.shape
    r, w, pos = 0, word0, lo
    while pos < hi:
        e = find_zero(buf, pos)
        chunk = e - pos
        start = pos
        pos = e + 1
        if discarding or chunk > MAX_CHUNK_BYTES:
            discarding = False
            counts[0] += 1
            counts[1] += chunk
            continue
        if chunk == 0:
            continue
        m = cobs_decode(buf, start, e, raw)
        if m < 0 or not _frame_ok(raw, m):
            counts[0] += 1
            counts[1] += chunk
            continue
        if r == frames.shape[0]:  # more (short) frames than a piece usually holds
            more = np.empty((2 * r, _F_COLS), np.int64)
            more[:r] = frames
            frames = more
        h0 = load_u64(raw, 0)
        ftype = (h0 >> 8) & 0xFF
        b = (h0 >> 16) & 0xFFFF
        nw = load_u64(raw, 8) & 0xFFFF
        frames[r, F_BOARD], frames[r, F_TYPE], frames[r, F_SEQ] = b, ftype, (h0 >> 32) & 0xFFFFFFFF
        frames[r, F_NW], frames[r, F_WORD] = nw, w
        frames[r, F_CRC] = load_u64(raw, m - CRC_BYTES) & 0xFFFFFFFF
        counts[2] += (ftype == RUN_START) | (ftype == RUN_STOP)
        if ftype == EVENTS and nw > 0:  # the words copied and their counters chained at once
            c0 = load_u64(raw, HEADER_BYTES) & cmask
            rel, before, good = 0, c0, 0
            for j in range(nw):
                v = load_u64(raw, HEADER_BYTES + 8 * j)
                words[w + j] = v
                rel += _step(before, v, cmask)
                before = v
                ch = (v >> 40) & 0xFFF
                good += (not use_map) or (b < n_map_boards and ch < n_map_channels
                                          and cmap[b, ch] >= 0)
            frames[r, F_C0], frames[r, F_REL] = c0, rel
            frames[r, F_GOOD] = good
        else:
            for j in range(nw):
                words[w + j] = load_u64(raw, HEADER_BYTES + 8 * j)
        w += nw
        r += 1
    return frames[:r]


@numba.njit(nogil=True, cache=True)
def _sequence(frames, row0, n_rows, words, period_ps, cmask, st, window, boards, stats,
              markers):
    """Phase 2 (the link's frames in order, one thread): sequence numbers (duplicates), each
    board's counter, watermark, STATUS and run markers, exactly frame by frame; an accepted
    EVENTS frame gets the board's counter before it (F_LAST) and its events' place in the
    output (F_OUT; -1: nothing to write). Returns (events, markers written)."""
    k, nm = 0, 0
    for p in range(row0.size):
        for r in range(row0[p], row0[p] + n_rows[p]):
            b, ftype, seq, nw = frames[r, F_BOARD], frames[r, F_TYPE], frames[r, F_SEQ], \
                frames[r, F_NW]
            frames[r, F_OUT] = -1
            verdict = _accept_seq(st, window, boards, stats, b, seq, ftype, frames[r, F_CRC])
            if verdict != _SEQ_OK:
                if verdict == _SEQ_DUP:
                    stats[_S_DUPS] += 1
                    st[b, _B_DUPS] += 1
                continue
            stats[_S_OK] += 1
            if seq == 0 and st[b, _B_CRC0] != frames[r, F_CRC] + 1:  # its frames 0, by CRC
                st[b, _B_CRC0_BEFORE] = st[b, _B_CRC0]
                st[b, _B_CRC0] = frames[r, F_CRC] + 1
            last = st[b, _B_LAST]
            wm = st[b, _B_WM]
            if ftype == EVENTS:
                if nw > 0:
                    frames[r, F_LAST], frames[r, F_OUT] = last, k
                    first = _unwrap(last, frames[r, F_C0], cmask)
                    last = first + frames[r, F_REL]
                    st[b, _B_WORDS] += nw
                    good = frames[r, F_GOOD]
                    k += good
                    stats[_S_EVENTS] += good
                    st[b, _B_EVENTS] += good
                    stats[_S_BADCH] += nw - good
                    st[b, _B_BADCH] += nw - good
            elif ftype != REPLY:  # a reply to a command carries no time
                w0, w1 = words[frames[r, F_WORD]], words[frames[r, F_WORD] + 1]
                last = _unwrap(last, w0, cmask)
                t = last * period_ps
                wm = max(wm, t)
                if ftype == STATUS:
                    stats[_S_STATUS] += 1
                    st[b, _B_ST_T] = t
                    st[b, _B_ST_SENT] = (w0 >> 32) & 0xFFFFFFFF
                    st[b, _B_MISSING] = _missing(st[b, _B_ST_SENT], st[b, _B_WORDS])
                    st[b, _B_ST_OVF] = w1 & 0xFFFFFFFF
                    st[b, _B_ST_FLAGS] = (w1 >> 32) & 0xFFFFFFFF
                    st[b, _B_ST_COUNT] += 1
                else:
                    stats[_S_MARKERS] += 1
                    markers[nm, 0] = b
                    markers[nm, 1] = ftype
                    markers[nm, 2] = seq
                    markers[nm, 3] = (w0 >> 32) & 0xFFFFFFFF
                    markers[nm, 4] = t
                    nm += 1
            st[b, _B_LAST] = last
            st[b, _B_WM] = wm
    return k, nm


@numba.njit(nogil=True, cache=True)
def _write(frames, row0, n_rows, words, period_ps, tdc_bits, cmask, cmap, use_map, out_t,
           out_crystal, out_adc):
    """Phase 3 (a piece at a time, in parallel): the events of the piece's accepted EVENTS
    frames, unwrapped from the board's counter before each frame, at their place in the
    output; events whose (board, channel) is not in the map are left out. Each frame's latest
    event time goes to its F_T_MAX (the board's watermark: :func:`_watermarks`)."""
    n_map_boards, n_map_channels = cmap.shape
    for r in range(row0, row0 + n_rows):
        k = frames[r, F_OUT]
        if k < 0:
            continue
        b, w, last = frames[r, F_BOARD], frames[r, F_WORD], frames[r, F_LAST]
        before, t_max = last, np.iinfo(np.int64).min
        for j in range(frames[r, F_NW]):
            v = words[w + j]
            last += _step(before, v, cmask)
            before = v
            t = last * period_ps + ((((v >> 32) & 0xFF) * period_ps) >> tdc_bits)
            t_max = max(t_max, t)
            ch = (v >> 40) & 0xFFF
            g = ch
            if use_map:
                g = cmap[b, ch] if b < n_map_boards and ch < n_map_channels else -1
                if g < 0:
                    continue
            out_t[k] = t
            out_crystal[k] = g
            out_adc[k] = (v >> 52) & 0xFFF
            k += 1
        frames[r, F_T_MAX] = t_max


@numba.njit(nogil=True, cache=True)
def _watermarks(frames, st):
    """Each board's watermark raised to the latest event time of its accepted EVENTS frames
    (after :func:`_write`; a running maximum, so in any order)."""
    for r in range(frames.shape[0]):
        if frames[r, F_OUT] >= 0:
            b = frames[r, F_BOARD]
            st[b, _B_WM] = max(st[b, _B_WM], frames[r, F_T_MAX])


# --------------------------------------------------------------------------- decoder


@dataclass(frozen=True)
class RunMarker:
    """A run start or stop marker as received: ``t_ps`` since run start (board clock)."""

    kind: str
    """``"start"`` or ``"stop"``."""
    board: int
    seq: int
    run: int
    t_ps: int


@dataclass(frozen=True)
class StatusReport:
    """The latest STATUS heartbeat of a board."""

    t_ps: int
    """The board's counter at the heartbeat, as ps since run start."""
    events_sent: int
    """Events the board has sent (mod 2**32)."""
    fifo_overflows: int
    """Events the board's FIFO had to drop (mod 2**32)."""
    flags: int


@dataclass(frozen=True)
class BoardStats:
    """What the decoder has seen of one board."""

    board: int
    frames: int
    """Intact frames accepted (duplicates excluded)."""
    events: int
    seq_gaps: int
    """Frames missing between the oldest and newest accepted sequence numbers."""
    duplicates: int
    bad_channel: int
    """Events dropped: (board, channel) not in the scanner's channel map."""
    watermark_ps: int
    """Latest time seen (events and heartbeats), ps since run start; -1 before any."""
    status_frames: int
    status: StatusReport | None
    markers: list[RunMarker] = field(default_factory=list)
    out_of_sequence: int = 0
    """Intact frames dropped as out of sequence (:attr:`DecoderStats.out_of_sequence`)."""
    sequence_restarts: int = 0
    events_lost: int = 0
    """Events the board's heartbeats say it sent that never arrived (:attr:`DecoderStats.events_lost`)."""


@dataclass(frozen=True)
class DecoderStats:
    """A snapshot of a :class:`Decoder`'s counters (all since it was made)."""

    frames_ok: int
    """Intact frames accepted, any type (duplicates excluded)."""
    frames_bad: int
    """Non-empty 0x00-delimited pieces that were not an intact frame (damaged, truncated,
    garbage, over-long). Pieces, not frames: a burst of noise may make several, a lost frame
    none; frames lost are :attr:`seq_gaps`."""
    bytes_skipped: int
    """Bytes of those chunks (and of a dropped over-long tail), delimiters not counted."""
    seq_gaps: int
    """Frames missing, summed over boards."""
    events: int
    duplicates: int
    """Intact frames dropped because their sequence number was already accepted."""
    status_frames: int
    marker_frames: int
    bad_channel: int
    boards: dict[int, BoardStats]
    out_of_sequence: int = 0
    """Intact frames dropped because their sequence number was far from their board's (SEQ_JUMP
    or more ahead, SEQ_WINDOW or more behind) and the next frame did not follow it."""
    sequence_restarts: int = 0
    """Times a board restarted its sequence numbers (a run-start marker, or two frames in
    sequence far from the old numbers)."""
    events_lost: int = 0
    """Events lost on the link, summed over boards: at each board's latest STATUS heartbeat,
    the events it says it sent minus the event words received from it (every frame lost,
    damaged or dropped as out of sequence before that heartbeat); per run of its sequence
    numbers. Events sent after a board's last heartbeat cannot be counted this way."""

    def as_dict(self) -> dict[str, object]:
        """Plain counters (no per-board details), for monitor messages."""
        return {k: v for k, v in self.__dict__.items() if k != "boards"}


class Decoder:
    """Stateful decoder of a byte stream of frames from one or more boards.

    With a ``scanner``, events come out with the global crystal id of their (board, channel) and
    times use its digitizer clock; an event whose (board, channel) is not in the scanner's channel
    map is dropped and counted (``bad_channel``; the frame itself is intact and counts as ok).
    Without one, ``crystal`` is the channel and the clock is :data:`DEFAULT_CLOCK`.

    Each board's coarse counter is unwrapped with the half-range rule against the last counter
    seen in any frame of that board, starting from 0 (counters are reset at run start): make one
    decoder per run. A decoder is not thread-safe: feed it from one thread at a time.
    """

    def __init__(self, scanner: Scanner | None = None) -> None:
        self.clock = WireClock.of(scanner)
        if scanner is None:
            self._cmap, self._use_map = np.zeros((0, 0), np.int32), False
        else:
            self._cmap, self._use_map = np.ascontiguousarray(scanner.channel_map, np.int32), True
        self._board = np.zeros((_N_BOARD_IDS, _B_COLS), np.int64)
        self._window = np.zeros(_N_BOARD_IDS, np.uint64)
        self._boards = np.zeros(_N_BOARD_IDS, np.int64)
        self._stats = np.zeros(11, np.int64)
        self.scratch = DecodeScratch()
        """Where this decoder's feeds keep their payload words, unless the caller of
        :func:`decode_streams` gives a scratch that several decoders share."""
        self._pending = np.zeros(0, np.uint8)
        self._discarding = False
        self.markers: list[RunMarker] = []
        """Run markers in order of arrival."""

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unterminated frame held back for the next feed."""
        return int(self._pending.size)

    def feed(self, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        """Decode ``data`` (any slice of the stream) and return the events completed (RAW_DTYPE).

        Never raises on bad bytes: damaged frames are counted in :attr:`stats`.
        """
        buf = as_bytes_array(data)
        n = self.max_events(buf.size)
        t, crystal, adc = np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.uint16)
        k = self.feed_into(buf, t, crystal, adc)
        out = np.empty(k, RAW_DTYPE)
        out["t"], out["crystal"], out["adc"] = t[:k], crystal[:k], adc[:k]
        return out

    def max_events(self, n_bytes: int) -> int:
        """The most events that feeding ``n_bytes`` more bytes can complete (every event takes
        8 bytes or more on the wire)."""
        return (self._pending.size + int(n_bytes)) // 8 + 2

    def feed_into(self, data: bytes | bytearray | memoryview | np.ndarray, t: np.ndarray,
                  crystal: np.ndarray, adc: np.ndarray, workers: Workers | None = None) -> int:
        """:meth:`feed` into the columns ``t`` (int64 ps), ``crystal`` (int32) and ``adc``
        (uint16), contiguous, with room for :meth:`max_events` of ``data``; returns how many
        events were written (a DAQ decodes into reused memory this way). ``workers``: threads
        for a big feed (:func:`decode_streams`; the same result for any number)."""
        return decode_streams([self], [[data]], [(t, crystal, adc)], workers)[0]

    def flush(self) -> np.ndarray:
        """End of stream: decode the held-back tail as if a delimiter followed (else count it)."""
        return self.feed(b"\x00")

    def _hold(self, tail: np.ndarray) -> None:
        """Keep an unterminated tail, or drop it when it can no longer be a frame."""
        if self._discarding or tail.size > MAX_CHUNK_BYTES:
            self._stats[_S_SKIPPED] += tail.size
            self._discarding = True
            self._pending = np.zeros(0, np.uint8)
        else:
            self._pending = tail.copy()

    @property
    def watermarks_ps(self) -> dict[int, int]:
        """Latest time seen per board (events and heartbeats), ps since run start."""
        bs = self._boards[: self._stats[_S_NBOARDS]]
        return dict(zip(bs.tolist(), self._board[bs, _B_WM].tolist(), strict=True))

    @property
    def stats(self) -> DecoderStats:
        """A snapshot of the counters, with per-board details."""
        s = self._stats.tolist()
        markers: dict[int, list[RunMarker]] = {}
        for m in self.markers:
            markers.setdefault(m.board, []).append(m)
        boards = {}
        for b in sorted(self._boards[: s[_S_NBOARDS]].tolist()):
            r = self._board[b].tolist()
            status = (StatusReport(r[_B_ST_T], r[_B_ST_SENT], r[_B_ST_OVF], r[_B_ST_FLAGS])
                      if r[_B_ST_COUNT] else None)
            boards[b] = BoardStats(
                board=b, frames=r[_B_ACCEPTED], events=r[_B_EVENTS],
                seq_gaps=r[_B_SPAN] - r[_B_ACCEPTED], duplicates=r[_B_DUPS],
                bad_channel=r[_B_BADCH], watermark_ps=r[_B_WM], status_frames=r[_B_ST_COUNT],
                status=status, markers=markers.get(b, []), out_of_sequence=r[_B_STRAYS],
                sequence_restarts=r[_B_RESTARTS],
                events_lost=r[_B_MISSING_DONE] + r[_B_MISSING])
        return DecoderStats(
            frames_ok=s[_S_OK], frames_bad=s[_S_BAD], bytes_skipped=s[_S_SKIPPED],
            seq_gaps=sum(v.seq_gaps for v in boards.values()), events=s[_S_EVENTS],
            duplicates=s[_S_DUPS], status_frames=s[_S_STATUS], marker_frames=s[_S_MARKERS],
            bad_channel=s[_S_BADCH], boards=boards, out_of_sequence=s[_S_STRAYS],
            sequence_restarts=s[_S_RESTARTS],
            events_lost=sum(v.events_lost for v in boards.values()))


class _Feed:
    """One feed of a decoder in three phases (:func:`_scan` by pieces, :func:`_sequence`,
    :func:`_write` by pieces): the same events and counters as decoding the bytes frame by
    frame, for any number of pieces.

    The bytes are scanned where they lie, each buffer cut into segments that end at a
    delimiter; only a frame that straddles buffers (and the held-back tail) is copied whole.
    A piece is one or more consecutive segments of about PIECE_BYTES (a task of the workers):
    a link's ZeroMQ messages, each of whole frames, are scanned in place a few at a time."""

    def __init__(self, decoder: Decoder, parts: Sequence[Buffer]) -> None:
        self.decoder = decoder
        carry = [decoder._pending] if decoder._pending.size else []
        decoder._pending = np.zeros(0, np.uint8)
        segments: list[tuple[np.ndarray, int, int]] = []
        for part in (as_bytes_array(p) for p in parts):
            carry = _segments(part, carry, segments)
        self.tail = carry[0] if len(carry) == 1 else np.concatenate(carry) if carry else \
            np.zeros(0, np.uint8)
        self.segments = segments
        self.pieces = _pieces(segments)
        self.word0: list[int] = []
        at = 0
        for k, (_, lo, hi) in enumerate(segments):
            self.word0.append(at // 8 + k)
            at += hi - lo
        self.word_room = at // 8 + len(segments) + 1
        """Words of the scratch this feed may need (its segments' payloads, at most)."""
        self.words = np.zeros(0, np.int64)
        self.counts = np.zeros((len(self.pieces), 3), np.int64)
        self.frames: list[np.ndarray] = [np.zeros((0, _F_COLS), np.int64)] * len(self.pieces)
        self.row0 = np.zeros(0, np.int64)
        self.table = np.zeros((0, _F_COLS), np.int64)
        self.events = 0

    @property
    def n_pieces(self) -> int:
        return len(self.pieces)

    def scan(self, p: int) -> None:
        d, c = self.decoder, self.decoder.clock
        tables = []
        for k in range(*self.pieces[p]):
            buf, lo, hi = self.segments[k]
            tables.append(_scan(buf, lo, hi, d._discarding and k == 0, c.period_ps, c.tdc_bits,
                                (1 << c.counter_bits) - 1, d._cmap, d._use_map, self.words,
                                self.word0[k], self.counts[p]))
        self.frames[p] = np.concatenate(tables) if tables else np.zeros((0, _F_COLS), np.int64)

    def sequence(self) -> None:
        d, c = self.decoder, self.decoder.clock
        self.table = np.concatenate(self.frames) if len(self.frames) > 1 else self.frames[0]
        n_rows = np.array([f.shape[0] for f in self.frames], np.int64)
        self.row0 = np.concatenate(([0], np.cumsum(n_rows)[:-1])).astype(np.int64)
        markers = np.zeros((int(self.counts[:, 2].sum()), 5), np.int64)
        self.events, nm = _sequence(self.table, self.row0, n_rows, self.words, c.period_ps,
                                    (1 << c.counter_bits) - 1, d._board, d._window, d._boards,
                                    d._stats, markers)
        for b, ftype, seq, run, t in markers[:nm].tolist():
            d.markers.append(RunMarker("start" if ftype == RUN_START else "stop", b, seq, run, t))

    def write(self, p: int, columns: Columns) -> None:
        d, c = self.decoder, self.decoder.clock
        _write(self.table, self.row0[p], self.frames[p].shape[0], self.words, c.period_ps,
               c.tdc_bits, (1 << c.counter_bits) - 1, d._cmap, d._use_map, *columns)

    def finish(self) -> int:
        d = self.decoder
        _watermarks(self.table, d._board)
        d._stats[_S_BAD] += self.counts[:, 0].sum()
        d._stats[_S_SKIPPED] += self.counts[:, 1].sum()
        if self.segments:
            d._discarding = False
        d._hold(self.tail)
        return self.events


def _segments(part: np.ndarray, carry: list[np.ndarray],
              segments: list[tuple[np.ndarray, int, int]]) -> list[np.ndarray]:
    """Append ``part``'s segments (buffer, lo, hi: whole chunks up to a delimiter, at most
    about PIECE_BYTES each) to ``segments``: the chunk that ``carry`` (the bytes before it since
    the last delimiter) began is copied together with its end; returns the new carry."""
    if part.size == 0:
        return carry
    end = _after_last_zero(part)
    if end == 0:
        return [*carry, part]
    start = 0
    if carry:
        start = find_zero(part, 0) + 1
        joined = np.concatenate([*carry, part[:start]])
        segments.append((joined, 0, joined.size))
    while start < end:
        stop = end if start + PIECE_BYTES >= end else find_zero(part, start + PIECE_BYTES) + 1
        segments.append((part, start, stop))
        start = stop
    return [part[end:]] if end < part.size else []


def _pieces(segments: list[tuple[np.ndarray, int, int]]) -> list[tuple[int, int]]:
    """Consecutive segments grouped into pieces of about PIECE_BYTES: (first, stop) each."""
    pieces, first, size = [], 0, 0
    for k, (_, lo, hi) in enumerate(segments):
        size += hi - lo
        if size >= PIECE_BYTES or k == len(segments) - 1:
            pieces.append((first, k + 1))
            first, size = k + 1, 0
    return pieces or [(0, 0)]


class DecodeScratch:
    """Work memory of :func:`decode_streams`: the payload words of every feed. Kept from feed
    to feed and grown only by doubling, and touched when reserved (:meth:`reserve`), so that
    no page is first written (a page fault, a page zeroed by the kernel) while data flow."""

    def __init__(self) -> None:
        self.words = np.zeros(0, np.int64)

    def reserve(self, n_bytes: int, n_feeds: int = 1, n_parts: int = 1024) -> None:
        """Room for ``n_feeds`` feeds of ``n_bytes`` in all, in up to ``n_parts`` buffers,
        touched now."""
        n_words = n_bytes // 8 + n_bytes // PIECE_BYTES + 2 * n_parts + 3 * n_feeds
        if self.words.size < n_words:
            self.words = np.ones(n_words, np.int64)

    def assign(self, feeds: Sequence[_Feed]) -> None:
        """Give each feed its part of the scratch (grown, by doubling, where too small)."""
        words = sum(f.word_room for f in feeds)
        if self.words.size < words:
            self.words = np.empty(max(words, 2 * self.words.size), np.int64)
        at_word = 0
        for f in feeds:
            f.words = self.words[at_word:at_word + f.word_room]
            at_word += f.word_room


def decode_streams(decoders: Sequence[Decoder], parts: Sequence[Sequence[Buffer]],
                   columns: Sequence[Columns], workers: Workers | None = None,
                   scratch: DecodeScratch | None = None) -> list[int]:
    """Feed each decoder its byte buffers (in order) into its columns (room for
    :meth:`Decoder.max_events` of their bytes) on ``workers``: every stream's pieces scanned in
    parallel, each stream's frames put in sequence (streams in parallel), the events written
    by pieces in parallel. Returns the events written per stream. ``scratch``: work memory
    that every stream shares (a DAQ keeps one for the run); by default each decoder's own."""
    workers = workers or SERIAL
    feeds = [_Feed(d, p) for d, p in zip(decoders, parts, strict=True)]
    if scratch is not None:
        scratch.assign(feeds)
    else:
        for f in feeds:
            f.decoder.scratch.assign([f])
    pieces = [(f, p) for f in feeds for p in range(f.n_pieces)]
    workers.map(lambda i: pieces[i][0].scan(pieces[i][1]), len(pieces), "decode")
    workers.map(lambda i: feeds[i].sequence(), len(feeds), "decode")
    cols = {id(f): c for f, c in zip(feeds, columns, strict=True)}
    workers.map(lambda i: pieces[i][0].write(pieces[i][1], cols[id(pieces[i][0])]),
                len(pieces), "decode")
    return [f.finish() for f in feeds]


@numba.njit(nogil=True, cache=True)
def _after_last_zero(buf):
    """The position after the last 0x00 of ``buf`` (0 when there is none)."""
    for i in range(buf.size - 1, -1, -1):
        if buf[i] == 0:
            return i + 1
    return 0
