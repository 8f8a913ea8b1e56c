"""PETsys TOFPET2 singles files (``sw_daq_tofpet2``, ``--writeBinary``, ``.ldat``).

Each single is 16 bytes, little-endian ``<qfi``: time (int64 ps), energy (float32: ToT in ns or
QDC units) and channelID (int32, ``(portID << 17) | (slaveID << 12) | (chipID << 6) | channel``).
The board is 0 and the channel the whole channelID.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hw.formats.fixed import read_fixed
from hw.formats.records import ReadOptions, Records

SINGLE = np.dtype([("time", "<i8"), ("energy", "<f4"), ("channel_id", "<i4")])


def channel_id(port: int, slave: int, chip: int, channel: int) -> int:
    """PETsys' absolute channel ID."""
    return (port << 17) | (slave << 12) | (chip << 6) | channel


def read(path: Path, chunk_records: int, options: ReadOptions) -> Iterator[Records]:
    """The singles of a PETsys singles file (times are ps already: no ``ns_per_sample``)."""
    for rows in read_fixed(path, SINGLE, chunk_records, "PETsys singles"):
        yield Records.of(0, rows["channel_id"], rows["time"], rows["energy"])
