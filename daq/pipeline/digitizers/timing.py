"""Channel time offsets of real digitizers: measured from a run's coincidences, stored with the
scanner, taken off every single before the time order.

Cables, trigger thresholds and the digitizers' own delays put tens of ns between channels. With
a uniform cylinder centred in the field of view, the annihilations along every line of response
lie symmetrically about the point that is equidistant from its two crystals, so each prompt's
time difference is, on average, the difference of its crystals' offsets (a point source would
join each crystal only to the ones opposite it, and leave the rest of the offsets undetermined).
For each prompt, ``s = t_j - t_i`` in crystal order (i < j, signed: the sorter's ``dt`` is always
>= 0) measures ``o_j - o_i``; the offsets are the least-squares solution (damped Jacobi steps on
the per-crystal sums), with mean zero over the crystals that had prompts, fitted again without
the prompts farther from the fit than ``TRIMS_PS`` (randoms). Tables live beside the gain tables
(``<scanner>.timing-<UTC time>.npz``); the newest of a scanner (same definition digest) is
applied, and the run records which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.process.calibration import newest, read_fields, store
from hw.scanner import Scanner
from infra.errors import UserError

#: Each further fit leaves out the prompts farther than this from the one before (ps).
TRIMS_PS = (3000, 1500)
ITERATIONS = 200
#: Prompts a crystal needs for its offset (else it keeps 0).
MIN_PROMPTS = 5


@dataclass(frozen=True)
class TimingTable:
    """Each crystal's time offset (ps, to be subtracted from its singles' times)."""

    scanner: str
    scanner_digest: str
    offsets_ps: np.ndarray
    created_utc: str = ""
    from_run: str = ""
    path: str = ""

    @property
    def per_crystal(self) -> np.ndarray:
        return self.offsets_ps

    def describe(self) -> dict[str, Any]:
        """What run.json records about the timing calibration used."""
        o = self.offsets_ps
        return {"table": self.path or None, "from_run": self.from_run,
                "offset_rms_ps": float(np.sqrt(np.mean(o.astype(np.float64) ** 2)))}

    def save(self, folder: Path | None = None) -> Path:
        return store(f"{self.scanner}.timing", self.created_utc, folder, {
            "offsets_ps": self.offsets_ps, "scanner": self.scanner,
            "scanner_digest": self.scanner_digest, "created_utc": self.created_utc,
            "from_run": self.from_run})


def load(path: Path) -> TimingTable:
    z = read_fields(path, "timing table", ("scanner", "scanner_digest", "offsets_ps",
                                           "created_utc", "from_run"))
    return TimingTable(str(z["scanner"]), str(z["scanner_digest"]), z["offsets_ps"],
                       str(z["created_utc"]), str(z["from_run"]), str(path))


def current(scanner: Scanner, folder: Path | None = None) -> TimingTable | None:
    """The newest stored timing table of this scanner definition (None: no offsets)."""
    return newest(folder, f"{scanner.name}.timing-*.npz", load, scanner)


def derive(coinc: np.ndarray, scanner: Scanner, created_utc: str = "", from_run: str = ""
           ) -> tuple[TimingTable, dict[str, Any]]:
    """The offsets that explain the prompts' time differences (see the module's docstring)."""
    prompts = coinc[coinc["delayed"] == 0]
    if prompts.size == 0:
        raise UserError("the run has no prompts to measure channel time offsets from")
    a, b = prompts["crystal_a"].astype(np.int64), prompts["crystal_b"].astype(np.int64)
    i, j = np.minimum(a, b), np.maximum(a, b)
    s = np.where(a < b, 1, -1) * prompts["dt"].astype(np.float64)
    n = scanner.n_crystals
    keep = np.ones(s.size, bool)
    offsets = _fit(i, j, s, n, keep)
    for trim in TRIMS_PS:  # randoms and the crystals' own coincidences out, step by step
        keep = np.abs(s - (offsets[j] - offsets[i])) <= trim
        offsets = _fit(i, j, s, n, keep)
    counts = np.bincount(i[keep], minlength=n) + np.bincount(j[keep], minlength=n)
    fitted = counts >= MIN_PROMPTS
    offsets[~fitted] = 0.0
    table = TimingTable(scanner.name, scanner.digest, np.rint(offsets).astype(np.int64),
                        created_utc, from_run)
    residual = s[keep] - (offsets[j[keep]] - offsets[i[keep]])
    return table, {"crystals": int(fitted.sum()), "prompts": int(keep.sum()),
                   "residual_rms_ps": float(np.sqrt(np.mean(residual ** 2)))}


def _fit(i: np.ndarray, j: np.ndarray, s: np.ndarray, n: int, keep: np.ndarray) -> np.ndarray:
    i, j, s = i[keep], j[keep], s[keep]
    counts = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    seen = counts > 0
    o = np.zeros(n)
    for _ in range(ITERATIONS):
        r = s - (o[j] - o[i])
        step = (np.bincount(j, r, minlength=n) - np.bincount(i, r, minlength=n))
        o[seen] += 0.5 * step[seen] / counts[seen]
        o[seen] -= o[seen].mean()
    return o
