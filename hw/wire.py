"""The digitizer wire protocol, version 1: COBS-framed, CRC-checked frames (see hw/WIRE.md).

One framing for every transport (ZeroMQ, serial, files). A frame carries a frame type, a board
id, a 32-bit sequence number and up to 256 packed 8-byte events (coarse clock counter, fine TDC,
channel, ADC code), or a STATUS heartbeat, or a run start/stop marker. :func:`encode` turns
RAW_DTYPE events into EVENTS frames; :class:`Decoder` turns any byte stream back into RAW_DTYPE
events, surviving garbage, damaged, truncated and duplicated frames, and unwrapping the boards'
coarse counters. Encoder and decoder cores are numba kernels over whole buffers.

Times above the wire are int64 ps since run start; on the wire a time is the board's coarse
counter (period ``P = scanner.digitizer.clock_period_ps``, only its low ``counter_bits`` bits)
plus ``tdc_bits`` of fine time: ``coarse = t // P``, ``fine = ((t - coarse*P) << tdc_bits) // P``,
decoded ``t' = coarse*P + ((fine*P) >> tdc_bits)`` so that ``0 <= t - t' < P/2**tdc_bits + 1``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np

from hw._cobs import cobs_decode, cobs_put, find_zero, load_u64, max_encoded_len
from hw._crc import CRC_INIT, as_bytes_array, crc32, crc32_update, crc_bytes, crc_word, crc_words
from hw.dtypes import RAW_DTYPE
from hw.scanner import Scanner

__all__ = [
    "DEFAULT_CLOCK",
    "EVENTS",
    "EVENTS_PER_FRAME",
    "MAX_FRAME_BYTES",
    "RUN_START",
    "RUN_STOP",
    "STATUS",
    "VERSION",
    "BoardStats",
    "Decoder",
    "DecoderStats",
    "RunMarker",
    "StatusReport",
    "WireClock",
    "crc32",
    "encode",
    "encode_marker",
    "encode_status",
    "frames_for",
]

VERSION = 1
#: Frame types (byte 1 of a frame).
EVENTS, STATUS, RUN_START, RUN_STOP = 1, 2, 3, 4
EVENTS_PER_FRAME = 256
HEADER_BYTES = 12
CRC_BYTES = 4
MAX_CHANNEL = 0xFFF
MAX_ADC = 0xFFF
#: Longest frame before COBS: header, 256 events, CRC.
MAX_RAW_FRAME_BYTES = HEADER_BYTES + 8 * EVENTS_PER_FRAME + CRC_BYTES
#: Longest frame on the wire: COBS encoding of the longest frame plus the 0x00 delimiter.
MAX_FRAME_BYTES = max_encoded_len(MAX_RAW_FRAME_BYTES) + 1
_MAX_CHUNK = MAX_FRAME_BYTES - 1
#: Sequence numbers this far behind the newest of a board are told apart (late vs duplicate).
SEQ_WINDOW = 64
_N_BOARD_IDS = 1 << 16
_MARKER_ROWS = 256


class WireClock(NamedTuple):
    """The digitizer's time base: coarse period (ps), fine TDC bits, coarse counter width."""

    period_ps: int
    tdc_bits: int
    counter_bits: int

    @classmethod
    def of(cls, scanner: Scanner | None) -> WireClock:
        """The scanner's digitizer clock, or the default (200 MHz, 8 TDC bits, 32-bit counter)."""
        if scanner is None:
            return DEFAULT_CLOCK
        d = scanner.digitizer
        return cls(d.clock_period_ps, d.tdc_bits, d.counter_bits)


DEFAULT_CLOCK = WireClock(5000, 8, 32)


