"""An emulated PET scan of a phantom reconstructed in memory exactly as ``petdaq recon`` does it.

The emulator's singles are sorted a second at a time by the streaming sorter with the scanner's
own settings (:func:`recon.calibration.phantomnorm.emulated_coincidences`), so memory holds the
coincidences, not the singles; :func:`recon.pet.runimage.reconstruct_run` then makes the image
with the mu-map asked for, the run's facts those an emulated run's documents give.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hw.scanner import Scanner
from infra.atomic import replacing
from infra.study import Study
from recon.calibration.phantomnorm import emulated_coincidences
from recon.pet.runimage import RunReconOptions, reconstruct_run
from runstore.facts import RunFacts


def header_of(scanner: Scanner) -> dict[str, Any]:
    """The list-mode header a run of the scanner's own sorting has."""
    acq = scanner.acquisition
    return {"energy_window_kev": list(acq["energy_window_kev"]),
            "window_ps": acq["coincidence_window_ps"], "min_sector_difference": None}


def facts_of(scanner: Scanner, phantom: str | None, activity_mbq: float, seconds: float,
             body_part: str | None) -> RunFacts:
    """What an emulated run's documents say (``phantom`` None: a run from real detectors)."""
    return RunFacts(scanner=scanner.name, duration_s=seconds, nuclide="F-18",
                    activity_mbq=activity_mbq, phantom=phantom,
                    study=Study(body_part=body_part))


def scan(scanner: Scanner, phantom: str, activity_mbq: float, seconds: float, seed: int,
         threads: int) -> np.ndarray:
    """The prompts and delayeds of an emulated F-18 scan of the phantom (a name or file)."""
    return emulated_coincidences(scanner, phantom, activity_mbq, seconds, seed, threads)


def image(coinc: np.ndarray, scanner: Scanner, facts: RunFacts, mu_map: str) -> Any:
    """The run's image (Bq/mL) with ``mu_map`` (``estimate``, ``truth``, ``none``, a file)."""
    return reconstruct_run(coinc, header_of(scanner), facts, scanner,
                           RunReconOptions(mu_map=mu_map))


def region_means(values: np.ndarray, labels: np.ndarray, names: dict[int, str],
                 groups: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """The mean of ``values`` over each group of named labels."""
    index = {n: k for k, n in names.items()}
    out = {}
    for group, members in groups.items():
        mask = np.isin(labels, [index[m] for m in members if m in index])
        out[group] = float(values[mask].mean()) if mask.any() else float("nan")
    return out


def kept_rows(path: Path) -> list[dict[str, str]]:
    """The rows a table already holds (a check started again goes on where it stopped)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def table(folders: list[Path], key: str, row_of: Callable[[Path, int], dict[str, Any]],
          out: Path) -> list[dict[str, Any]]:
    """The rows of ``folders`` (``row_of(folder, k)``, the k-th), kept in ``out`` after each one
    and printed; the rows ``out`` already holds (by ``key``, the folder's name) are not made
    again."""
    rows = kept_rows(out)
    done = {r[key] for r in rows}
    for k, folder in enumerate(folders):
        if folder.name in done:
            continue
        rows.append(row_of(folder, k))
        write_rows(out, rows)
        print(", ".join(f"{name} {value}" for name, value in rows[-1].items()), flush=True)
    return rows


def patients(population: Path, n: int) -> list[Path]:
    """The first ``n`` patients' folders of a population."""
    return sorted(d for d in population.iterdir() if (d / "phantom.toml").is_file())[:n]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as CSV, every column any row has (a row without one leaves it empty)."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def population_parser(prog: str, doc: str, scanner: str, activity_mbq: float, seconds: float,
                      seed: int, out: str) -> argparse.ArgumentParser:
    """The command line of a validation on a population, with its defaults."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.splitlines()[0])
    p.add_argument("population", type=Path, help="a folder of petdaq phantoms population")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--scanner", default=scanner)
    p.add_argument("--activity-mbq", type=float, default=activity_mbq)
    p.add_argument("--seconds", type=float, default=seconds)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--out", type=Path, default=Path(out))
    return p
