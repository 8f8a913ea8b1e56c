"""CAEN CoMPASS 2.x binary files (``.BIN``): a 2-byte header, then events.

The header is ``0xCAEx`` (little-endian uint16); its low bits say which fields every event has:
bit 0 the energy in ADC channels (uint16), bit 1 the calibrated energy (float64), bit 2 the short
gate's energy (uint16), bit 3 a waveform. An event is board (uint16), channel (uint16),
timestamp (uint64, ps), then the fields the header names in that order, flags (uint32), and with
bit 3 a waveform code (uint8), a sample count (uint32) and the samples (uint16 each). The energy
taken is the ADC channels' (else the calibrated one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np

from hw.formats.fixed import read_fixed
from hw.formats.records import ReadOptions, Records
from infra.errors import UserError

HEADER_MAGIC = 0xCAE0
ENERGY, CALIBRATED, SHORT, WAVEFORM = 1, 2, 4, 8


def event_dtype(header: int) -> np.dtype:
    """The fixed part of an event (everything before a waveform's samples) for ``header``."""
    fields = [("board", "<u2"), ("channel", "<u2"), ("timestamp", "<u8")]
    fields += [("energy", "<u2")] if header & ENERGY else []
    fields += [("calibrated", "<f8")] if header & CALIBRATED else []
    fields += [("short", "<u2")] if header & SHORT else []
    fields += [("flags", "<u4")]
    fields += [("wave_code", "u1"), ("samples", "<u4")] if header & WAVEFORM else []
    return np.dtype(fields)


def read_header(path: Path) -> int:
    with path.open("rb") as fh:
        head = fh.read(2)
    header = int.from_bytes(head, "little") if len(head) == 2 else -1
    if header & 0xFFF0 != HEADER_MAGIC:
        raise UserError(f"{path} is not a CoMPASS file: its header is "
                        f"{'missing' if header < 0 else hex(header)}, not 0xCAEx")
    if not header & (ENERGY | CALIBRATED):
        raise UserError(f"{path}: its events carry no energy (header {hex(header)})")
    return header


def _records(rows: np.ndarray, header: int) -> Records:
    energy = rows["energy"] if header & ENERGY else rows["calibrated"]
    return Records.of(rows["board"], rows["channel"], rows["timestamp"], energy)


def read(path: Path, chunk_records: int, options: ReadOptions) -> Iterator[Records]:
    """The events of a CoMPASS file (times are ps already: no ``ns_per_sample``)."""
    header = read_header(path)
    dtype = event_dtype(header)
    if not header & WAVEFORM:
        for rows in read_fixed(path, dtype, chunk_records, "CoMPASS", offset=2):
            yield _records(rows, header)
        return
    data = np.fromfile(path, np.uint8, offset=2)
    starts = _event_starts(data, dtype.itemsize, dtype.fields["samples"][1])
    if starts.size and starts[-1] < 0:
        raise UserError(f"{path} ends inside an event (truncated?)")
    for k in range(0, starts.size, chunk_records):
        at = starts[k:k + chunk_records]
        rows = np.empty(at.size, dtype)
        raw = rows.view(np.uint8).reshape(at.size, dtype.itemsize)
        raw[:] = data[at[:, None] + np.arange(dtype.itemsize)]
        yield _records(rows, header)


@numba.njit(cache=True, nogil=True)
def _event_starts(data, fixed, samples_at):
    """Offsets of the events of a waveform file (each ``fixed`` bytes and its samples); a
    last entry -1 when the data end inside an event."""
    out = np.empty(data.size // fixed + 1, np.int64)
    n, i = 0, 0
    while i < data.size:
        if i + fixed > data.size:
            out[n] = -1
            return out[:n + 1]
        k = i + samples_at
        count = (np.int64(data[k]) | (np.int64(data[k + 1]) << 8) | (np.int64(data[k + 2]) << 16)
                 | (np.int64(data[k + 3]) << 24))
        end = i + fixed + 2 * count
        if end > data.size:
            out[n] = -1
            return out[:n + 1]
        out[n] = i
        n += 1
        i = end
    return out[:n]
