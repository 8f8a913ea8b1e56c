"""Which of PETsys' layouts a file is: singles, groups or coincidences, normal or compact,
binary or text, told from its first records (each layout's structure and plausible values)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.formats.petsys_hits import (
    COINCIDENCE,
    GROUP,
    SINGLE,
    coincidence_rows,
    compact_positions,
    group_starts,
)
from infra.errors import UserError

#: The layouts, as ``--layout`` names them.
LAYOUTS = ("singles", "groups", "coincidences", "groups-compact", "coincidences-compact")
#: Fields a line of each text layout has (the compact ones: their header lines).
TEXT_FIELDS = {3: "singles", 5: "groups", 10: "coincidences", 1: "groups-compact",
               2: "coincidences-compact"}
#: Bytes looked at to tell the layout: 64 coincidence rows, 144 singles (a fault further on is
#: the reader's to name, with its row).
SAMPLE_BYTES = 64 * 36
#: PETsys channelIDs lie below this (port << 17 with ports up to 63).
MAX_CHANNEL_ID = 1 << 23
#: The longest span of time the first records of a file may cover (ps).
MAX_SAMPLE_SPAN_PS = 10**14
_TEXT_BYTES = frozenset(b"0123456789+-.eE \t\r\n")


@dataclass(frozen=True)
class Layout:
    """A PETsys file's layout."""

    name: str
    """One of :data:`LAYOUTS`."""
    text: bool


def implausible(time: np.ndarray, energy: np.ndarray, channel: np.ndarray) -> str:
    """Why these hits cannot be PETsys hits ("" when they can)."""
    if time.size == 0:
        return "no whole record"
    if channel.min() < 0 or channel.max() >= MAX_CHANNEL_ID:
        bad = int(channel.min() if channel.min() < 0 else channel.max())
        return f"channelID {bad} is no PETsys channel"
    if not np.all(np.isfinite(energy)) or np.abs(energy).max() > 1e6:
        return "energies are not numbers of a QDC or a ToT"
    if int(time.max()) - int(time.min()) > MAX_SAMPLE_SPAN_PS:
        return "times of its first records span more than 100 s"
    return ""


def _binary_why_not(sample: np.ndarray, name: str) -> str:
    """Why ``sample`` (the file's first bytes) is not binary ``name`` ("" when it may be)."""
    if name in ("groups-compact", "coincidences-compact"):
        headers = 1 if name == "groups-compact" else 2
        pos, _, _, zero = compact_positions(sample, headers)
        if zero >= 0:
            return f"a hit count of 0 at byte {zero}"
        rows = sample[pos[:, None] + np.arange(16)].reshape(-1).view(SINGLE) if pos.size else \
            np.zeros(0, SINGLE)
        return implausible(rows["time"], rows["energy"], rows["channel_id"])
    dtype = {"singles": SINGLE, "groups": GROUP, "coincidences": COINCIDENCE}[name]
    rows = sample[: sample.size // dtype.itemsize * dtype.itemsize].view(dtype)
    if name == "singles":
        return implausible(rows["time"], rows["energy"], rows["channel_id"])
    if name == "groups":
        _, bad = group_starts(rows["mh_n"], rows["mh_j"])
        if bad >= 0:
            return f"row {bad}'s mh_n {rows['mh_n'][bad]}, mh_j {rows['mh_j'][bad]} break the groups"
        return implausible(rows["time"], rows["energy"], rows["channel_id"])
    _, _, bad = coincidence_rows(rows["mh_n1"], rows["mh_j1"], rows["mh_n2"], rows["mh_j2"])
    if bad >= 0:
        return f"row {bad}'s mh_j1 {rows['mh_j1'][bad]}, mh_j2 {rows['mh_j2'][bad]} break the pairs"
    return implausible(np.concatenate([rows["time1"], rows["time2"]]),
                       np.concatenate([rows["energy1"], rows["energy2"]]),
                       np.concatenate([rows["channel_id1"], rows["channel_id2"]]))


def _text_layout(path: Path, sample: bytes) -> Layout:
    line = next((x for x in sample.splitlines() if x.strip()), b"")
    fields = len(line.split())
    if fields == 4 and path.suffix == ".lidx":
        raise UserError(f"{path} is the index of a PETsys binary file (step begin, end, step "
                        f"values): import its events, {path.with_suffix('.ldat').name}")
    if fields not in TEXT_FIELDS:
        raise UserError(f"{path} is text but no PETsys layout: its first line has {fields} "
                        f"fields (singles 3, groups 5, coincidences 10, compact headers 1 or 2)")
    return Layout(TEXT_FIELDS[fields], True)


def detect(path: Path, named: str | None = None) -> Layout:
    """The layout of the PETsys file ``path`` (``named``: the one the user gave, checked)."""
    if named is not None and named not in LAYOUTS:
        raise UserError(f"unknown PETsys layout {named!r}: choose one of {', '.join(LAYOUTS)}")
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if not head:
        raise UserError(f"{path} is empty")
    if set(head) <= _TEXT_BYTES:
        found = _text_layout(path, head)
        if named is not None and named != found.name:
            raise UserError(f"{path} is PETsys {found.name} text, not {named}")
        return found
    sample = np.frombuffer(head, np.uint8)
    tried = (named,) if named is not None else LAYOUTS
    reasons = {name: _binary_why_not(sample, name) for name in tried}
    fits = [name for name, why in reasons.items() if not why]
    if len(fits) == 1:
        return Layout(fits[0], False)
    if not fits:
        said = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        raise UserError(f"{path} is no PETsys file ({said})")
    raise UserError(f"{path} reads as PETsys {' or '.join(fits)}: name one with --layout")
