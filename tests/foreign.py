"""Other digitizers' data for tests: ABCD records of emulated singles, and channel-map files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hw.formats import abcd

#: ABCD's channels in the tests: one digitizer of 256, spread over the scanner's crystals.
CHANNELS = 256


def write_map(path: Path, rows) -> Path:
    """A ``board,channel,crystal`` CSV of ``rows``."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["board", "channel", "crystal"])
        w.writerows(rows)
    return path


def abcd_rows(singles: np.ndarray, n_crystals: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(ABCD records of ``singles``, the crystal of each of the 256 channels): timestamps in
    1/1024 of a 2 ns sample, qlong in 0.5 keV, each single on channel crystal % 256, records
    shuffled within each buffer of 500 as the digitizer's per-channel buffers send them."""
    rows = np.zeros(singles.size, abcd.EVENT)
    rows["timestamp"] = singles["t"] * 1024 // 2000
    rows["qlong"] = np.round(singles["energy"] / 0.5)
    rows["channel"] = singles["crystal"] % CHANNELS
    rng = np.random.default_rng(seed)
    for a in range(0, rows.size, 500):
        rng.shuffle(rows[a:a + 500])
    return rows, np.arange(CHANNELS) * (n_crystals // CHANNELS)


def channel_map(path: Path, chosen: np.ndarray) -> Path:
    """The map of board 0's channels to ``chosen`` crystals."""
    return write_map(path, [(0, i, int(c)) for i, c in enumerate(chosen)])
