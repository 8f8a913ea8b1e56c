"""The digitizer wire protocol, version 2 (reads 1): COBS-framed, CRC-checked frames (hw/WIRE.md).

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

from hw._crc import crc32
from hw.wire.decode import BoardStats, Decoder, DecoderStats, RunMarker, StatusReport
from hw.wire.encode import encode, encode_marker, encode_status
from hw.wire.format import (
    COMMAND,
    DEFAULT_CLOCK,
    EVENTS,
    EVENTS_PER_FRAME,
    MAX_FRAME_BYTES,
    REPLY,
    RUN_START,
    RUN_STOP,
    STATUS,
    VERSION,
    WireClock,
    frames_for,
)

__all__ = [
    "COMMAND",
    "DEFAULT_CLOCK",
    "EVENTS",
    "EVENTS_PER_FRAME",
    "MAX_FRAME_BYTES",
    "REPLY",
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
