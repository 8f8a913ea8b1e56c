"""The encoder: RAW_DTYPE events, heartbeats and run markers into COBS-framed, CRC-checked frames,
streamed by one numba kernel (header, payload and CRC straight into the COBS encoding)."""

from __future__ import annotations

import threading
import weakref

import numba
import numpy as np

from hw._cobs import cobs_put
from hw._crc import CRC_INIT, crc_bytes, crc_word, crc_words
from hw.scanner import Scanner
from hw.wire.format import (
    EVENTS,
    EVENTS_PER_FRAME,
    MAX_ADC,
    MAX_CHANNEL,
    MAX_FRAME_BYTES,
    RUN_START,
    RUN_STOP,
    STATUS,
    VERSION,
    WireClock,
    frames_for,
)

_N_BOARD_IDS = 1 << 16

# --------------------------------------------------------------------------- encoder kernels


@numba.njit(nogil=True, cache=True)
def _pack_frame(ftype: int, board: int, seq: int, words: np.ndarray, n_words: int,
                out: np.ndarray, pos: int) -> int:
    """One frame of ``words[:n_words]`` (int64 holding u64), COBS-encoded between two 0x00
    delimiters into ``out[pos:]`` (room for MAX_FRAME_BYTES needed); returns the position
    after it.

    Header, payload and CRC are streamed straight into the COBS encoding, the CRC computed on
    the way: one pass, no intermediate frame buffer.
    """
    h0 = VERSION | (ftype << 8) | (board << 16) | (seq << 32)  # bytes 0-7
    h1 = n_words  # bytes 8-11: n, reserved 0
    reg = crc_bytes(crc_word(CRC_INIT, h0), h1, 4)
    out[pos] = 0  # the leading delimiter ends whatever came before (line noise, a cut frame)
    code_pos, pos, code = pos + 1, pos + 2, 1
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


