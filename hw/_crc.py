"""CRC-32 (IEEE 802.3, reflected, the one of zlib, Ethernet and PNG) as numba kernels.

Parameters: polynomial 0x04C11DB7 (reflected 0xEDB88320), initial value 0xFFFFFFFF, input and
output reflected, final XOR 0xFFFFFFFF; check value of b"123456789" is 0xCBF43926.

:func:`crc32_update` (a buffer's CRC, what the decoder checks every frame with) calls ISA-L's
``crc32_gzip_refl`` (carry-less multiplication folding, about 13 GB/s against 1.7 for tables;
from the ``isal`` package, linked by name so that the compiled kernels stay cacheable) where it
is installed, else the slicing-by-16 tables: sixteen table look-ups per sixteen bytes, which the
word-by-word kernels (:func:`crc_word`, the encoder's) always use. :data:`BACKEND` says which.
:func:`crc32` is the same for Python callers (the journal). The running register (``reg``) is
the CRC before the final XOR: start from ``CRC_INIT``, end with ``reg ^ 0xFFFFFFFF``.
"""

from __future__ import annotations

import zlib

import numba
import numpy as np

from hw._cobs import load_u64
from infra.accel import isal_zlib

POLY_REFLECTED = 0xEDB88320
CRC_INIT = 0xFFFFFFFF


def _tables() -> np.ndarray:
    """(16, 256) uint32 slicing tables: row 0 is the classic byte-wise table, row k the CRC of
    a byte followed by k zero bytes."""
    t = np.zeros((16, 256), np.uint32)
    c = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        c = np.where(c & 1, (c >> 1) ^ np.uint32(POLY_REFLECTED), c >> 1).astype(np.uint32)
    t[0] = c
    for k in range(1, 16):
        t[k] = (t[k - 1] >> 8) ^ t[0][t[k - 1] & 0xFF]
    return t


_T = _tables()


@numba.njit(nogil=True, cache=True, inline="always")
def _look(row: int, index: int) -> int:
    return np.int64(_T[row, index & 0xFF])


@numba.njit(nogil=True, cache=True, inline="always")
def _slice(v: int, last_row: int) -> int:
    """XOR of the table entries of the 8 bytes of ``v``, byte 0 on row ``last_row``."""
    return (_look(last_row, v) ^ _look(last_row - 1, v >> 8) ^ _look(last_row - 2, v >> 16)
            ^ _look(last_row - 3, v >> 24) ^ _look(last_row - 4, v >> 32)
            ^ _look(last_row - 5, v >> 40) ^ _look(last_row - 6, v >> 48)
            ^ _look(last_row - 7, v >> 56))


@numba.njit(nogil=True, cache=True, inline="always")
def crc_word(reg: int, v: int) -> int:
    """Register after the 8 bytes of the little-endian int64 ``v``."""
    return _slice(v ^ reg, 7)


@numba.njit(nogil=True, cache=True, inline="always")
def crc_words(reg: int, v: int, u: int) -> int:
    """Register after the 16 bytes of the little-endian int64s ``v`` then ``u``."""
    return _slice(v ^ reg, 15) ^ _slice(u, 7)


@numba.njit(nogil=True, cache=True, inline="always")
def crc_bytes(reg: int, v: int, n_bytes: int) -> int:
    """Register after the low ``n_bytes`` bytes of ``v``, least significant first."""
    for b in range(n_bytes):
        reg = _look(0, reg ^ (v >> (8 * b))) ^ (reg >> 8)
    return reg


@numba.njit(nogil=True, cache=True)
def crc32_tables(crc: int, buf: np.ndarray, start: int, stop: int) -> int:
    """CRC-32 of ``crc`` (a previous result, 0 to start) continued over ``buf[start:stop]``,
    by the slicing-by-16 tables."""
    reg = (np.int64(crc) & 0xFFFFFFFF) ^ 0xFFFFFFFF
    i = start
    while i + 16 <= stop:
        reg = crc_words(reg, load_u64(buf, i), load_u64(buf, i + 8))
        i += 16
    if i + 8 <= stop:
        reg = crc_word(reg, load_u64(buf, i))
        i += 8
    while i < stop:
        reg = crc_bytes(reg, np.int64(buf[i]), 1)
        i += 1
    return reg ^ 0xFFFFFFFF


if isal_zlib is not None:
    _isal_crc = numba.types.ExternalFunction(
        "crc32_gzip_refl", numba.types.uint32(numba.types.uint32, numba.types.intp,
                                              numba.types.uint64))

    @numba.njit(nogil=True, cache=True)
    def crc32_update(crc: int, buf: np.ndarray, start: int, stop: int) -> int:
        """CRC-32 of ``crc`` (a previous result, 0 to start) continued over
        ``buf[start:stop]`` (ISA-L)."""
        return np.int64(_isal_crc(np.uint32(crc & 0xFFFFFFFF), buf.ctypes.data + start,
                                  np.uint64(stop - start)))

    _crc32_bytes = isal_zlib.crc32
    BACKEND = "isa-l"
else:
    crc32_update = crc32_tables
    _crc32_bytes = zlib.crc32
    BACKEND = "tables"


def crc32(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC-32 of ``data``, continuing from ``value``: equal to ``zlib.crc32(data, value)``."""
    return _crc32_bytes(as_bytes_array(data), value)


def as_bytes_array(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only 1-D uint8 view of ``data`` (copied only if not contiguous). Always read-only,
    so that the kernels are compiled once for every kind of input."""
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(data, np.uint8)
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


