"""Other digitizers' energy units per channel: keV per raw unit (ADC channel, ToT ns, QDC count,
MeV), measured from a run's photopeak and stored with the scanner.

Each crystal's spectrum, histogrammed in log(raw unit), is a shifted copy of the summed one
(spectral registration, as :mod:`daq.pipeline.process.calibration` does for our boards' ADC codes); the
summed spectrum's photopeak, the highest bin in its upper part, is put at ``peak_kev`` (511 keV,
662 keV for Cs-137). A raw unit need not be linear in keV over the whole range (ToT is not): the
table is exact at the photopeak, where the energy window sits. Tables live beside the gain tables
as ``<scanner>.units-<format>-<UTC time>.npz``; which one a run used is recorded in its run.json.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.process.calibration import (
    LOG_BINS,
    MIN_COUNTS,
    aligned_sum,
    newest,
    read_fields,
    register,
    store,
)
from hw.scanner import Scanner
from infra.errors import UserError

#: Records whose energies set the histogram's range (percentiles below).
RANGE_RECORDS = 1 << 20
RANGE_PERCENTILES = (1.0, 99.9)
#: The photopeak is looked for above this percentile of the summed spectrum's counts.
PEAK_ABOVE_PERCENTILE = 30.0


@dataclass(frozen=True)
class UnitTable:
    """keV per raw energy unit of each crystal, for one scanner and one file format."""

    scanner: str
    scanner_digest: str
    format: str
    kev_per_unit: np.ndarray
    peak_kev: float
    created_utc: str = ""
    from_run: str = ""
    path: str = ""

    @property
    def per_crystal(self) -> np.ndarray:
        return self.kev_per_unit

    def describe(self) -> dict[str, Any]:
        """What run.json records of the energy calibration used."""
        k = self.kev_per_unit
        return {"method": "photopeak table", "table": self.path or None,
                "from_run": self.from_run, "peak_kev": self.peak_kev,
                "kev_per_unit_median": float(np.median(k)),
                "spread": float(k.std() / k.mean())}

    def save(self, folder: Path | None = None) -> Path:
        return store(f"{self.scanner}.units-{self.format}", self.created_utc, folder, {
            "kev_per_unit": self.kev_per_unit, "scanner": self.scanner,
            "scanner_digest": self.scanner_digest, "format": self.format,
            "peak_kev": self.peak_kev, "created_utc": self.created_utc,
            "from_run": self.from_run})


def load(path: Path) -> UnitTable:
    z = read_fields(path, "energy table", ("scanner", "scanner_digest", "format", "kev_per_unit",
                                           "peak_kev", "created_utc", "from_run"))
    return UnitTable(str(z["scanner"]), str(z["scanner_digest"]), str(z["format"]),
                     z["kev_per_unit"], float(z["peak_kev"]), str(z["created_utc"]),
                     str(z["from_run"]), str(path))


def current(scanner: Scanner, fmt: str, folder: Path | None = None) -> UnitTable | None:
    """The newest stored table of this scanner definition for files of format ``fmt``."""
    return newest(folder, f"{scanner.name}.units-{fmt}-*.npz", load, scanner)


class SpectrumBuilder:
    """Each crystal's spectrum in log(raw unit), filled chunk by chunk (bounded memory)."""

    def __init__(self, n_crystals: int) -> None:
        self.n = n_crystals
        self.edges: np.ndarray | None = None
        self.hist = np.zeros((n_crystals, LOG_BINS))
        self._held: list[tuple[np.ndarray, np.ndarray]] = []
        self._held_n = 0

    def add(self, crystal: np.ndarray, energy: np.ndarray) -> None:
        """Records on the crystals ``crystal`` with raw energies ``energy``."""
        if self.edges is None:
            self._held.append((crystal, energy))
            self._held_n += crystal.size
            if self._held_n >= RANGE_RECORDS:
                self._settle()
            return
        self._fill(crystal, energy)

    def _settle(self) -> None:
        crystal = np.concatenate([c for c, _ in self._held])
        energy = np.concatenate([e for _, e in self._held])
        self._held = []
        positive = energy[energy > 0]
        if positive.size < MIN_COUNTS:
            raise UserError(f"only {positive.size} records with an energy > 0: nothing to "
                            "calibrate")
        lo, hi = np.percentile(positive, RANGE_PERCENTILES)
        self.edges = np.linspace(np.log(lo), np.log(hi * 1.5), LOG_BINS + 1)
        self._fill(crystal, energy)

    def _fill(self, crystal: np.ndarray, energy: np.ndarray) -> None:
        lo, hi = np.exp(self.edges[0]), np.exp(self.edges[-1])
        keep = (energy > lo) & (energy < hi)
        width = self.edges[1] - self.edges[0]
        b = np.clip(((np.log(energy[keep]) - self.edges[0]) / width).astype(np.int64), 0,
                    LOG_BINS - 1)
        self.hist += np.bincount(crystal[keep].astype(np.int64) * LOG_BINS + b,
                                 minlength=self.n * LOG_BINS).reshape(self.n, LOG_BINS)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-crystal histograms, log edges)."""
        if self.edges is None:
            self._settle()
        return self.hist, self.edges


def derive(spectra: Iterable[tuple[np.ndarray, np.ndarray]], scanner: Scanner, fmt: str,
           peak_kev: float = 511.0, created_utc: str = "", from_run: str = ""
           ) -> tuple[UnitTable, dict[str, Any]]:
    """The table that puts every crystal's photopeak at ``peak_kev``, from (crystal, raw energy)
    chunks; and a report (crystals read, calibrated, with too few counts: they, and the crystals
    no record reached, take the median; the peak in raw units)."""
    if not peak_kev > 0:
        raise UserError(f"--peak-kev must be > 0, got {peak_kev}")
    builder = SpectrumBuilder(scanner.n_crystals)
    for crystal, energy in spectra:
        builder.add(crystal, energy)
    hist, edges = builder.finish()
    counts = hist.sum(axis=1)
    ok = counts >= MIN_COUNTS
    read = int(np.count_nonzero(counts))  # a map may name a few of the scanner's crystals
    if ok.sum() < max(1, read // 2):
        raise UserError(f"run too short to calibrate: only {int(ok.sum())} of the {read} "
                        f"crystals read have >= {MIN_COUNTS} counts")
    shifts = register(hist, ok)
    width = edges[1] - edges[0]
    peak_unit = _peak_unit(hist, ok, shifts, edges)
    gains = np.exp(shifts * width)  # a crystal's raw units per the summed spectrum's
    kev = peak_kev / (peak_unit * gains)
    kev[~ok] = np.median(kev[ok])
    table = UnitTable(scanner.name, scanner.digest, fmt, kev, float(peak_kev), created_utc,
                      from_run)
    return table, {"crystals": read, "calibrated": int(ok.sum()),
                   "too_few_counts": read - int(ok.sum()), "peak_unit": peak_unit,
                   "median_counts": float(np.median(counts))}


def _peak_unit(hist: np.ndarray, ok: np.ndarray, shifts: np.ndarray, edges: np.ndarray) -> float:
    """The raw energy of the aligned summed spectrum's photopeak (its highest bin above the
    ``PEAK_ABOVE_PERCENTILE`` of its counts), to a fraction of a bin."""
    reference = aligned_sum(hist[ok] / hist[ok].sum(axis=1, keepdims=True), shifts[ok])
    cdf = np.cumsum(reference) / reference.sum()
    first = int(np.searchsorted(cdf, PEAK_ABOVE_PERCENTILE / 100.0))
    i = first + int(reference[first:-1].argmax())
    i = min(max(i, 1), reference.size - 2)
    y0, y1, y2 = reference[i - 1], reference[i], reference[i + 1]
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
    return float(np.exp(edges[0] + (i + 0.5 + frac) * (edges[1] - edges[0])))
