"""Normalization: each crystal's detection efficiency, a multiplicative factor ``eff_a eff_b`` of
every line of response beside the geometry of :mod:`recon.pet.lors`.

The model (STIR's ``BinNormalisationPETFromComponents``, without its geometric component, which
the system model computes): ``P(detected in (a, b)) = eff_a eff_b G_ab / (2 pi) ...``, with
``eff`` of mean 1 over the live crystals (the absolute scale stays in the cross-calibration's
``counts_per_annihilation``) and 0 for a dead crystal, whose lines of response are then missing
data, not zero activity. A table is measured by ``petdaq calibrate RUN --method normalization``
(:mod:`recon.calibration.normalization`) and stored with the scanner's calibrations, in
``$BEDSIDE_PET_HOME/calibration/normalization/<scanner>-<UTC time>.npz``: ``crystal_efficiency``
(n_crystals,), ``scanner``, ``scanner_digest``, ``method``, ``created_utc``, ``from_run``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.scanner import Scanner
from infra.atomic import replacing
from infra.errors import UserError
from infra.home import calibration_dir
from recon.grid import array_digest
from recon.pet.lors import LORs

#: The table's fields.
FIELDS = ("crystal_efficiency", "scanner", "scanner_digest", "method", "created_utc", "from_run")


@dataclass(frozen=True)
class CrystalEfficiencies:
    """A normalization table: each crystal's relative efficiency, and where it came from."""

    efficiency: np.ndarray
    """(n_crystals,) float64, mean 1 over the live crystals, 0 for a dead one."""
    scanner: str
    scanner_digest: str
    method: str
    """``blank`` (the crystals' own Lu-176), ``cylinder``, ``truth`` (an emulated scanner's
    own, for validation) or ``uniform``."""
    created_utc: str = ""
    from_run: str = ""
    path: str = ""

    @property
    def digest(self) -> str:
        """Identifies the table in the cache keys of the images it makes."""
        return "norm-" + array_digest(np.asarray(self.efficiency, np.float64))

    @property
    def is_trivial(self) -> bool:
        """Whether every crystal is alike (the reconstruction then takes no normalization: the
        image is the one it gives without, bit for bit)."""
        return bool(np.allclose(self.efficiency, 1.0, rtol=0.0, atol=1e-12))

    def factors(self, lors: LORs) -> np.ndarray:
        """(n,) float32: ``eff_a eff_b`` of each line of response."""
        e = np.asarray(self.efficiency, np.float32)
        return e[lors.crystal_a] * e[lors.crystal_b]

    def describe(self) -> dict[str, object]:
        """What run.json and the report record about the table used."""
        live = self.efficiency > 0
        return {"method": self.method, "table": self.path or None,
                "created_utc": self.created_utc or None, "from_run": self.from_run or None,
                "dead_crystals": int((~live).sum()),
                "efficiency_rms": float(self.efficiency[live].std()) if live.any() else 0.0}

    def save(self, folder: Path | None = None) -> Path:
        """Store the table with the scanner's calibrations (atomically); returns its path."""
        folder = folder or normalization_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = self.created_utc.replace(":", "").replace("-", "")[:15]
        path = folder / f"{self.scanner}-{stamp}.npz"
        with replacing(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, crystal_efficiency=self.efficiency, scanner=self.scanner,
                     scanner_digest=self.scanner_digest, method=self.method,
                     created_utc=self.created_utc, from_run=self.from_run)
        return path


def normalization_dir() -> Path:
    """Where normalization tables live: ``$BEDSIDE_PET_HOME/calibration/normalization``."""
    return calibration_dir() / "normalization"


def uniform(scanner: Scanner) -> CrystalEfficiencies:
    """Every crystal alike (no normalization)."""
    return CrystalEfficiencies(np.ones(scanner.n_crystals), scanner.name, scanner.digest,
                               "uniform")


def truth(scanner: Scanner) -> CrystalEfficiencies:
    """An emulated scanner's true efficiencies (:meth:`hw.scanner.Scanner.crystal_efficiencies`):
    for validation only, like the phantom's own mu-map."""
    return CrystalEfficiencies(scanner.crystal_efficiencies(), scanner.name, scanner.digest,
                               "truth")


def load(path: str | Path, scanner: Scanner) -> CrystalEfficiencies:
    """A stored table, checked against ``scanner``: one UserError line for a file that cannot be
    read, is truncated, lacks a field, or belongs to another scanner."""
    try:
        with np.load(path) as z:
            f = {k: z[k] for k in FIELDS}
    except FileNotFoundError:
        raise UserError(f"normalization table {path} does not exist") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"normalization table {path} cannot be read (not a normalization "
                        f"table, or truncated): {str(exc).splitlines()[0]}") from None
    eff = np.asarray(f["crystal_efficiency"], np.float64)
    table = CrystalEfficiencies(eff, str(f["scanner"]), str(f["scanner_digest"]),
                                str(f["method"]), str(f["created_utc"]), str(f["from_run"]),
                                str(path))
    if table.scanner != scanner.name or eff.shape != (scanner.n_crystals,):
        raise UserError(f"normalization table {path} is for scanner {table.scanner} "
                        f"({eff.size} crystals), not {scanner.name} ({scanner.n_crystals})")
    if not np.all(np.isfinite(eff)) or np.any(eff < 0) or not np.any(eff > 0):
        raise UserError(f"normalization table {path}: crystal_efficiency must be finite and "
                        ">= 0, some > 0")
    return table


def newest(scanner: Scanner, folder: Path | None = None) -> CrystalEfficiencies | None:
    """The newest stored table of this scanner definition (its digest), or None."""
    folder = folder or normalization_dir()
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{scanner.name}-*.npz"), reverse=True):
        try:
            table = load(path, scanner)
        except UserError:
            continue
        if table.scanner_digest == scanner.digest:
            return table
    return None


#: The choices of a reconstruction's normalization besides a table's path.
STORED, TRUTH, NONE = "stored", "truth", "none"


def resolve(choice: str, scanner: Scanner) -> CrystalEfficiencies | None:
    """The normalization a reconstruction takes: ``stored`` the newest table of the scanner
    (None when there is none), ``truth`` an emulated scanner's own efficiencies (validation
    only), ``none`` none, anything else the path of a table."""
    if choice == STORED:
        return newest(scanner)
    if choice == TRUTH:
        return truth(scanner)
    if choice == NONE:
        return None
    return load(choice, scanner)


def describe(table: CrystalEfficiencies | None, choice: str, scanner: Scanner) -> dict:
    """What run.json and the report record: the table used, or why none was."""
    if table is not None:
        return table.describe()
    why = (f"no table stored for {scanner.name} (petdaq calibrate BLANK_RUN --method "
           "normalization)" if choice == STORED else "not asked for")
    return {"method": "none", "table": None, "why": why}
