"""Quantitative SPECT: a camera's planar sensitivity per nuclide and photopeak window, measured on a
calibration run, and the OSEM image in Bq/mL with it.

Sensitivity (cps/MBq per head, the figure of NEMA NM 1): the photopeak window's counts of a
calibration run, less the TEW scatter estimate, per second, per head, per MBq of the source's mean
activity over the scan. A point source in air (phantom ``point``) measures it best (no attenuation,
almost no scatter); a uniform source in water scatters and attenuates, and reads low.

The OSEM image (:func:`recon.spect_osem`) holds the expected photons of the window's line emitted
per voxel as the system model sees them: collimator geometric efficiency x crystal absorption. The
model's planar sensitivity is ``1e6 x yield x that efficiency`` cps/MBq; the measured one over the
model's is the camera's calibration factor (what the model leaves out: the photopeak fraction of
the crystal's absorptions, the energy resolution's tails out of the window, dead time). Then, as
for PET (:mod:`recon.quant`), ``Bq/mL = x / (yield x V x factor x T) x decay``.

Sensitivities are stored with the scanner, ``[quantification.spect_cps_per_mbq]`` in its TOML,
keyed ``"NUCLIDE E keV"`` (:func:`hw.scanner.sensitivity_key`); ``petdaq sensitivity RUN --write``
puts them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hw.scanner import Scanner, sensitivity_key
from infra.errors import UserError


@dataclass(frozen=True)
class Line:
    """The gamma line(s) of a nuclide inside one photopeak window."""

    nuclide: str
    energy_kev: float
    """The strongest line in the window (names the sensitivity)."""
    yield_per_decay: float
    """All the nuclide's lines in the window, summed."""
    half_life_s: float

    @property
    def key(self) -> str:
        return sensitivity_key(self.nuclide, self.energy_kev)


def line_in(nuclide: str, window_kev: tuple[float, float]) -> Line:
    """The nuclide's line(s) inside ``[lo, hi)`` keV; a one-line error when there is none."""
    from hw import nuclides

    n = nuclides.get(nuclide)
    inside = [(y, e) for e, y in zip(n.gamma_kev, n.gamma_yield, strict=True)
              if window_kev[0] <= e < window_kev[1]]
    if not inside:
        raise UserError(f"{nuclide} has no gamma line in the {window_kev[0]:.1f}-"
                        f"{window_kev[1]:.1f} keV window")
    return Line(nuclide, max(inside)[1], sum(y for y, _ in inside), n.half_life_s)


def model_cps_per_mbq(scanner: Scanner, line: Line, window_kev: tuple[float, float]) -> float:
    """The system model's planar sensitivity per head (cps/MBq) for ``line``."""
    from recon.spect.osem import detection_efficiency

    return 1e6 * line.yield_per_decay * detection_efficiency(scanner, float(np.mean(window_kev)))


@dataclass(frozen=True)
class Sensitivity:
    """One photopeak window's sensitivity, measured on a calibration run."""

    line: Line
    window_kev: tuple[float, float]
    peak_counts: int
    scatter_counts: float
    """The TEW estimate in the photopeak window, removed."""
    activity_mbq: float
    """The source's mean activity over the scan."""
    duration_s: float
    heads: int
    model_cps_per_mbq: float

    @property
    def cps_per_mbq(self) -> float:
        """Counts per second per MBq per head, scatter removed."""
        return ((self.peak_counts - self.scatter_counts)
                / (self.duration_s * self.activity_mbq * self.heads))

    @property
    def factor(self) -> float:
        """Measured over modelled sensitivity: the calibration of the OSEM image."""
        return self.cps_per_mbq / self.model_cps_per_mbq


