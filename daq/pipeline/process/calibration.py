"""Per-crystal energy calibration: ADC codes -> keV.

``energy_keV = adc * kev_per_adc_code / gain[crystal]``, where ``gain`` is the relative gain of each
channel (1 for a nominal channel). Gains are measured from a calibration run by *spectral
registration*: each crystal's spectrum, histogrammed in log(ADC code), is a shifted copy of the
scanner's summed spectrum, the shift being log(gain); the shift is found by cross-correlation with
sub-bin (parabolic) interpolation. Any spectrum with structure works:

- ``photopeak`` (a positron source in the field of view): the absolute scale puts the summed
  spectrum's photopeak at 511 keV;
- ``lu176`` (no source: the crystals' own Lu-176 activity, beta continuum plus the 88/202/307 keV
  cascade): relative gains only, normalised to a mean of 1, the absolute scale staying with the
  nominal ADC gain of the digitizer.

Tables are stored with the scanner in the calibration folder (``$BEDSIDE_PET_HOME/calibration``,
default ``~/.local/share/bedside-pet/calibration``) as ``<scanner>-<UTC time>.npz``. One rule picks
the table of a run (:func:`current`): the newest stored table of its scanner (same definition
digest); without one, an emulated scan's own gains (the emulator's digitizer applies the
scanner model's :meth:`~hw.scanner.Scanner.crystal_gains`, so its first image is quantitative),
and nominal gains for a scan from real boards. The run's ``run.json`` records which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hw.dtypes import RAW_DTYPE, SINGLE_DTYPE
from hw.scanner import Scanner
from infra.atomic import replacing
from infra.errors import UserError
from infra.home import calibration_dir

T = TypeVar("T")

LOG_BINS = 256
MAX_SHIFT_BINS = 40
MIN_COUNTS = 200


@dataclass(frozen=True)
class Calibration:
    """A gain table for one scanner: ``gains`` per crystal, with where it came from."""

    scanner: str
    scanner_digest: str
    gains: np.ndarray
    kev_per_adc_code: float
    method: str
    """``nominal`` (no table: every gain 1), ``emulated`` (no table: the emulated digitizer's
    true gains), ``photopeak`` or ``lu176``."""
    created_utc: str = ""
    from_run: str = ""
    path: str = ""

    @property
    def per_crystal(self) -> np.ndarray:
        return self.gains

    @classmethod
    def nominal(cls, scanner: Scanner) -> Calibration:
        """Every gain 1: energies are then off by the channels' gain spread."""
        return cls(scanner.name, scanner.digest, np.ones(scanner.n_crystals),
                   scanner.digitizer.kev_per_adc_code, "nominal")

    @classmethod
    def emulated(cls, scanner: Scanner) -> Calibration:
        """The gains the emulator's digitizer applies: an emulated scan's exact calibration."""
        return cls(scanner.name, scanner.digest, scanner.crystal_gains(),
                   scanner.digitizer.kev_per_adc_code, "emulated")

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated singles (SINGLE_DTYPE) from raw events (RAW_DTYPE)."""
        out = np.empty(raw.size, SINGLE_DTYPE)
        out["t"] = raw["t"]
        out["crystal"] = raw["crystal"]
        scale = (self.kev_per_adc_code / self.gains).astype(np.float32)
        out["energy"] = raw["adc"].astype(np.float32) * scale[raw["crystal"]]
        return out

    def describe(self) -> dict[str, Any]:
        """What run.json records about the calibration used."""
        g = self.gains
        return {"method": self.method, "table": self.path or None, "created_utc": self.created_utc,
                "from_run": self.from_run, "gain_mean": float(g.mean()),
                "gain_rms": float(g.std() / g.mean())}

    def save(self, folder: Path | None = None) -> Path:
        """Store the table with the scanner's calibrations; returns its path."""
        return store(self.scanner, self.created_utc, folder, {
            "gains": self.gains, "kev_per_adc_code": self.kev_per_adc_code,
            "scanner": self.scanner, "scanner_digest": self.scanner_digest,
            "method": self.method, "created_utc": self.created_utc, "from_run": self.from_run})




def store(name: str, created_utc: str, folder: Path | None, fields: dict[str, Any]) -> Path:
    """Write ``fields`` as the table ``<name>-<UTC time>.npz`` in the calibration folder
    (atomically); returns its path."""
    folder = folder or calibration_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = created_utc.replace(":", "").replace("-", "")[:15]
    path = folder / f"{name}-{stamp}.npz"
    with replacing(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **fields)
    return path


