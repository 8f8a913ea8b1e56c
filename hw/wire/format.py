"""The wire format's constants: frame types and sizes, the digitizer's time base."""

from __future__ import annotations

from typing import NamedTuple

from hw._cobs import max_encoded_len
from hw.scanner import Scanner

VERSION = 2
"""The version this product's encoder and the firmware packer write."""
OLDEST_READ_VERSION = 1
"""The decoder reads every version from this one to VERSION (recorded journals replay)."""
#: Frame types (byte 1 of a frame); COMMAND goes from the host to a board, REPLY back.
EVENTS, STATUS, RUN_START, RUN_STOP, COMMAND, REPLY = 1, 2, 3, 4, 5, 6
EVENTS_PER_FRAME = 256
HEADER_BYTES = 12
CRC_BYTES = 4
MAX_CHANNEL = 0xFFF
MAX_ADC = 0xFFF
#: Longest frame before COBS: header, 256 events, CRC.
MAX_RAW_FRAME_BYTES = HEADER_BYTES + 8 * EVENTS_PER_FRAME + CRC_BYTES
#: Longest frame on the wire: the leading 0x00, the COBS encoding of the longest frame and
#: the trailing 0x00 (version 2 frames a frame by a delimiter on each side).
MAX_FRAME_BYTES = max_encoded_len(MAX_RAW_FRAME_BYTES) + 2
#: Longest chunk between two delimiters that can be a frame.
MAX_CHUNK_BYTES = max_encoded_len(MAX_RAW_FRAME_BYTES)
#: Sequence numbers this far behind the newest of a board are told apart (late vs duplicate).
SEQ_WINDOW = 64


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

#: pyserial URL schemes a serial link may be named by (besides a device path).
SERIAL_URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://", "alt://", "hwgrep://")
