"""Byte-level kernels: unaligned little-endian words, and COBS (Cheshire & Baker 1999).

COBS: the encoder appends a phantom 0x00 to the data and cuts it into blocks, each a code byte
``c`` followed by ``c - 1`` non-zero data bytes: ``c < 0xFF`` means "then a 0x00", ``c == 0xFF``
means "254 data bytes, no 0x00"; the phantom 0x00 is dropped after decoding. Encoded data holds
no 0x00 and is at most ``len + 1 + len // 254`` bytes long.
"""

from __future__ import annotations

import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

if sys.byteorder != "little":  # the word kernels read and write little-endian words natively
    raise ImportError("hw.wire needs a little-endian machine")

ONES = 0x0101010101010101
HIGHS = -0x7F7F7F7F7F7F7F80  # 0x8080808080808080 as int64
LOWS = 0x7F7F7F7F7F7F7F7F


def max_encoded_len(n: int) -> int:
    """Largest COBS encoding of ``n`` bytes (without the 0x00 delimiter)."""
    return n + 1 + n // 254


def _byte_pointer(context, builder, arr_type, arr, index, index_type):
    data = context.make_array(arr_type)(context, builder, arr).data
    i = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(data, [i]), ir.IntType(64).as_pointer())


@intrinsic
def load_u64(typingctx, buf, index):
    """The 8 bytes ``buf[index:index + 8]`` (uint8 array) as a little-endian int64, unaligned."""

    def codegen(context, builder, sig, args):
        ptr = _byte_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(ptr, align=1)

    return types.int64(buf, index), codegen


@intrinsic
def store_u64(typingctx, buf, index, value):
    """Write ``value`` (int64) little-endian to ``buf[index:index + 8]`` (uint8), unaligned."""

    def codegen(context, builder, sig, args):
        ptr = _byte_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store(v, ptr, align=1)
        return context.get_dummy_value()

    return types.none(buf, index, value), codegen


@numba.njit(nogil=True, cache=True, inline="always")
def has_zero_byte(v: int) -> bool:
    """Whether the int64 ``v`` has a 0x00 among its 8 bytes."""
    return ((v - ONES) & ~v & HIGHS) != 0


@numba.njit(nogil=True, cache=True, inline="always")
def zero_bytes(v: int) -> int:
    """Bit 7 of each byte of the result is set exactly where ``v`` has a 0x00 byte."""
    return ~(((v & LOWS) + LOWS) | v | LOWS)


@numba.njit(nogil=True, cache=True)
def find_zero(buf: np.ndarray, start: int) -> int:
    """Index of the first 0x00 in ``buf[start:]``, or ``buf.size`` when there is none."""
    n = buf.size
    i = start
    while i + 8 <= n and not has_zero_byte(load_u64(buf, i)):
        i += 8
    while i < n and buf[i] != 0:
        i += 1
    return i


@numba.njit(nogil=True, cache=True, inline="always")
def cobs_put(out: np.ndarray, pos: int, code_pos: int, code: int, v: int, n_bytes: int
             ) -> tuple[int, int, int]:
    """Stream the low ``n_bytes`` bytes of ``v`` (little-endian) into a COBS encoding.

    State: ``pos`` next free byte of ``out``, ``code_pos`` where the open block's code byte goes,
    ``code`` 1 + the data bytes of the open block. Returns the new state.
    """
    if n_bytes == 8 and code <= 0xF6:
        # The open block cannot fill up within these 8 bytes: write them as they are; each
        # 0x00 among them closes a block and its place becomes the next block's code byte.
        store_u64(out, pos, v)
        start = 0
        zeros = zero_bytes(v)
        while zeros:
            z = trailing_zeros(zeros) >> 3
            out[code_pos] = code + z - start
            code_pos = pos + z
            code = 1
            start = z + 1
            zeros &= zeros - 1
        return pos + 8, code_pos, code + 8 - start
    for b in range(n_bytes):
        byte = (v >> (8 * b)) & 0xFF
        if byte == 0:
            out[code_pos] = code
            code_pos = pos
            pos += 1
            code = 1
        else:
            out[pos] = byte
            pos += 1
            code += 1
            if code == 0xFF:
                out[code_pos] = 0xFF
                code_pos = pos
                pos += 1
                code = 1
    return pos, code_pos, code


@numba.njit(nogil=True, cache=True)
def cobs_encode(src: np.ndarray, start: int, stop: int, dst: np.ndarray, pos: int) -> int:
    """Encode ``src[start:stop]`` into ``dst`` from ``pos``; return the position after it.

    ``dst`` needs ``max_encoded_len(stop - start)`` bytes from ``pos``.
    """
    code_pos, pos, code = pos, pos + 1, 1
    i = start
    while i + 8 <= stop:
        pos, code_pos, code = cobs_put(dst, pos, code_pos, code, load_u64(src, i), 8)
        i += 8
    while i < stop:
        pos, code_pos, code = cobs_put(dst, pos, code_pos, code, np.int64(src[i]), 1)
        i += 1
    dst[code_pos] = code
    return pos


@numba.njit(nogil=True, cache=True)
def cobs_decode(src: np.ndarray, start: int, stop: int, dst: np.ndarray) -> int:
    """Decode the block chain ``src[start:stop]`` (no 0x00 in it) into ``dst[0:]``.

    Returns the decoded length, or -1 when a code byte is 0x00 or points past ``stop``.
    ``dst`` needs ``stop - start + 8`` bytes (the last 8 as slack for word copies).
    """
    i = start
    n = 0
    n_src = src.size
    while i < stop:
        code = np.int64(src[i])
        i += 1
        end = i + code - 1
        if code == 0 or end > stop:
            return -1
        if end + 8 <= n_src:
            j = 0
            while j < code - 1:
                store_u64(dst, n + j, load_u64(src, i + j))
                j += 8
            n += code - 1
            i = end
        else:
            while i < end:
                dst[n] = src[i]
                n += 1
                i += 1
        if code != 0xFF and i < stop:
            dst[n] = 0
            n += 1
    return n


def encode(data: bytes) -> bytes:
    """COBS encoding of ``data`` (no delimiter)."""
    src = np.frombuffer(data, np.uint8)
    dst = np.empty(max_encoded_len(src.size), np.uint8)
    return dst[: cobs_encode(src, 0, src.size, dst, 0)].tobytes()


def decode(data: bytes) -> bytes | None:
    """The data ``data`` (COBS, no delimiter) encodes, or ``None`` if it is not valid COBS."""
    src = np.frombuffer(data, np.uint8)
    dst = np.empty(src.size + 8, np.uint8)
    n = cobs_decode(src, 0, src.size, dst)
    return None if n < 0 else dst[:n].tobytes()
