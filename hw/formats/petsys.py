"""PETsys TOFPET2 files (``sw_daq_tofpet2``): singles, groups and coincidences, normal or
compact, binary (``.ldat``) or text, the layout told from the file (:mod:`.petsys_layout`).

Records (``DataFileWriter.hpp``), little-endian and packed: a single ``<qfi`` (time ps, energy,
channelID); a group row adds ``mh_n`` (hits in the group) and ``mh_j`` (this hit's index) before
it; a coincidence row is two group rows, for the pairs (m, n) of its groups' hits with m = 0 or
n = 0. Compact: a group is a uint8 hit count and its 16-byte singles; a coincidence two counts and
their singles. Energies are QDC units or ToT ns; ``channelID = (port << 17) | (slave << 12) |
(chip << 6) | channel``. The board is 0 and the channel the whole channelID.

A group becomes singles by ``options.group_rule`` (:data:`hw.formats.records.GROUP_RULES`); a
coincidence file gives :class:`Pairs` (each side a group so reduced), or with ``options.resort``
its groups as singles, each once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hw.formats.fixed import read_fixed
from hw.formats.petsys_hits import (
    COINCIDENCE,
    GROUP,
    SINGLE,
    Hits,
    coincidence_hits,
    coincidence_rows,
    compact_hits,
    compact_positions,
    group_starts,
)
from hw.formats.petsys_layout import LAYOUTS, Layout, detect
from hw.formats.records import GROUP_RULES, Pairs, ReadOptions, Records
from infra.errors import UserError

__all__ = ["COINCIDENCE", "GROUP", "LAYOUTS", "SINGLE", "channel_id", "read"]

_ROWS = {"singles": SINGLE, "groups": GROUP, "coincidences": COINCIDENCE}


def channel_id(port: int, slave: int, chip: int, channel: int) -> int:
    """PETsys' absolute channel ID."""
    return (port << 17) | (slave << 12) | (chip << 6) | channel


def read(path: Path, chunk_records: int, options: ReadOptions) -> Iterator[Records | Pairs]:
    """The singles (or pairs) of a PETsys file, ``chunk_records`` rows or so at a time; the
    layout is told from the file, or ``options.layout`` when given."""
    if options.group_rule not in GROUP_RULES:
        raise UserError(f"unknown group rule {options.group_rule!r}: choose one of "
                        f"{', '.join(GROUP_RULES)}")
    layout = detect(path, options.layout)
    if layout.name == "singles":
        rows = _text_rows(path, SINGLE) if layout.text else _binary_rows(path, SINGLE,
                                                                         chunk_records)
        return (Records.of(0, r["channel_id"], r["time"], r["energy"]) for r, _ in rows)
    return _from_hits(_hits(path, layout, chunk_records), layout, options)


def _from_hits(chunks: Iterator[Hits], layout: Layout, options: ReadOptions
               ) -> Iterator[Records | Pairs]:
    coincidences = layout.name.startswith("coincidences")
    if coincidences and not options.resort and options.group_rule == "all":
        raise UserError("a PETsys coincidence file gives one single a side of each pair: "
                        "--group sum or first (or --resort to sort every hit again)")
    before: Records | None = None
    for hits in chunks:
        if not coincidences:
            yield by_rule(hits, options.group_rule)
        elif options.resort:
            records = once(by_rule(hits, options.group_rule), before)
            before = _tail(records) if records.size else before
            yield records
        else:
            yield Pairs(by_rule(hits.pick(slice(0, None, 2)), options.group_rule),
                        by_rule(hits.pick(slice(1, None, 2)), options.group_rule))


def by_rule(hits: Hits, rule: str) -> Records:
    """Groups as singles: the first hit's time and channel with the group's summed energy
    (``sum``) or its own (``first``); or every hit (``all``)."""
    if rule == "all":
        return Records.of(0, hits.channel_id, hits.time_ps, hits.energy)
    first = hits.starts[:-1]
    energy = hits.energy.astype(np.float64)
    if rule == "sum":
        energy = np.add.reduceat(energy, first) if first.size else energy[:0]
    else:
        energy = energy[first]
    return Records.of(0, hits.channel_id[first], hits.time_ps[first], energy)


