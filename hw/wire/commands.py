"""The command link (WIRE.md section 10): the host's COMMAND frames to a board, and the board's
two-word frames (REPLY, STATUS, run markers) read back one at a time."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

from hw.wire.encode import _encode_control, _signed64
from hw.wire.format import COMMAND, CRC_BYTES, HEADER_BYTES, REPLY, VERSION

#: Any board: a COMMAND to this board id is for whichever board reads it.
ANY_BOARD = 0xFFFF
#: Every channel: a THRESHOLD for this channel sets them all.
EVERY_CHANNEL = 0xFFFFFFFF


class Opcode(IntEnum):
    """What a COMMAND asks (word 0, bits 0-7)."""

    PING = 1
    START = 2
    STOP = 3
    MASK = 4
    THRESHOLD = 5
    RESET = 6
    UPTIME = 7


class Result(IntEnum):
    """How a board answered (a REPLY's word 0, bits 8-15)."""

    OK = 0
    BAD_FRAME = 1
    UNKNOWN = 2
    WRONG_STATE = 3
    BAD_ARGUMENT = 4


def encode_command(opcode: int, *, board: int = ANY_BOARD, seq: int = 0, a: int = 0,
                   b: int = 0) -> bytes:
    """A COMMAND frame (delimiters included): ``a`` a u32 argument, ``b`` a u64 one."""
    if not 0 <= a <= 0xFFFFFFFF or not 0 <= b < 1 << 64 or not 0 <= opcode <= 0xFF:
        raise ValueError(f"command {opcode} arguments out of range: a={a}, b={b}")
    w0 = int(opcode) | int(a) << 32
    return _encode_control(COMMAND, int(board) & 0xFFFF, int(seq) & 0xFFFFFFFF, _signed64(w0),
                           _signed64(int(b))).tobytes()


@dataclass(frozen=True)
class Control:
    """A two-word frame as read: its type, board, sequence number and words."""

    type: int
    board: int
    seq: int
    w0: int
    w1: int


@dataclass(frozen=True)
class Reply:
    """A board's answer to a command."""

    board: int
    opcode: int
    result: Result
    cmd_seq: int
    value: int
    """PING: the firmware version (major << 16 | minor << 8 | patch)."""
    rejected: int
    """Commands the board rejected since power-up or its last RESET."""

    @classmethod
    def of(cls, frame: Control) -> Reply:
        return cls(frame.board, frame.w0 & 0xFF, Result((frame.w0 >> 8) & 0xFF),
                   frame.w0 >> 32, frame.w1 & 0xFFFFFFFF, frame.w1 >> 32)


def cobs_decode(chunk: bytes) -> bytes | None:
    """The bytes COBS-encoded in ``chunk`` (no delimiters); None if it is no COBS encoding."""
    out = bytearray()
    i = 0
    while i < len(chunk):
        code = chunk[i]
        block = chunk[i + 1:i + code]
        if code == 0 or len(block) != code - 1 or 0 in block:
            return None
        out += block
        i += code
        if code != 0xFF and i < len(chunk):
            out.append(0)
    return bytes(out)


def frame_type(chunk: bytes) -> int:
    """The type byte of the frame COBS-encoded in ``chunk`` (0 when it has none)."""
    return chunk[2] if len(chunk) > 2 and chunk[0] >= 3 else 0  # version and type: no 0x00


def read_control(chunk: bytes) -> Control | None:
    """A two-word frame from ``chunk`` (its bytes between two 0x00); None unless intact."""
    raw = cobs_decode(chunk)
    if raw is None or len(raw) != HEADER_BYTES + 16 + CRC_BYTES or raw[0] != VERSION:
        return None
    if raw[8:12] != b"\x02\x00\x00\x00" or zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:],
                                                                                 "little"):
        return None
    w0, w1 = int.from_bytes(raw[12:20], "little"), int.from_bytes(raw[20:28], "little")
    return Control(raw[1], int.from_bytes(raw[2:4], "little"),
                   int.from_bytes(raw[4:8], "little"), w0, w1)


def reply_of(chunk: bytes) -> Reply | None:
    """The REPLY frame in ``chunk``, or None."""
    frame = read_control(chunk)
    return Reply.of(frame) if frame is not None and frame.type == REPLY else None
