"""Which crystal each digitizer channel reads: a ``board,channel,crystal`` map, or the scanner's
own wiring.

A lab's readout (CAEN boards, PETsys ASICs) reaches the scanner model's crystals through a map,
a CSV with the header ``board,channel,crystal`` (crystal: the index in the model's crystal
list, ``petdaq scanners show NAME --crystals``). Without one, the scanner's own wiring (its
boards' channels, ``Scanner.channel_map``) is the map. A channel the map does not name is no
crystal: its events are counted (``bad_channel``), never guessed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError

HEADER = ["board", "channel", "crystal"]
#: The most entries of a map's dense table (:meth:`ChannelMap.dense`): 64 MiB of int32.
DENSE_MAX_ENTRIES = 1 << 24


@dataclass(frozen=True)
class ChannelMap:
    """(board, channel) -> crystal, as sorted keys for a vectorised look-up."""

    keys: np.ndarray
    """int64, sorted: ``board << 32 | channel``."""
    crystals: np.ndarray
    """int32: the crystal of each key."""
    source: str
    """The map's file, or ``wiring of <scanner>``."""

    def dense(self) -> np.ndarray | None:
        """The map as a table ``[board, channel] -> crystal`` (-1: none), for a look-up by index;
        None when it would hold more than :data:`DENSE_MAX_ENTRIES` entries (or a key is
        negative)."""
        if self.keys.size == 0 or self.keys[0] < 0:
            return None
        board, channel = self.keys >> 32, self.keys & 0xFFFFFFFF
        shape = (int(board.max()) + 1, int(channel.max()) + 1)
        if shape[0] * shape[1] > DENSE_MAX_ENTRIES:
            return None
        table = np.full(shape, -1, np.int32)
        table[board, channel] = self.crystals
        return table

    def crystals_of(self, board: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """The crystal of every (board, channel); -1 where the map names none."""
        keys = (board.astype(np.int64) << 32) | channel.astype(np.int64)
        at = np.searchsorted(self.keys, keys)
        found = at < self.keys.size
        found[found] = self.keys[at[found]] == keys[found]
        out = np.full(keys.size, -1, np.int32)
        out[found] = self.crystals[at[found]]
        return out


def _of(board: np.ndarray, channel: np.ndarray, crystal: np.ndarray, source: str) -> ChannelMap:
    keys = (board.astype(np.int64) << 32) | channel.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, crystal = keys[order], crystal[order]
    if np.any(keys[1:] == keys[:-1]):
        k = int(keys[1:][keys[1:] == keys[:-1]][0])
        raise UserError(f"{source}: board {k >> 32} channel {k & 0xFFFFFFFF} is mapped twice")
    return ChannelMap(keys, crystal.astype(np.int32), source)


def wiring(scanner: Scanner) -> ChannelMap:
    """The scanner's own boards: (crystal_board, crystal_channel) of every crystal."""
    n = scanner.n_crystals
    return _of(scanner.crystal_board, scanner.crystal_channel, np.arange(n, dtype=np.int32),
               f"wiring of {scanner.name}")


def identity(scanner: Scanner) -> ChannelMap:
    """Board 0's channel n is crystal n (a simulation's singles, placed on crystals already)."""
    n = np.arange(scanner.n_crystals, dtype=np.int32)
    return _of(np.zeros(n.size, np.int32), n, n, f"crystals of {scanner.name}")


def gate_ids(scanner: Scanner, repeaters: tuple[int, ...]) -> ChannelMap:
    """GATE 9 cylindricalPET's volume IDs (:func:`hw.formats.gate.linear_id`) on a ring
    scanner's crystals, the system built as the model is: rsector = the module around the ring
    (copy 0 on +x, counter-clockwise about +z), module x submodule = the module ring (along +z),
    crystal = the crystal in the module as GATE's cubic array counts it (tangential fastest,
    then axial; copy 0 at -y, -z), one layer. Other systems name their IDs in a map."""
    r, m, s, c, layers = repeaters
    if scanner.kind != "pet":
        raise UserError(f"GATE volume IDs are for ring scanners; {scanner.name} is "
                        f"{scanner.kind.upper()}: give --map")
    ct = scanner.crystals_per_ring // scanner.n_modules
    ca = scanner.n_rings // scanner.n_module_rings
    if (r, m * s, c, layers) != (scanner.n_modules, scanner.n_module_rings, ct * ca, 1):
        raise UserError(
            f"--gate-repeaters {r},{m},{s},{c},{layers} are not {scanner.name}'s "
            f"{scanner.n_modules},{scanner.n_module_rings},1,{ct * ca},1 (rsectors = modules "
            f"per ring, modules x submodules = module rings, crystals = {ct} x {ca} a module): "
            "give --map with channel = the GATE IDs in one number")
    n = np.arange(scanner.n_crystals)
    tang, ring = n % scanner.crystals_per_ring, n // scanner.crystals_per_ring
    axial = ring // ca  # the module ring: module * S + submodule
    crystal = (ring % ca) * ct + tang % ct
    ids = ((tang // ct * m + axial // s) * s + axial % s) * c + crystal
    return _of(np.zeros(n.size, np.int32), ids, n.astype(np.int32),
               f"GATE volume IDs of {scanner.name}")


def load(path: str | Path, scanner: Scanner) -> ChannelMap:
    """A ``board,channel,crystal`` CSV checked against ``scanner``: one clear error for a missing
    file, a wrong header, a value that is no integer, or a crystal the scanner lacks."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"channel map {p} does not exist")
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [h.strip() for h in rows[0]] != HEADER:
        raise UserError(f"channel map {p}: the first line must be {','.join(HEADER)}")
    try:
        table = np.array([[int(v) for v in row] for row in rows[1:] if row], np.int64)
    except ValueError as exc:
        raise UserError(f"channel map {p}: {exc}") from None
    table = table.reshape(-1, 3)
    bad = (table[:, 2] < 0) | (table[:, 2] >= scanner.n_crystals)
    if bad.any():
        raise UserError(f"channel map {p}: crystal {int(table[bad][0, 2])} is not one of "
                        f"{scanner.name}'s {scanner.n_crystals} crystals")
    if (table[:, :2] < 0).any():
        raise UserError(f"channel map {p}: boards and channels are >= 0")
    return _of(table[:, 0], table[:, 1], table[:, 2], str(p))
