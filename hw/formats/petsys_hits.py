"""PETsys groups and coincidences as hits and groups: the ``mh_n``/``mh_j`` rows and the compact
byte streams parsed and checked by compiled passes.

Every layout comes out the same way: columns of hits (time ps, energy, channelID) and the row of
each group's first hit (``starts``, one more than the groups: the end). A coincidence is two
groups, one after the other. A row that breaks the layout's pattern stops the pass, which says
which row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: PETsys' three record layouts (``DataFileWriter.hpp``), little-endian and packed.
SINGLE = np.dtype([("time", "<i8"), ("energy", "<f4"), ("channel_id", "<i4")])
GROUP = np.dtype([("mh_n", "u1"), ("mh_j", "u1"), ("time", "<i8"), ("energy", "<f4"),
                  ("channel_id", "<i4")])
COINCIDENCE = np.dtype([("mh_n1", "u1"), ("mh_j1", "u1"), ("time1", "<i8"), ("energy1", "<f4"),
                        ("channel_id1", "<i4"), ("mh_n2", "u1"), ("mh_j2", "u1"),
                        ("time2", "<i8"), ("energy2", "<f4"), ("channel_id2", "<i4")])


@dataclass(frozen=True)
class Hits:
    """Hits in groups: ``starts[g]:starts[g + 1]`` are group g's hits, its first hit first."""

    time_ps: np.ndarray
    energy: np.ndarray
    channel_id: np.ndarray
    starts: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.starts.size - 1)

    def pick(self, groups: slice) -> Hits:
        """The groups ``groups`` (a step slice: every other group of a coincidence file)."""
        index = np.arange(self.n_groups)[groups]
        sizes = np.diff(self.starts)[index]
        rows = np.repeat(self.starts[index] - np.concatenate([[0], np.cumsum(sizes)[:-1]]),
                         sizes) + np.arange(int(sizes.sum()))
        return Hits(self.time_ps[rows], self.energy[rows], self.channel_id[rows],
                    np.concatenate([[0], np.cumsum(sizes)]))


@numba.njit(nogil=True, cache=True)
def group_starts(mh_n: np.ndarray, mh_j: np.ndarray) -> tuple[np.ndarray, int]:
    """(the rows that start a group, then the rows' count; the first row breaking the pattern or
    -1): a group is ``mh_j`` = 0, 1, 2, ... with one ``mh_n`` > ``mh_j`` (PETsys writes at most
    its hit limit of the ``mh_n`` hits)."""
    starts = np.empty(mh_n.size + 1, np.int64)
    g, prev, n = 0, -1, 0
    for i in range(mh_n.size):
        j = mh_j[i]
        if j == 0 and mh_n[i] > 0:
            starts[g] = i
            g += 1
            prev, n = 0, mh_n[i]
        elif g == 0 or j != prev + 1 or mh_n[i] != n or j >= n:
            return starts[:g], i
        else:
            prev = j
    starts[g] = mh_n.size
    return starts[:g + 1], -1


@numba.njit(nogil=True, cache=True)
def coincidence_rows(n1, j1, n2, j2) -> tuple[np.ndarray, np.ndarray, int]:
    """(each event's first row, then the rows' count; each event's hits of its second group; the
    first row breaking the pattern or -1). An event's rows are (``mh_j1``, ``mh_j2``) = (0, 0),
    (0, 1) ... (0, l2 - 1), then (1, 0) ... (l1 - 1, 0), each with the event's ``mh_n1`` and
    ``mh_n2``."""
    size = n1.size
    first = np.empty(size + 1, np.int64)
    second = np.empty(size, np.int64)
    e, i = 0, 0
    while i < size:
        if j1[i] != 0 or j2[i] != 0 or n1[i] == 0 or n2[i] == 0:
            return first[:e], second[:e], i
        k = i + 1
        while (k < size and j1[k] == 0 and j2[k] == j2[k - 1] + 1 and j2[k] < n2[i]
               and n1[k] == n1[i] and n2[k] == n2[i]):
            k += 1
        l2 = k - i
        m = 1
        while (k < size and j2[k] == 0 and j1[k] == m and m < n1[i] and n1[k] == n1[i]
               and n2[k] == n2[i]):
            k += 1
            m += 1
        if k < size and (j1[k] != 0 or j2[k] != 0):
            return first[:e], second[:e], k
        first[e] = i
        second[e] = l2
        e += 1
        i = k
    first[e] = size
    return first[:e + 1], second[:e], -1


def coincidence_hits(rows: np.ndarray, first: np.ndarray, second: np.ndarray) -> Hits:
    """The hits of the events of ``rows`` (COINCIDENCE) at ``first`` (:func:`coincidence_rows`):
    for each event its first group (hit 0 from the event's first row, the others from the rows
    after its second group's) and then its second group."""
    starts_row, ends_row = first[:-1], first[1:]
    l1 = ends_row - starts_row - second + 1
    n_events = starts_row.size
    sizes = np.empty(2 * n_events, np.int64)
    sizes[0::2], sizes[1::2] = l1, second
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pick = np.empty(int(starts[-1]), np.int64)
    half = np.empty(int(starts[-1]), np.int8)
    _coincidence_pick(starts_row, second, l1, starts, pick, half)
    one = half == 1
    time = np.where(one, rows["time1"][pick], rows["time2"][pick])
    energy = np.where(one, rows["energy1"][pick], rows["energy2"][pick])
    channel = np.where(one, rows["channel_id1"][pick], rows["channel_id2"][pick])
    return Hits(time, energy, channel, starts)


@numba.njit(nogil=True, cache=True)
def _coincidence_pick(starts_row, l2, l1, starts, pick, half):
    for e in range(starts_row.size):
        row, a, b = starts_row[e], starts[2 * e], starts[2 * e + 1]
        pick[a], half[a] = row, 1
        for m in range(1, l1[e]):
            pick[a + m], half[a + m] = row + l2[e] + m - 1, 1
        for n in range(l2[e]):
            pick[b + n], half[b + n] = row + n, 2


@numba.njit(nogil=True, cache=True)
def compact_positions(buf: np.ndarray, headers: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Walk a compact stream (each group or event: ``headers`` uint8 hit counts, then their
    16-byte singles): (each hit's byte offset; each group's first hit, then the hits' count;
    bytes used by whole groups or events; the offset of a zero hit count or -1)."""
    pos = np.empty(buf.size // 16 + 1, np.int64)
    starts = np.empty(buf.size // 2 + 2, np.int64)
    p, h, g = 0, 0, 0
    while p + headers <= buf.size:
        total = 0
        for k in range(headers):
            if buf[p + k] == 0:
                return pos[:h], np.append(starts[:g], h), p, p
            total += buf[p + k]
        if p + headers + 16 * total > buf.size:
            break
        q = p + headers
        for k in range(headers):
            starts[g] = h
            g += 1
            for _ in range(buf[p + k]):
                pos[h] = q
                h += 1
                q += 16
        p = q
    starts[g] = h
    return pos[:h], starts[:g + 1], p, -1


def compact_hits(buf: np.ndarray, pos: np.ndarray, starts: np.ndarray) -> Hits:
    """The hits at byte offsets ``pos`` of ``buf`` (:func:`compact_positions`)."""
    rows = buf[pos[:, None] + np.arange(16)].reshape(-1).view(SINGLE)
    return Hits(rows["time"].copy(), rows["energy"].copy(), rows["channel_id"].copy(), starts)