#: Singles of a chunk's end a repeat in the next chunk is looked for among.
ONCE_TAIL = 1024


def once(records: Records, before: Records | None = None) -> Records:
    """``records`` without repeats of the same single (a group PETsys put in two pairs; the
    pairs of one group lie side by side), nor of one of ``before`` (the previous chunk's end)."""
    if records.size == 0:
        return records
    key = np.lexsort((records.energy, records.channel, records.t_ps))
    t, c, e = records.t_ps[key], records.channel[key], records.energy[key]
    new = np.ones(key.size, bool)
    new[1:] = (t[1:] != t[:-1]) | (c[1:] != c[:-1]) | (e[1:] != e[:-1])
    if before is not None and before.size:
        seen = set(zip(before.t_ps.tolist(), before.channel.tolist(), before.energy.tolist(),
                       strict=True))
        for i in np.flatnonzero(new & np.isin(t, before.t_ps)):
            new[i] = (int(t[i]), int(c[i]), float(e[i])) not in seen
    keep = np.sort(key[new])
    return Records(records.board[keep], records.channel[keep], records.t_ps[keep],
                   records.energy[keep])


def _tail(records: Records) -> Records:
    end = slice(max(0, records.size - ONCE_TAIL), None)
    return Records(records.board[end], records.channel[end], records.t_ps[end],
                   records.energy[end])


def _hits(path: Path, layout: Layout, chunk_records: int) -> Iterator[Hits]:
    if layout.name.endswith("-compact"):
        headers = 1 if layout.name == "groups-compact" else 2
        if layout.text:
            return _text_compact(path, headers, chunk_records)
        return _binary_compact(path, headers, chunk_records)
    dtype = _ROWS[layout.name]
    rows = _text_rows(path, dtype) if layout.text else _binary_rows(path, dtype, chunk_records)
    return _row_hits(path, rows, layout.name)


def _binary_rows(path: Path, dtype: np.dtype, chunk_records: int
                 ) -> Iterator[tuple[np.ndarray, bool]]:
    """(rows, last) of a file of fixed-size rows (:func:`hw.formats.fixed.read_fixed`)."""
    name = {SINGLE: "singles", GROUP: "groups", COINCIDENCE: "coincidences"}[dtype]
    total, done = path.stat().st_size // dtype.itemsize, 0
    for rows in read_fixed(path, dtype, chunk_records, f"PETsys {name}"):
        done += rows.size
        yield rows, done >= total


def _text_rows(path: Path, dtype: np.dtype, lines: int = 1 << 18
               ) -> Iterator[tuple[np.ndarray, bool]]:
    """(rows, last) of a text file of one record a line, tab-separated."""
    with path.open() as fh:
        line0 = 1
        batch = list(itertools.islice(fh, lines))
        while batch:
            after = list(itertools.islice(fh, lines))
            try:
                rows = np.loadtxt(batch, dtype=dtype, ndmin=1)
            except ValueError as exc:
                raise UserError(f"{path}: a line from line {line0} on is not "
                                f"{len(dtype.names)} numbers ({exc})") from None
            yield rows, not after
            line0 += len(batch)
            batch = after


def _row_hits(path: Path, chunks: Iterator[tuple[np.ndarray, bool]], layout: str
              ) -> Iterator[Hits]:
    """The hits of whole groups (or events) of each chunk of rows; an event cut by the chunk's
    end waits for the next."""
    carry, row0 = None, 0
    for rows, last in chunks:
        rows = rows if carry is None else np.concatenate([carry, rows])
        if layout == "groups":
            starts, bad = group_starts(rows["mh_n"], rows["mh_j"])
        else:
            starts, second, bad = coincidence_rows(rows["mh_n1"], rows["mh_j1"],
                                                    rows["mh_n2"], rows["mh_j2"])
        if bad >= 0:
            raise UserError(_broken(path, layout, rows[bad], row0 + bad))
        keep = starts.size - 1 if last else starts.size - 2
        if keep <= 0 and not last:
            carry = rows
            continue
        end = int(starts[keep])
        carry, row0 = rows[end:], row0 + end
        if layout == "groups":
            yield Hits(rows["time"][:end], rows["energy"][:end], rows["channel_id"][:end],
                       starts[:keep + 1])
        else:
            yield coincidence_hits(rows[:end], starts[:keep + 1], second[:keep])


