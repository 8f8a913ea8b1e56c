"""ABCD (the ZeroMQ DAQ for CAEN digitizers): its event records, in ``.ade`` files and messages.

An event is 16 bytes, little-endian ``<QHHHBB``: timestamp (uint64, in 1/1024 of the digitizer's
sample period: 2/1024 ns at 500 MS/s), qshort, qlong (the energy), baseline (uint16 each), channel
and pile-up rejection flag (uint8 each). An ``.ade`` file is the records concatenated; a data
message on ABCD's PUB socket is an ASCII topic ``data_abcd_events_v0[_n<id>]_s<bytes>``, a space
and the records. Records are not time-ordered within a message (buffered per channel).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hw.formats.fixed import read_fixed
from hw.formats.records import ReadOptions, Records
from infra.errors import UserError

EVENT = np.dtype([("timestamp", "<u8"), ("qshort", "<u2"), ("qlong", "<u2"),
                  ("baseline", "<u2"), ("channel", "u1"), ("pur", "u1")])
#: Fine time steps of one sample.
FINE_STEPS = 1024
EVENTS_TOPIC = b"data_abcd_events"
WAVEFORMS_TOPIC = b"data_abcd_waveforms"


def ps_per_sample(ns_per_sample: float | None) -> int:
    """The sample period in whole ps (``--ns-per-sample``: 2 at 500 MS/s, 4 at 250 MS/s)."""
    if ns_per_sample is None:
        raise UserError("ABCD timestamps count fractions of a sample: give --ns-per-sample "
                        "(2 for a 500 MS/s digitizer, 4 for 250 MS/s)")
    ps = float(ns_per_sample) * 1000
    if not (ps >= 1 and abs(ps - round(ps)) < 1e-6):
        raise UserError(f"--ns-per-sample must be a sample period of whole ps (e.g. 2 or 4), "
                        f"got {ns_per_sample}")
    return round(ps)


def times_ps(timestamp: np.ndarray, sample_ps: int) -> np.ndarray:
    """ABCD timestamps (1/1024 sample) as int64 ps, exactly: whole samples times the period plus
    the fine part, without overflow for any run length."""
    ts = timestamp.astype(np.uint64)
    whole = (ts >> np.uint64(10)).astype(np.int64) * sample_ps
    fine = ((ts & np.uint64(FINE_STEPS - 1)).astype(np.int64) * sample_ps) >> 10
    return whole + fine


def records(rows: np.ndarray, sample_ps: int, board: int = 0) -> Records:
    """:class:`Records` of ABCD event rows (``EVENT``); the energy is ``qlong``."""
    return Records.of(board, rows["channel"], times_ps(rows["timestamp"], sample_ps),
                      rows["qlong"])


def read(path: Path, chunk_records: int, options: ReadOptions) -> Iterator[Records]:
    """The events of an ABCD ``.ade`` file (needs ``options.ns_per_sample``)."""
    sample_ps = ps_per_sample(options.ns_per_sample)
    for rows in read_fixed(path, EVENT, chunk_records, "ABCD events (.ade)"):
        yield records(rows, sample_ps)


def payload(message: bytes) -> tuple[str, bytes] | None:
    """(kind, records) of one ABCD PUB message: ``events`` with its records, ``waveforms`` (to
    be skipped and counted) or None for any other topic. A size in the topic that the payload
    does not match is a damaged message: UserError."""
    topic, _, data = message.partition(b" ")
    if topic.startswith(WAVEFORMS_TOPIC):
        return "waveforms", b""
    if not topic.startswith(EVENTS_TOPIC):
        return None
    size = topic.rpartition(b"_s")[2]
    if not size.isdigit() or int(size) != len(data) or len(data) % EVENT.itemsize:
        raise UserError(f"ABCD message {topic[:60]!r} has {len(data)} bytes of records")
    return "events", data