def read_fields(path: str | Path, what: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of a stored table: one UserError naming ``what`` and the file if it
    cannot be read or lacks one."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in names}
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{what} {path} cannot be read: {exc}") from None


def load_table(path: str | Path) -> Calibration:
    """Read a stored gain table."""
    z = read_fields(path, "calibration table", (
        "scanner", "scanner_digest", "gains", "kev_per_adc_code", "method", "created_utc",
        "from_run"))
    return Calibration(str(z["scanner"]), str(z["scanner_digest"]), z["gains"],
                       float(z["kev_per_adc_code"]), str(z["method"]), str(z["created_utc"]),
                       str(z["from_run"]), str(path))


def newest(folder: Path | None, pattern: str, load: Callable[[Path], T], scanner: Scanner
           ) -> T | None:
    """The newest table in the calibration folder whose name matches ``pattern`` (time stamps
    sort by name) that was made for this scanner definition (its digest, and one value a crystal:
    ``per_crystal``)."""
    folder = folder or calibration_dir()
    for path in sorted(folder.glob(pattern), reverse=True) if folder.is_dir() else []:
        table = load(path)
        if (table.scanner_digest == scanner.digest
                and table.per_crystal.size == scanner.n_crystals):
            return table
    return None


def current(scanner: Scanner, folder: Path | None = None, emulated: bool = False
            ) -> Calibration:
    """The newest stored table for this scanner definition; if there is none, the emulator's
    gains for an ``emulated`` scan, else nominal gains."""
    table = newest(folder, f"{scanner.name}-*.npz", load_table, scanner)
    if table is not None:
        return table
    return Calibration.emulated(scanner) if emulated else Calibration.nominal(scanner)


def derive(raw: np.ndarray, scanner: Scanner, method: str = "photopeak", created_utc: str = "",
           from_run: str = "") -> tuple[Calibration, dict[str, Any]]:
    """Measure per-crystal gains from a calibration run's raw events.

    Returns the calibration and a report (crystals calibrated, crystals with too few counts).
    """
    if method not in ("photopeak", "lu176"):
        raise UserError(f"unknown calibration method '{method}': use photopeak or lu176")
    if raw.dtype != RAW_DTYPE or raw.size == 0:
        raise UserError("calibration needs raw events from a calibration run; got none")
    full = (1 << scanner.digitizer.adc_bits) - 1
    lo_code = 40.0 / scanner.digitizer.kev_per_adc_code
    edges = np.linspace(np.log(lo_code), np.log(full), LOG_BINS + 1)
    width = edges[1] - edges[0]
    keep = (raw["adc"] > lo_code) & (raw["adc"] < full)
    b = np.clip(((np.log(raw["adc"][keep]) - edges[0]) / width).astype(np.int64), 0, LOG_BINS - 1)
    n = scanner.n_crystals
    hist = np.bincount(raw["crystal"][keep].astype(np.int64) * LOG_BINS + b,
                       minlength=n * LOG_BINS).reshape(n, LOG_BINS).astype(np.float64)
    counts = hist.sum(axis=1)
    ok = counts >= MIN_COUNTS
    if ok.sum() < max(1, n // 2):
        raise UserError(f"calibration run too short: only {int(ok.sum())} of {n} crystals have "
                        f">= {MIN_COUNTS} counts; acquire longer")
    shifts = register(hist, ok)
    gains = np.exp(shifts * width)
    if method == "photopeak":
        peak_code = _photopeak_code(hist, ok, shifts, edges, scanner)
        gains *= peak_code * scanner.digitizer.kev_per_adc_code / 511.0
    else:
        gains /= gains[ok].mean()
    gains[~ok] = 1.0 if method == "lu176" else np.median(gains[ok])
    cal = Calibration(scanner.name, scanner.digest, gains, scanner.digitizer.kev_per_adc_code,
                      method, created_utc, from_run)
    report = {"crystals": n, "calibrated": int(ok.sum()), "too_few_counts": int((~ok).sum()),
              "no_counts": int((counts == 0).sum()), "median_counts": float(np.median(counts)),
              "gain_rms": float(gains[ok].std())}
    return cal, report


def register(hist: np.ndarray, ok: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Shift (bins) of each crystal's log spectrum relative to the summed spectrum."""
    norm = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    shifts = np.zeros(hist.shape[0])
    reference = norm[ok].sum(axis=0)
    for _ in range(iterations):
        lags = np.arange(-MAX_SHIFT_BINS, MAX_SHIFT_BINS + 1)
        score = np.stack([(np.roll(norm, -lag, axis=1)[:, MAX_SHIFT_BINS:-MAX_SHIFT_BINS]
                           * reference[MAX_SHIFT_BINS:-MAX_SHIFT_BINS]).sum(axis=1)
                          for lag in lags], axis=1)
        best = np.clip(score.argmax(axis=1), 1, lags.size - 2)
        rows = np.arange(score.shape[0])
        y0, y1, y2 = score[rows, best - 1], score[rows, best], score[rows, best + 1]
        denom = y0 - 2 * y1 + y2
        frac = np.where(denom < 0, 0.5 * (y0 - y2) / np.where(denom < 0, denom, -1.0), 0.0)
        shifts = lags[best] + frac
        reference = aligned_sum(norm[ok], shifts[ok])
    return shifts - np.median(shifts[ok])


def aligned_sum(norm: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum of spectra each moved back by its shift (linear interpolation)."""
    x = np.arange(norm.shape[1], dtype=np.float64)
    pairs = zip(norm, shifts, strict=True)
    return sum(np.interp(x + s, x, row, left=0, right=0) for row, s in pairs)


def _photopeak_code(hist: np.ndarray, ok: np.ndarray, shifts: np.ndarray, edges: np.ndarray,
                    scanner: Scanner) -> float:
    """ADC code of the 511 keV photopeak of the aligned summed spectrum (gain-1 channel)."""
    reference = aligned_sum(hist[ok] / hist[ok].sum(axis=1, keepdims=True), shifts[ok])
    centres = np.exp(0.5 * (edges[1:] + edges[:-1]))
    kev = centres * scanner.digitizer.kev_per_adc_code
    window = (kev > 380) & (kev < 700)
    if not window.any() or reference[window].max() <= 0:
        raise UserError("no 511 keV photopeak in the calibration run: is a positron source in "
                        "the field of view? (use --method lu176 without a source)")
    i = int(np.flatnonzero(window)[reference[window].argmax()])
    y0, y1, y2 = reference[i - 1], reference[i], reference[i + 1]
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
    return float(np.exp(edges[0] + (i + 0.5 + frac) * (edges[1] - edges[0])))