def measure(projections: np.ndarray, edges_kev: np.ndarray, scanner: Scanner, nuclide: str,
            activity_mbq: float, duration_s: float) -> list[Sensitivity]:
    """The sensitivity of every photopeak window of a calibration run's projections
    ``[window, head, view, row, column]`` (``activity_mbq`` at the scan start)."""
    from coincidence import spect
    from recon.quant import decay_factor

    if not (activity_mbq > 0 and duration_s > 0):
        raise UserError(f"a sensitivity needs the source's activity (MBq) and the scan's duration "
                        f"(s) > 0, got {activity_mbq}, {duration_s}")
    out = []
    for k in range(len(edges_kev) // 3):
        windows = spect.triple(edges_kev, k)
        counts = projections[3 * k:3 * k + 3]
        line = line_in(nuclide, windows.peak)
        mean_mbq = activity_mbq / decay_factor(duration_s, line.half_life_s)
        scatter = float(spect.tew_scatter(counts.sum(axis=(1, 2, 3, 4)), windows))
        out.append(Sensitivity(line, windows.peak, int(counts[spect.PEAK].sum()), scatter,
                               mean_mbq, duration_s, counts.shape[1],
                               model_cps_per_mbq(scanner, line, windows.peak)))
    return out


def quantify_spect(image: Any, scanner: Scanner, nuclide: str | None, duration_s: float | None
                   ) -> tuple[Any, str]:
    """The OSEM image (counts, meta ``window_kev``) in Bq/mL at the scan start with the scanner's
    stored sensitivity, and a note; the image in counts and the reason where it cannot be."""
    from recon.quant import activity_concentration

    if not nuclide or not duration_s:
        return image, "counts: the run does not name its nuclide and duration"
    window = tuple(image.meta["window_kev"])
    line = line_in(nuclide, window)
    stored = scanner.spect_cps_per_mbq.get(line.key)
    if stored is None:
        return image, (f"counts: {scanner.name} has no sensitivity for {line.key} (measure it: "
                       f"petdaq sensitivity CALIBRATION_RUN --write)")
    factor = stored / model_cps_per_mbq(scanner, line, window)
    out = activity_concentration(image, duration_s, line.yield_per_decay, line.half_life_s,
                                 factor)
    out.meta.update(sensitivity_cps_per_mbq=stored, photopeak=line.key)
    return out, f"Bq/mL with {stored:.3f} cps/MBq ({line.key})"


def store(path: Path, sensitivities: list[Sensitivity], command: str, source: str) -> None:
    """Write the sensitivities into the scanner TOML at ``path`` (its
    ``[quantification.spect_cps_per_mbq]`` table, made where missing; the file is replaced
    whole, atomically), each with a comment: ``source`` (the calibration run), the counts, the
    command."""
    import datetime as dt

    from infra.atomic import replacing

    lines = path.read_text().splitlines()
    header = "[quantification.spect_cps_per_mbq]"
    if header not in (line.strip() for line in lines):
        lines += ["", header]
    for s in sensitivities:
        key = f'"{s.line.key}"'
        lines = _without(lines, key, f"# {s.line.key}:")
        at = next(i for i, line in enumerate(lines) if line.strip() == header) + 1
        lines[at:at] = [f"# {s.line.key}: {source}, {s.peak_counts} counts in "
                        f"{s.window_kev[0]:.1f}-{s.window_kev[1]:.1f} keV less TEW "
                        f"{s.scatter_counts:.0f}; measured {dt.date.today().isoformat()} by",
                        f"# `{command}`",
                        f"{key} = {s.cps_per_mbq:.4f}"]
    with replacing(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _without(lines: list[str], key: str, comment: str) -> list[str]:
    """``lines`` without the entry ``key`` and its comment (from ``comment`` to the key)."""
    out: list[str] = []
    held: list[str] = []
    for line in lines:
        text = line.strip()
        if held or text.startswith(comment):
            held.append(line)
            if not text.startswith("#"):
                if not text.startswith(key):
                    out += held
                held = []
            continue
        if not text.startswith(key):
            out.append(line)
    return out + held
