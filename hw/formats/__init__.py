"""Other digitizers' and simulators' event files: ABCD, PETsys TOFPET2, CoMPASS, GATE, as records.

Every reader yields :class:`Records` chunk by chunk (bounded memory for files of any size): a
board, a channel, a time (int64 ps, as the file's clock gives it) and an energy in the file's raw
unit. A channel map (:mod:`hw.channelmap`) turns (board, channel) into the scanner's crystals; the
DAQ's importer time-orders, calibrates and sorts them. A damaged file (a wrong header, a truncated
record) is one :class:`infra.errors.UserError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from hw.formats.records import Pairs, ReadOptions, Records, merge_by_time
from infra.errors import UserError

#: Records a reader yields at most at a time.
CHUNK_RECORDS = 1 << 20


def readers() -> dict[str, Callable[..., Iterator[Records]]]:
    """Format name -> reader ``(path, chunk_records, options) -> Records chunks``."""
    from hw.formats import abcd, compass, gate, petsys

    return {"abcd": abcd.read, "petsys": petsys.read, "compass": compass.read,
            "gate": gate.read}


def read(path: str | Path, fmt: str, options: ReadOptions | None = None,
         chunk_records: int = CHUNK_RECORDS) -> Iterator[Records | Pairs]:
    """The records of the file ``path`` in format ``fmt`` (:func:`readers`), chunk by chunk."""
    known = readers()
    if fmt not in known:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(sorted(known))}")
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p} does not exist")
    return known[fmt](p, chunk_records, options or ReadOptions())


__all__ = ["CHUNK_RECORDS", "Pairs", "ReadOptions", "Records", "merge_by_time", "read",
           "readers"]
