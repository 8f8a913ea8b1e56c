"""CRC-32 (IEEE 802.3, reflected, the one of zlib, Ethernet and PNG) as numba kernels.

Parameters: polynomial 0x04C11DB7 (reflected 0xEDB88320), initial value 0xFFFFFFFF, input and
output reflected, final XOR 0xFFFFFFFF; check value of b"123456789" is 0xCBF43926.
The kernels use slicing-by-8 tables: eight table look-ups per eight bytes. The running
register (``reg``) is the CRC before the final XOR: start from ``CRC_INIT``, end with
``reg ^ 0xFFFFFFFF``.
"""

from __future__ import annotations

import numba
import numpy as np

from hw._cobs import load_u64

POLY_REFLECTED = 0xEDB88320
CRC_INIT = 0xFFFFFFFF


def _tables() -> np.ndarray:
    """(8, 256) slicing-by-8 tables (int64 holding u32); row 0 is the classic byte-wise table."""
    t = np.zeros((8, 256), np.int64)
    c = np.arange(256, dtype=np.int64)
    for _ in range(8):
        c = np.where(c & 1, (c >> 1) ^ POLY_REFLECTED, c >> 1)
    t[0] = c
    for k in range(1, 8):
        t[k] = (t[k - 1] >> 8) ^ t[0][t[k - 1] & 0xFF]
    return t


_T = _tables()


@numba.njit(nogil=True, cache=True, inline="always")
def crc_word(reg: int, v: int) -> int:
    """Register after the 8 bytes of the little-endian int64 ``v``."""
    T = _T
    x = reg ^ (v & 0xFFFFFFFF)
    return (T[7, x & 0xFF] ^ T[6, (x >> 8) & 0xFF] ^ T[5, (x >> 16) & 0xFF]
            ^ T[4, (x >> 24) & 0xFF] ^ T[3, (v >> 32) & 0xFF] ^ T[2, (v >> 40) & 0xFF]
            ^ T[1, (v >> 48) & 0xFF] ^ T[0, (v >> 56) & 0xFF])


@numba.njit(nogil=True, cache=True, inline="always")
def crc_bytes(reg: int, v: int, n_bytes: int) -> int:
    """Register after the low ``n_bytes`` bytes of ``v``, least significant first."""
    T = _T
    for b in range(n_bytes):
        reg = T[0, (reg ^ (v >> (8 * b))) & 0xFF] ^ (reg >> 8)
    return reg


@numba.njit(nogil=True, cache=True)
def crc32_update(crc: int, buf: np.ndarray, start: int, stop: int) -> int:
    """CRC-32 of ``crc`` (a previous result, 0 to start) continued over ``buf[start:stop]``."""
    reg = (np.int64(crc) & 0xFFFFFFFF) ^ 0xFFFFFFFF
    i = start
    while i + 8 <= stop:
        reg = crc_word(reg, load_u64(buf, i))
        i += 8
    while i < stop:
        reg = crc_bytes(reg, np.int64(buf[i]), 1)
        i += 1
    return reg ^ 0xFFFFFFFF


def as_bytes_array(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A 1-D uint8 view of ``data`` without copying where possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, np.uint8)


def crc32(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC-32 of ``data``, continuing from ``value``: equal to ``zlib.crc32(data, value)``."""
    buf = as_bytes_array(data)
    return int(crc32_update(value, buf, 0, buf.size))