def _broken(path: Path, layout: str, row: np.void, index: int) -> str:
    if layout == "groups":
        return (f"{path}: row {index} breaks PETsys' groups (mh_n {row['mh_n']}, mh_j "
                f"{row['mh_j']}: a group's rows count mh_j 0, 1, ... below one mh_n)")
    return (f"{path}: row {index} breaks PETsys' coincidences (mh_j1 {row['mh_j1']}, mh_j2 "
            f"{row['mh_j2']}: an event's rows are (0, 0), (0, 1) ... then (1, 0) ...)")


def _binary_compact(path: Path, headers: int, chunk_records: int) -> Iterator[Hits]:
    """The hits of a compact binary file, whole groups (events) at a time."""
    carry = np.zeros(0, np.uint8)
    offset = 0
    with path.open("rb") as fh:
        while True:
            data = np.fromfile(fh, np.uint8, 16 * chunk_records)
            buf = np.concatenate([carry, data]) if carry.size else data
            if buf.size == 0:
                return
            pos, starts, used, zero = compact_positions(buf, headers)
            if zero >= 0:
                raise UserError(f"{path}: a hit count of 0 at byte {offset + zero} "
                                f"(PETsys compact {'groups' if headers == 1 else 'coincidences'})")
            if data.size == 0 and used < buf.size:
                raise UserError(_truncated(path, buf[used:], headers, offset + used))
            if pos.size:
                yield compact_hits(buf, pos, starts)
            carry, offset = buf[used:], offset + used


def _truncated(path: Path, rest: np.ndarray, headers: int, at: int) -> str:
    counts = [int(c) for c in rest[:headers]]
    what = "group" if headers == 1 else "coincidence"
    return (f"{path} is truncated: its last {what} at byte {at} announces "
            f"{' + '.join(map(str, counts)) or '?'} hits of 16 bytes, {rest.size - headers} "
            f"bytes follow")


def _text_compact(path: Path, headers: int, chunk_records: int) -> Iterator[Hits]:
    """The hits of a compact text file: a line of ``headers`` hit counts, then a line a hit."""
    t: list[int] = []
    e: list[float] = []
    c: list[int] = []
    starts: list[int] = [0]
    with path.open() as fh:
        lines = enumerate(fh, 1)
        for number, line in lines:
            if not line.strip():
                continue
            counts = _ints(path, number, line, headers)
            for count in counts:
                for _ in range(count):
                    number, hit = next(lines, (number, ""))
                    f = hit.split()
                    if len(f) != 3:
                        raise UserError(f"{path} is truncated or broken at line {number}: a hit "
                                        "line has time, energy and channelID")
                    t.append(int(f[0]))
                    e.append(float(f[1]))
                    c.append(int(f[2]))
                starts.append(len(t))
            if len(t) >= chunk_records:
                yield _hits_of(t, e, c, starts)
                t, e, c, starts = [], [], [], [0]
    if len(starts) > 1:
        yield _hits_of(t, e, c, starts)


def _ints(path: Path, number: int, line: str, headers: int) -> list[int]:
    try:
        counts = [int(v) for v in line.split()]
    except ValueError:
        counts = []
    if len(counts) != headers or min(counts) < 1:
        raise UserError(f"{path}: line {number} should be {headers} hit count(s) >= 1, got "
                        f"{line.strip()!r}")
    return counts


def _hits_of(t: list[int], e: list[float], c: list[int], starts: list[int]) -> Hits:
    return Hits(np.asarray(t, np.int64), np.asarray(e, np.float32), np.asarray(c, np.int32),
                np.asarray(starts, np.int64))
