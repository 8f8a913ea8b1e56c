"""GATE's ROOT output: singles (GATE 9's ``Singles``, GATE 10's digitizer trees) or, in a file
without singles, coincidences (GATE 9's ``Coincidences`` and ``delay``, its ``tree`` output,
GATE 10's coincidence trees) as pairs.

GATE 9: ``time`` (double, s), ``energy`` (MeV), ``globalPosX/Y/Z`` (mm), with ``eventID``,
``sourceID`` and the system's ID branches. GATE 10: a tree named after its actor, with
``GlobalTime`` (ns), ``TotalEnergyDeposit`` (MeV) and ``PostPosition_X/_Y/_Z`` (mm). Branches may
be missing (output masks): what the reader needs and does not find is named. Each single is
placed on the scanner model's crystal nearest to its position (within ``MAX_MM``), channel =
that crystal on board 0; a single farther from every crystal is on no channel (``bad_channel``).
With the system's repeater counts (GATE 9 cylindricalPET), the channel is instead the single's
volume IDs in one number (:func:`linear_id`), which :func:`hw.channelmap.gate_ids` or a map
takes to a crystal. A coincidence's two sides carry the same branches with suffixes 1 and 2, each
placed by its position; :func:`coincidence_trees` says which trees are delayed.
Read with ``uproot`` (``pip install 'bedside-pet[gate]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hw.formats.nearest import CrystalGrid
from hw.formats.records import Pairs, ReadOptions, Records, merge_by_time
from infra.errors import UserError

#: The farthest a single may lie from its crystal's centre (mm).
MAX_MM = 15.0
#: name -> (time branch, ps per unit, energy branch, position branches)
LAYOUTS = {
    "GATE 9": ("time", 1e12, "energy", ("globalPosX", "globalPosY", "globalPosZ")),
    "GATE 10": ("GlobalTime", 1e3, "TotalEnergyDeposit",
                ("PostPosition_X", "PostPosition_Y", "PostPosition_Z")),
}


def _uproot() -> Any:
    try:
        import uproot
    except ImportError:
        raise UserError("GATE files need uproot: pip install 'bedside-pet[gate]'") from None
    return uproot


def _open_trees(path: Path) -> dict[str, Any]:
    """The TTrees of a ROOT file by name; a file that is no ROOT file is one error."""
    uproot = _uproot()
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many kinds for a file that is no ROOT file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a ROOT file ({first})") from None
    keys = f.keys()
    return {k.split(";")[0]: f[k] for k in keys if f[k].classname.startswith("TTree")}


def _singles_of(trees: dict[str, Any]) -> tuple[Any, str] | None:
    """(tree, layout) of the singles: GATE 9's ``Singles``, else the first tree with GATE 10's
    ``GlobalTime``; None without."""
    if "Singles" in trees and "time" in set(trees["Singles"].keys()):
        return trees["Singles"], "GATE 9"
    for tree in trees.values():
        if "GlobalTime" in set(tree.keys()):
            return tree, "GATE 10"
    return None


def read(path: Path, chunk_records: int, options: ReadOptions) -> Iterator[Records | Pairs]:
    """A GATE ROOT file's singles (:func:`read_singles`), or, in a file without singles or with
    ``options.gate_pairs``, its coincidences and delayed coincidences (:func:`coincidence_trees`)
    as pairs."""
    if options.crystal_centres_mm is None and options.gate_repeaters is None:
        raise UserError("GATE singles are placed on the scanner's crystals: give --scanner")
    trees = _open_trees(path)
    singles = _singles_of(trees)
    if singles is not None and not options.gate_pairs:
        return read_singles(path, *singles, chunk_records, options)
    pairs = coincidence_trees(path, trees)
    if options.gate_pairs and not pairs:
        raise UserError(f"{path} has no GATE coincidences (Coincidences, delay, or a tree with "
                        f"time1/time2 or GlobalTime1/2); its trees: {', '.join(trees) or 'none'}")
    if not trees:
        raise UserError(f"{path} is an empty ROOT file: it holds no tree")
    if not pairs:
        raise UserError(f"{path} has neither GATE singles nor coincidences (GATE 9 Singles, "
                        f"Coincidences, delay or a tree with time1/time2; GATE 10 GlobalTime or "
                        f"GlobalTime1/GlobalTime2); its trees: {', '.join(trees)}")
    if options.gate_repeaters is not None:
        raise UserError(f"{path}: GATE coincidences are placed by their positions: leave out "
                        "--gate-repeaters")
    grid = CrystalGrid.of(options.crystal_centres_mm)
    return merge_by_time([_pairs(path, tree, layout, delayed, grid, chunk_records)
                          for tree, layout, delayed in pairs])


def read_singles(path: Path, tree: Any, layout: str, chunk_records: int, options: ReadOptions
                 ) -> Iterator[Records]:
    """The singles of a GATE tree: on the crystals of ``options.crystal_centres_mm``, or, with
    ``options.gate_repeaters``, on the channels their volume IDs name."""
    repeaters = options.gate_repeaters
    time, ps_per_unit, energy, position = LAYOUTS[layout]
    if repeaters is not None and layout != "GATE 9":
        raise UserError(f"{path}: volume IDs are read from GATE 9's cylindricalPET branches; "
                        f"this is a {layout} tree: leave out --gate-repeaters")
    where = ID_BRANCHES if repeaters is not None else position
    _require(path, tree, layout, (time, energy, *where))
    grid = CrystalGrid.of(options.crystal_centres_mm) if repeaters is None else None
    return _singles_chunks(tree, time, ps_per_unit, energy, position, where, grid, repeaters,
                           chunk_records)


def _singles_chunks(tree, time, ps_per_unit, energy, position, where, grid, repeaters,
                    chunk_records) -> Iterator[Records]:
    for arrays in tree.iterate([time, energy, *where], step_size=chunk_records, library="np"):
        t_ps = np.rint(np.asarray(arrays[time], np.float64) * ps_per_unit).astype(np.int64)
        if grid is None:
            channel = linear_id([arrays[b] for b in ID_BRANCHES], repeaters)
        else:
            channel = _placed(grid, np.stack([arrays[b] for b in position], axis=1))
        yield Records.of(0, channel, t_ps, np.asarray(arrays[energy], np.float64) * 1000.0)


def _require(path: Path, tree: Any, layout: str, branches: tuple[str, ...]) -> None:
    missing = [b for b in branches if b not in set(tree.keys())]
    if missing:
        raise UserError(f"{path}: its {layout} tree {tree.name!r} lacks {', '.join(missing)} "
                        f"(an output mask?)")


def _placed(grid: CrystalGrid, xyz: np.ndarray) -> np.ndarray:
    crystal = grid.nearest(xyz, MAX_MM)
    return np.where(crystal >= 0, crystal, NO_CHANNEL)


#: name -> (time branches, ps per unit, energy branches, each side's position branches)
PAIR_LAYOUTS = {
    "GATE 9": (("time1", "time2"), 1e12, ("energy1", "energy2"),
               tuple(tuple(f"globalPos{x}{k}" for x in "XYZ") for k in (1, 2))),
    "GATE 10": (("GlobalTime1", "GlobalTime2"), 1e3,
                ("TotalEnergyDeposit1", "TotalEnergyDeposit2"),
                tuple(tuple(f"PostPosition_{x}{k}" for x in "XYZ") for k in (1, 2))),
}


def coincidence_trees(path: Path, trees: dict[str, Any]) -> list[tuple[Any, str, bool]]:
    """(tree, layout, delayed) of each coincidence tree: GATE 9's ``Coincidences`` and ``delay``,
    its ``tree`` output (one file per collection: delayed when the file's name says ``delay``),
    GATE 10's trees of ``GlobalTime1``/``GlobalTime2`` (delayed when the tree's or the file's
    name says ``delay``)."""
    found = []
    for name, tree in trees.items():
        branches = set(tree.keys())
        for layout, (times, *_rest) in PAIR_LAYOUTS.items():
            if set(times) <= branches:
                delayed = ("delay" in name.lower() or
                           (name != "Coincidences" and "delay" in path.name.lower()))
                found.append((tree, layout, delayed))
                break
    return found


def _pairs(path: Path, tree: Any, layout: str, delayed: bool, grid: CrystalGrid,
           chunk_records: int) -> Iterator[Pairs]:
    times, ps_per_unit, energies, positions = PAIR_LAYOUTS[layout]
    wanted = (*times, *energies, *positions[0], *positions[1])
    _require(path, tree, layout, wanted)
    for arrays in tree.iterate(list(wanted), step_size=chunk_records, library="np"):
        sides = []
        for k in range(2):
            t_ps = np.rint(np.asarray(arrays[times[k]], np.float64) * ps_per_unit)
            xyz = np.stack([arrays[b] for b in positions[k]], axis=1)
            sides.append(Records.of(0, _placed(grid, xyz), t_ps.astype(np.int64),
                                    np.asarray(arrays[energies[k]], np.float64) * 1000.0))
        yield Pairs(*sides, np.full(sides[0].size, int(delayed), np.uint8))


#: GATE 9's cylindricalPET volume IDs, outermost first.
ID_BRANCHES = ("rsectorID", "moduleID", "submoduleID", "crystalID", "layerID")
#: The channel of a single that is on no crystal.
NO_CHANNEL = np.iinfo(np.int32).max


def linear_id(ids: list[np.ndarray], repeaters: tuple[int, ...]) -> np.ndarray:
    """The volume IDs (rsector, module, submodule, crystal, layer) in one number,
    ``(((rsector * M + module) * S + submodule) * C + crystal) * L + layer`` for the repeater
    counts (R, M, S, C, L); ``NO_CHANNEL`` where an ID is outside its count."""
    out = np.zeros(ids[0].size, np.int64)
    ok = np.ones(ids[0].size, bool)
    for values, count in zip(ids, repeaters, strict=True):
        v = np.asarray(values, np.int64)
        ok &= (v >= 0) & (v < count)
        out = out * count + v
    return np.where(ok, out, NO_CHANNEL).astype(np.int32)


def parse_repeaters(text: str) -> tuple[int, ...]:
    """``R,M,S,C[,L]`` (the copies of rsector, module, submodule, crystal, layer) checked."""
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) == 4:
        counts += (1,)
    if len(counts) != 5 or min(counts) < 1 or np.prod(counts, dtype=np.int64) >= NO_CHANNEL:
        raise UserError(f"--gate-repeaters takes the copies of rsector,module,submodule,crystal"
                        f"[,layer] as positive integers (e.g. 16,4,1,400), got {text!r}")
    return counts


#: GATE 9's coincidence branches: the two singles' time (s) and global position (mm).
COINCIDENCE_BRANCHES = ("time1", "time2", "globalPosX1", "globalPosY1", "globalPosZ1",
                        "globalPosX2", "globalPosY2", "globalPosZ2")
PAIR_DTYPE = np.dtype([("t", np.int64), ("crystal_a", np.int32), ("crystal_b", np.int32)])


def coincidences(path: Path, crystal_centres_mm: np.ndarray) -> np.ndarray | None:
    """GATE 9's own ``Coincidences`` (PAIR_DTYPE: the earlier single's time in ps and crystal,
    then the later one's), on the crystals nearest their positions; None when the file has none."""
    uproot = _uproot()
    with uproot.open(path) as f:
        keys = list(f.keys())
        names = {k.split(";")[0] for k in keys}
        if "Coincidences" not in names:
            return None
        tree = f["Coincidences"]
        if not set(COINCIDENCE_BRANCHES) <= set(tree.keys()):
            return None
        a = tree.arrays(list(COINCIDENCE_BRANCHES), library="np")
    grid = CrystalGrid.of(crystal_centres_mm)
    t1, t2 = (np.rint(a[k].astype(np.float64) * 1e12).astype(np.int64) for k in ("time1", "time2"))
    c1 = grid.nearest(np.stack([a[f"globalPos{x}1"] for x in "XYZ"], axis=1), MAX_MM)
    c2 = grid.nearest(np.stack([a[f"globalPos{x}2"] for x in "XYZ"], axis=1), MAX_MM)
    first = (t1 < t2) | ((t1 == t2) & (c1 <= c2))
    out = np.empty(t1.size, PAIR_DTYPE)
    out["t"] = np.where(first, t1, t2)
    out["crystal_a"] = np.where(first, c1, c2)
    out["crystal_b"] = np.where(first, c2, c1)
    return out


def compare(ours: np.ndarray, gate: np.ndarray) -> dict[str, int]:
    """Our prompts (COINC_DTYPE) against GATE's coincidences (PAIR_DTYPE): the counts and the
    pairs found by both (same earlier single's time and crystal, same later crystal)."""
    prompts = ours[ours["delayed"] == 0]
    mine = np.empty(prompts.size, PAIR_DTYPE)
    for k in PAIR_DTYPE.names:
        mine[k] = prompts[k]
    both = np.intersect1d(mine, gate)
    return {"ours": int(mine.size), "gate": int(gate.size), "matched": int(both.size)}
