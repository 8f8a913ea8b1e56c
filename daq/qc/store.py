"""The scanner's QC baseline and history, kept with its calibrations:
``$BEDSIDE_PET_HOME/calibration/qc/<scanner>-baseline-<UTC time>.npz`` (the newest of the
scanner's definition is the baseline) and ``qc/<scanner>-history.jsonl`` (a line per QC)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from daq.qc.figures import Figures, n_bins
from hw.scanner import Scanner
from infra.atomic import replacing
from infra.errors import UserError
from infra.home import calibration_dir


def qc_dir() -> Path:
    """Where the baselines and the history live: ``$BEDSIDE_PET_HOME/calibration/qc``."""
    return calibration_dir() / "qc"


def _stamp(created_utc: str) -> str:
    return created_utc.replace(":", "").replace("-", "")[:15]


def save_baseline(figures: Figures, folder: Path | None = None) -> Path:
    """Store ``figures`` as the scanner's baseline (atomically); returns the path."""
    folder = folder or qc_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{figures.scanner}-baseline-{_stamp(figures.created_utc)}.npz"
    with replacing(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **figures.arrays())
    return path


def load_figures(path: Path) -> Figures:
    """The figures of a stored ``.npz``; a damaged file is one line."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Figures(str(z["scanner"]), str(z["scanner_digest"]), float(z["seconds"]),
                           z["crystal_cps"], z["module_spectra"], z["module_offset_ps"],
                           float(z["intrinsic_cps"]), str(z["from_run"]), str(z["created_utc"]),
                           z.get("module_pair_cps"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"QC baseline {path} is damaged or not a baseline ({exc})") from None


def baseline(scanner: Scanner, folder: Path | None = None) -> tuple[Figures, Path]:
    """The newest baseline of this scanner definition (its digest) and its path; one line when
    there is none."""
    folder = folder or qc_dir()
    paths = sorted(folder.glob(f"{scanner.name}-baseline-*.npz"), reverse=True) \
        if folder.is_dir() else []
    others = []
    for path in paths:
        figures = load_figures(path)
        if figures.scanner_digest == scanner.digest:
            return _checked(figures, scanner, path), path
        others.append(path)
    if others:
        raise UserError(f"the QC baseline {others[0]} was taken with another definition of "
                        f"{scanner.name}: take a new one (petdaq qc --set-baseline)")
    raise UserError(f"no QC baseline for {scanner.name}: take one after calibration and "
                    "normalization (petdaq qc --set-baseline, or petdaq qc --run BLANK_RUN "
                    "--set-baseline)")


def _checked(figures: Figures, scanner: Scanner, path: Path) -> Figures:
    modules = int(scanner.crystal_module.max()) + 1
    if figures.crystal_cps.shape != (scanner.n_crystals,) or \
            figures.module_offset_ps.shape != (modules,) or \
            figures.module_spectra.shape != (modules, n_bins()) or \
            (figures.module_pair_cps is not None
             and figures.module_pair_cps.shape != (modules, modules)):
        raise UserError(f"QC baseline {path} does not fit {scanner.name}'s crystals and modules "
                        "(or was taken by another version): take a new one")
    return figures


def history_path(scanner_name: str, folder: Path | None = None) -> Path:
    return (folder or qc_dir()) / f"{scanner_name}-history.jsonl"


def append_history(scanner_name: str, entry: dict[str, Any], folder: Path | None = None
                   ) -> Path:
    """Add one QC's summary to the scanner's history (a JSON line, flushed)."""
    path = history_path(scanner_name, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a") as fh:
        fh.write(("\n" if torn else "") + json.dumps(entry) + "\n")  # a killed QC's torn line
        fh.flush()
    return path


def read_history(scanner_name: str, folder: Path | None = None) -> list[dict[str, Any]]:
    """Every QC of the scanner, oldest first (a damaged line, from a killed QC, is skipped)."""
    path = history_path(scanner_name, folder)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def last_qc(scanner_name: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The scanner's latest QC in brief (``result``, ``created_utc``, ``flagged``: how many,
    ``run``), or None: what a run records and the console shows before a scan."""
    entries = read_history(scanner_name, folder)
    if not entries:
        return None
    e = entries[-1]
    return {"result": e.get("result"), "created_utc": e.get("created_utc"),
            "flagged": len(e.get("flagged", [])), "run": e.get("run")}