def frames_for(n_events: int) -> int:
    """Number of EVENTS frames :func:`encode` makes for ``n_events`` events."""
    return -(-int(n_events) // EVENTS_PER_FRAME)


# --------------------------------------------------------------------------- encoder kernels


@numba.njit(nogil=True, cache=True)
def _pack_frame(ftype: int, board: int, seq: int, words: np.ndarray, n_words: int,
                out: np.ndarray, pos: int) -> int:
    """One frame of ``words[:n_words]`` (int64 holding u64), COBS-encoded with its delimiter into
    ``out[pos:]`` (room for MAX_FRAME_BYTES needed); returns the position after it.

    Header, payload and CRC are streamed straight into the COBS encoding, the CRC computed on
    the way: one pass, no intermediate frame buffer.
    """
    h0 = VERSION | (ftype << 8) | (board << 16) | (seq << 32)  # bytes 0-7
    h1 = n_words  # bytes 8-11: n, reserved 0
    reg = crc_bytes(crc_word(CRC_INIT, h0), h1, 4)
    code_pos, pos, code = pos, pos + 1, 1
    pos, code_pos, code = cobs_put(out, pos, code_pos, code, h0, 8)
    pos, code_pos, code = cobs_put(out, pos, code_pos, code, h1, 4)
    for j in range(0, n_words - 1, 2):
        v, u = words[j], words[j + 1]
        reg = crc_words(reg, v, u)
        pos, code_pos, code = cobs_put(out, pos, code_pos, code, v, 8)
        pos, code_pos, code = cobs_put(out, pos, code_pos, code, u, 8)
    if n_words % 2:
        v = words[n_words - 1]
        reg = crc_word(reg, v)
        pos, code_pos, code = cobs_put(out, pos, code_pos, code, v, 8)
    pos, code_pos, code = cobs_put(out, pos, code_pos, code, reg ^ 0xFFFFFFFF, 4)
    out[code_pos] = code
    out[pos] = 0
    return pos + 1


@numba.njit(nogil=True, cache=True, inline="always")
def _floor_div(a: int, d: int, inv_d: float) -> tuple[int, int]:
    """(a // d, a % d) for a >= 0, d > 0: estimated in floating point, then corrected exactly
    (an integer divide per event would cost as much as the rest of the encoder)."""
    q = np.int64(a * inv_d)
    r = a - q * d
    while r < 0:
        q -= 1
        r += d
    while r >= d:
        q += 1
        r -= d
    return q, r


@numba.njit(nogil=True, cache=True, inline="always")
def _split_time(t: int, period_ps: int, inv_period: float, tdc_bits: int) -> tuple[int, int]:
    """(coarse, fine) of ``t`` >= 0 ps: ``t // P`` and ``((t - coarse*P) << tdc_bits) // P``."""
    coarse, r = _floor_div(t, period_ps, inv_period)
    fine = _floor_div(r << tdc_bits, period_ps, inv_period)[0]
    return coarse, fine


@numba.njit(nogil=True, cache=True)
def _encode_events(t: np.ndarray, crystal: np.ndarray, adc: np.ndarray, board: int,
                   first_seq: int, period_ps: int, tdc_bits: int, counter_bits: int,
                   channel_of: np.ndarray, use_map: bool, out: np.ndarray
                   ) -> tuple[int, int, int]:
    """Encode events into EVENTS frames in ``out``; with ``use_map``, ``crystal`` are global
    crystal ids and ``channel_of[crystal]`` their channel on ``board`` (-1: another board's).

    Returns (bytes written, error, index): error 0 none, 1 negative time, 2 channel (or crystal)
    out of range, 3 crystal of another board, 4 ADC code out of range; index the bad event.
    """
    n = t.size
    words = np.empty(EVENTS_PER_FRAME, np.int64)
    inv_period = 1.0 / period_ps
    cmask = (np.int64(1) << counter_bits) - 1
    pos = 0
    seq = first_seq
    for f0 in range(0, n, EVENTS_PER_FRAME):
        k = min(EVENTS_PER_FRAME, n - f0)
        for j in range(k):
            i = f0 + j
            ti = np.int64(t[i])
            if ti < 0:
                return pos, 1, i
            c = np.int64(crystal[i])
            if use_map:
                if c < 0 or c >= channel_of.size:
                    return pos, 2, i
                ch = np.int64(channel_of[c])
                if ch < 0:
                    return pos, 3, i
            else:
                ch = c
            if ch < 0 or ch > MAX_CHANNEL:
                return pos, 2, i
            a = np.int64(adc[i])
            if a < 0 or a > MAX_ADC:
                return pos, 4, i
            coarse, fine = _split_time(ti, period_ps, inv_period, tdc_bits)
            words[j] = (coarse & cmask) | (fine << 32) | (ch << 40) | (a << 52)
        pos = _pack_frame(EVENTS, board, seq, words, k, out, pos)
        seq = (seq + 1) & 0xFFFFFFFF
    return pos, 0, -1


@numba.njit(nogil=True, cache=True)
def _encode_control(ftype: int, board: int, seq: int, w0: int, w1: int) -> np.ndarray:
    """One two-word frame (STATUS or run marker), delimiter included."""
    words = np.array([w0, w1], np.int64)
    out = np.empty(MAX_FRAME_BYTES, np.uint8)
    return out[: _pack_frame(ftype, board, seq, words, 2, out, 0)]


_ENCODE_ERRORS = {
    1: "time {t} ps is negative (times are ps since run start)",
    2: "crystal/channel {c} is out of range",
    3: "crystal {c} is not read by board {board}",
    4: "ADC code {a} does not fit 12 bits",
}


_scratch = threading.local()
_SCRATCH_MAX_BYTES = 64 << 20


def _output_buffer(n_bytes: int) -> np.ndarray:
    """A uint8 work buffer of at least ``n_bytes``, kept per thread for the next call (up to
    64 MiB): the encoder's bytes are copied out of it, and a fresh buffer per call would cost
    the page faults of touching new memory, as much as the encoding itself."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < n_bytes:
        buf = np.empty(n_bytes, np.uint8)
        if n_bytes <= _SCRATCH_MAX_BYTES:
            _scratch.buf = buf
    return buf


_channel_tables: weakref.WeakKeyDictionary[Scanner, dict[int, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def _channels_on(scanner: Scanner, board: int) -> np.ndarray:
    """(n_crystals,) int16: each crystal's channel if ``board`` reads it, else -1 (cached)."""
    tables = _channel_tables.setdefault(scanner, {})
    if board not in tables:
        tables[board] = np.where(scanner.crystal_board == board, scanner.crystal_channel,
                                 -1).astype(np.int16)
    return tables[board]


def _check_board(board: int) -> int:
    if not 0 <= int(board) < _N_BOARD_IDS:
        raise ValueError(f"board id {board} does not fit 16 bits")
    return int(board)


def _check_u32(name: str, value: int) -> int:
    if not 0 <= int(value) <= 0xFFFFFFFF:
        raise ValueError(f"{name} {value} does not fit 32 bits")
    return int(value)


def encode(raw: np.ndarray, *, board: int, first_seq: int, scanner: Scanner | None = None
           ) -> bytes:
    """EVENTS frames for ``raw`` (RAW_DTYPE: ``t`` ps since run start, ``crystal``, ``adc``).

    With a ``scanner``, ``raw["crystal"]`` are global crystal ids, all read by ``board``, sent as
    their board channel, and the clock is the scanner's digitizer; without one,
    ``raw["crystal"]`` is the channel (0..4095) and the clock is :data:`DEFAULT_CLOCK`.
    Makes :func:`frames_for` ``(raw.size)`` frames numbered ``first_seq, first_seq + 1, ...``
    (mod 2**32). Raises ValueError for an event that cannot be sent, naming it.
    """
    board = _check_board(board)
    clock = WireClock.of(scanner)
    channel_of = np.zeros(0, np.int16) if scanner is None else _channels_on(scanner, board)
    n = raw.size
    out = _output_buffer(n * 8 + frames_for(n) * (MAX_FRAME_BYTES - 8 * EVENTS_PER_FRAME))
    nbytes, err, i = _encode_events(
        raw["t"], raw["crystal"], raw["adc"], board, int(first_seq) & 0xFFFFFFFF,
        clock.period_ps, clock.tdc_bits, clock.counter_bits, channel_of, scanner is not None,
        out)
    if err:
        ev = raw[i]
        detail = _ENCODE_ERRORS[err].format(t=ev["t"], c=ev["crystal"], a=ev["adc"], board=board)
        raise ValueError(f"cannot encode event {i}: {detail}")
    return out[:nbytes].tobytes()


def _counter(t_ps: int, clock: WireClock) -> int:
    if int(t_ps) < 0:
        raise ValueError(f"time {t_ps} ps is negative (times are ps since run start)")
    return (int(t_ps) // clock.period_ps) & ((1 << clock.counter_bits) - 1)


def encode_status(*, board: int, seq: int, t_ps: int, events_sent: int, fifo_overflows: int,
                  flags: int = 0, scanner: Scanner | None = None) -> bytes:
    """A STATUS heartbeat: the board's counter at ``t_ps`` (ps since run start), the events it has
    sent and the events its FIFO had to drop (both counted mod 2**32), and board ``flags``."""
    clock = WireClock.of(scanner)
    w0 = _counter(t_ps, clock) | (int(events_sent) & 0xFFFFFFFF) << 32
    w1 = (int(fifo_overflows) & 0xFFFFFFFF) | _check_u32("flags", flags) << 32
    return _encode_control(STATUS, _check_board(board), int(seq) & 0xFFFFFFFF,
                           _signed64(w0), _signed64(w1)).tobytes()


def encode_marker(kind: int, *, board: int, seq: int, t_ps: int, run: int,
                  scanner: Scanner | None = None) -> bytes:
    """A RUN_START or RUN_STOP marker (``kind``) for run number ``run`` at ``t_ps``."""
    if kind not in (RUN_START, RUN_STOP):
        raise ValueError(f"marker kind {kind} is neither RUN_START (3) nor RUN_STOP (4)")
    w0 = _counter(t_ps, WireClock.of(scanner)) | _check_u32("run number", run) << 32
    return _encode_control(kind, _check_board(board), int(seq) & 0xFFFFFFFF,
                           _signed64(w0), 0).tobytes()


def _signed64(word: int) -> int:
    """A u64 word as the int64 with the same bits (what the kernels take)."""
    return word - (1 << 64) if word >= 1 << 63 else word


# --------------------------------------------------------------------------- decoder kernel

# Decoder-wide counters (Decoder._stats).
_S_OK, _S_BAD, _S_SKIPPED, _S_EVENTS, _S_DUPS, _S_STATUS, _S_MARKERS, _S_BADCH, _S_NBOARDS = (
    range(9))
# Per-board state columns (Decoder._board, one row per board id).
(_B_SEEN, _B_HIGH, _B_SPAN, _B_ACCEPTED, _B_DUPS, _B_EVENTS, _B_BADCH, _B_LAST, _B_WM,
 _B_ST_T, _B_ST_SENT, _B_ST_OVF, _B_ST_FLAGS, _B_ST_COUNT) = range(14)
_B_COLS = 14


@numba.njit(nogil=True, cache=True)
def _frame_ok(raw: np.ndarray, n: int) -> bool:
    """Decoded frame ``raw[:n]`` is well-formed and its CRC matches (``raw``: 8 bytes slack)."""
    if n < HEADER_BYTES + CRC_BYTES:
        return False
    h0 = load_u64(raw, 0)
    h1 = load_u64(raw, 8)
    ftype = (h0 >> 8) & 0xFF
    nw = h1 & 0xFFFF
    if h0 & 0xFF != VERSION or (h1 >> 16) & 0xFFFF != 0:
        return False
    if ftype == EVENTS:
        if nw > EVENTS_PER_FRAME:
            return False
    elif ftype < EVENTS or ftype > RUN_STOP or nw != 2:
        return False
    if n != HEADER_BYTES + 8 * nw + CRC_BYTES:
        return False
    return crc32_update(0, raw, 0, n - CRC_BYTES) == load_u64(raw, n - CRC_BYTES) & 0xFFFFFFFF


@numba.njit(nogil=True, cache=True)
def _accept_seq(st: np.ndarray, window: np.ndarray, boards: np.ndarray, stats: np.ndarray,
                b: int, seq: int) -> bool:
    """Sequence bookkeeping of board ``b``; False for a frame already seen (or too old to tell).

    ``span`` is newest - oldest accepted seq + 1, so the board's missing frames are span - accepted.
    ``window`` bit k is set when seq newest - k has been accepted (k < SEQ_WINDOW).
    """
    if st[b, _B_SEEN] == 0:
        st[b, _B_SEEN] = 1
        st[b, _B_HIGH] = seq
        st[b, _B_SPAN] = 1
        st[b, _B_ACCEPTED] = 1
        st[b, _B_LAST] = 0
        st[b, _B_WM] = -1
        window[b] = np.uint64(1)
        boards[stats[_S_NBOARDS]] = b
        stats[_S_NBOARDS] += 1
        return True
    d = (seq - st[b, _B_HIGH]) & 0xFFFFFFFF
    if d == 0:
        return False
    if d < 0x80000000:  # ahead: the d - 1 frames in between are missing (for now)
        window[b] = (window[b] << np.uint64(d)) | np.uint64(1) if d < SEQ_WINDOW else np.uint64(1)
        st[b, _B_HIGH] = seq
        st[b, _B_SPAN] += d
        st[b, _B_ACCEPTED] += 1
        return True
    k = 0x100000000 - d  # behind by k: a late frame if not yet seen
    if k >= SEQ_WINDOW or (window[b] >> np.uint64(k)) & np.uint64(1):
        return False
    window[b] |= np.uint64(1) << np.uint64(k)
    st[b, _B_ACCEPTED] += 1
    st[b, _B_SPAN] = max(st[b, _B_SPAN], k + 1)
    return True


@numba.njit(nogil=True, cache=True, inline="always")
def _unwrap(last: int, counter: int, cmask: int) -> int:
    """The unwrapped counter nearest ``last`` (half-range rule) whose low bits are ``counter``."""
    delta = (counter - last) & cmask
    return last + delta - (cmask + 1) if delta > cmask >> 1 else last + delta


@numba.njit(nogil=True, cache=True)
def _decode(buf: np.ndarray, pos: int, discarding: bool, period_ps: int, tdc_bits: int,
            counter_bits: int, cmap: np.ndarray, use_map: bool, st: np.ndarray,
            window: np.ndarray, boards: np.ndarray, stats: np.ndarray, out_t: np.ndarray,
            out_crystal: np.ndarray, out_adc: np.ndarray, k: int, markers: np.ndarray
            ) -> tuple[int, int, int, bool]:
    """Decode every 0x00-terminated chunk of ``buf`` from ``pos``.

    Events go to ``out_*[k:]``, run markers to ``markers`` rows (board, type, seq, run, t_ps);
    stops early when ``markers`` is full. ``discarding``: the first chunk is the end of an
    over-long one, bad whatever it holds. Returns (position after the last chunk decoded, events
    written up to, markers written, discarding).
    """
    n = buf.size
    raw = np.empty(_MAX_CHUNK + 8, np.uint8)
    cmask = (np.int64(1) << counter_bits) - 1
    n_map_boards, n_map_channels = cmap.shape
    nm = 0
    while pos < n and nm < markers.shape[0]:
        e = find_zero(buf, pos)
        if e == n:
            break
        chunk = e - pos
        start = pos
        pos = e + 1
        if discarding or chunk > _MAX_CHUNK:
            discarding = False
            stats[_S_BAD] += 1
            stats[_S_SKIPPED] += chunk
            continue
        if chunk == 0:
            continue
        m = cobs_decode(buf, start, e, raw)
        if m < 0 or not _frame_ok(raw, m):
            stats[_S_BAD] += 1
            stats[_S_SKIPPED] += chunk
            continue
        h0 = load_u64(raw, 0)
        ftype = (h0 >> 8) & 0xFF
        b = (h0 >> 16) & 0xFFFF
        seq = (h0 >> 32) & 0xFFFFFFFF
        nw = load_u64(raw, 8) & 0xFFFF
        if not _accept_seq(st, window, boards, stats, b, seq):
            stats[_S_DUPS] += 1
            st[b, _B_DUPS] += 1
            continue
        stats[_S_OK] += 1
        last = st[b, _B_LAST]
        wm = st[b, _B_WM]
        if ftype == EVENTS:
            bad = 0
            for j in range(nw):
                v = load_u64(raw, HEADER_BYTES + 8 * j)
                last = _unwrap(last, v, cmask)
                t = last * period_ps + ((((v >> 32) & 0xFF) * period_ps) >> tdc_bits)
                wm = max(wm, t)
                ch = (v >> 40) & 0xFFF
                g = ch
                if use_map:
                    g = cmap[b, ch] if b < n_map_boards and ch < n_map_channels else -1
                    if g < 0:
                        bad += 1
                        continue
                out_t[k] = t
                out_crystal[k] = g
                out_adc[k] = (v >> 52) & 0xFFF
                k += 1
            stats[_S_EVENTS] += nw - bad
            st[b, _B_EVENTS] += nw - bad
            stats[_S_BADCH] += bad
            st[b, _B_BADCH] += bad
        else:
            w0 = load_u64(raw, HEADER_BYTES)
            w1 = load_u64(raw, HEADER_BYTES + 8)
            last = _unwrap(last, w0, cmask)
            t = last * period_ps
            wm = max(wm, t)
            if ftype == STATUS:
                stats[_S_STATUS] += 1
                st[b, _B_ST_T] = t
                st[b, _B_ST_SENT] = (w0 >> 32) & 0xFFFFFFFF
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
    return pos, k, nm, discarding


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


@dataclass(frozen=True)
class DecoderStats:
    """A snapshot of a :class:`Decoder`'s counters (all since it was made)."""

    frames_ok: int
    """Intact frames accepted, any type (duplicates excluded)."""
    frames_bad: int
    """Non-empty 0x00-delimited chunks that were not an intact frame (damaged, truncated,
    garbage, over-long)."""
    bytes_skipped: int
    """Bytes of those chunks (and of a dropped over-long tail), delimiters not counted."""
    seq_gaps: int
    """Frames missing, summed over boards."""
    events: int
    duplicates: int
    """Intact frames dropped because their sequence number was already accepted, or lies more
    than SEQ_WINDOW frames behind the board's newest (too old to tell)."""
    status_frames: int
    marker_frames: int
    bad_channel: int
    boards: dict[int, BoardStats]

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
        self._stats = np.zeros(9, np.int64)
        self._markers = np.zeros((_MARKER_ROWS, 5), np.int64)
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
                  crystal: np.ndarray, adc: np.ndarray) -> int:
        """:meth:`feed` into the columns ``t`` (int64 ps), ``crystal`` (int32) and ``adc``
        (uint16), contiguous, with room for :meth:`max_events` of ``data``; returns how many
        events were written (a DAQ decodes into reused memory this way)."""
        buf = as_bytes_array(data)
        k = 0
        if self._pending.size:
            z = find_zero(buf, 0)
            if z == buf.size:
                self._hold(np.concatenate((self._pending, buf)))
                return 0
            head, buf = as_bytes_array(np.concatenate((self._pending, buf[: z + 1]))), buf[z + 1:]
            self._pending = np.zeros(0, np.uint8)
            k = self._run(head, t, crystal, adc, k)
        return self._run(buf, t, crystal, adc, k)

    def flush(self) -> np.ndarray:
        """End of stream: decode the held-back tail as if a delimiter followed (else count it)."""
        return self.feed(b"\x00")

    def _run(self, buf: np.ndarray, out_t: np.ndarray, out_crystal: np.ndarray,
             out_adc: np.ndarray, k: int) -> int:
        pos = 0
        while True:
            pos, k, nm, self._discarding = _decode(
                buf, pos, self._discarding, self.clock.period_ps, self.clock.tdc_bits,
                self.clock.counter_bits, self._cmap, self._use_map, self._board, self._window,
                self._boards, self._stats, out_t, out_crystal, out_adc, k, self._markers)
            for b, ftype, seq, run, t in self._markers[:nm].tolist():
                self.markers.append(RunMarker("start" if ftype == RUN_START else "stop",
                                              b, seq, run, t))
            if nm < _MARKER_ROWS:
                break
        self._hold(buf[pos:])
        return k

    def _hold(self, tail: np.ndarray) -> None:
        """Keep an unterminated tail, or drop it when it can no longer be a frame."""
        if self._discarding or tail.size > _MAX_CHUNK:
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
                status=status, markers=markers.get(b, []))
        return DecoderStats(
            frames_ok=s[_S_OK], frames_bad=s[_S_BAD], bytes_skipped=s[_S_SKIPPED],
            seq_gaps=sum(v.seq_gaps for v in boards.values()), events=s[_S_EVENTS],
            duplicates=s[_S_DUPS], status_frames=s[_S_STATUS], marker_frames=s[_S_MARKERS],
            bad_channel=s[_S_BADCH], boards=boards)
