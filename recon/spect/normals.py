"""Normal limits of the polar map: per sample, the mean of normal patients' values (percent of
each patient's largest segment) and the spread of their sample's segment, for one camera, one
attenuation correction and one sex.

Clinical packages (QPS, 4DM, ECTb) keep one database per camera, protocol, correction and sex,
built from patients with a low likelihood of coronary disease; a scan is compared with the one of
its own kind, sample by sample (:mod:`recon.spect.scores`). Limits are keyed by the correction's
kind, not its words: ``none``, ``calculated`` (the outline's map), ``measured`` (a CT's map, or the
emulated phantom's own) and ``learned``.

The spread is the segment's, not the sample's own: a database of tens of patients spreads each of
its thousand samples by where the valve plane, the wall and the neighbouring organs happened to
fall, and a lower limit three of those spreads down sits under the defects (measured on the
virtual population: docs/cardiac.md). The product ships limits for its cameras in
``recon/spect/limits/<camera>.json``; ``petdaq cardiac normals`` builds a site's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from infra.atomic import replacing
from infra.errors import UserError
from recon.spect.polarmap import PolarMap

SEXES = ("F", "M")
#: The correction a mu-map's method (:class:`recon.corrections.attenuation.MuMap`) is scored as.
CORRECTION_OF_METHOD = {"none": "none", "calculated": "calculated", "truth": "measured",
                        "file": "measured", "learned": "learned"}
#: The smallest spread a sample's limits take (percentage points): a database of a few patients
#: can show almost none at a sample by chance, and a scan would then read noise as a defect.
MIN_SD_PERCENT = 4.0
#: 2: each sample's spread is its segment's (1: the sample's own; refused, rebuild them).
FORMAT = 2


@dataclass(frozen=True)
class NormalLimits:
    """One database: each sample's mean, and the standard deviation of its segment's mean
    (percent), over ``patients`` normal patients of ``sex`` on ``camera`` with the attenuation
    ``correction``."""

    camera: str
    correction: str
    sex: str
    patients: int
    mean_percent: np.ndarray
    sd_percent: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.camera}, {self.correction} attenuation correction, {self.sex} (n={self.patients})"

    def lower_percent(self, sd: float) -> np.ndarray:
        """The lower normal limit, ``sd`` spreads under the mean."""
        return self.mean_percent - sd * np.maximum(self.sd_percent, MIN_SD_PERCENT)

    def to_json(self) -> dict:
        return {"camera": self.camera, "correction": self.correction, "sex": self.sex,
                "patients": self.patients,
                "mean_percent": [round(float(v), 2) for v in self.mean_percent],
                "sd_percent": [round(float(v), 2) for v in self.sd_percent]}

    @classmethod
    def from_json(cls, d: dict, source: str) -> NormalLimits:
        try:
            mean, sd = (np.asarray(d[k], float) for k in ("mean_percent", "sd_percent"))
            limits = cls(str(d["camera"]), str(d["correction"]), str(d["sex"]),
                         int(d["patients"]), mean, sd)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"normal limits {source}: not a database ({exc})") from None
        if mean.shape != sd.shape or mean.ndim != 1 or not np.all(np.isfinite(mean)):
            raise UserError(f"normal limits {source}: mean and spread are not two equal lists "
                            "of numbers")
        return limits


def build(maps: Sequence[PolarMap], camera: str, correction: str, sex: str) -> NormalLimits:
    """The limits of the polar maps (with samples) of normal patients of one sex."""
    if sex not in SEXES:
        raise UserError(f"normal limits: sex must be one of {', '.join(SEXES)}, got {sex!r}")
    if len(maps) < 3:
        raise UserError(f"normal limits of {camera}/{correction}/{sex} need at least 3 normal "
                        f"patients, got {len(maps)}")
    values = np.stack([m.samples_percent for m in maps])
    segments = np.stack([m.percent for m in maps]).std(axis=0, ddof=1)
    return NormalLimits(camera, correction, sex, len(maps), values.mean(axis=0),
                        segments[maps[0].sample_segments - 1])


def write(path: str | Path, limits: Sequence[NormalLimits]) -> Path:
    """A database file: every (correction, sex) of one camera."""
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "limits": [x.to_json() for x in limits]})
                       + "\n")
    return path


def read(path: str | Path) -> list[NormalLimits]:
    """The limits of a database file (one line of error for a missing or broken one)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"normal limits {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise UserError(f"normal limits {path}: not JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("limits"),
                                                                                list):
        raise UserError(f"normal limits {path}: not a database of format {FORMAT} (rebuild it "
                        "with `petdaq cardiac normals`)")
    return [NormalLimits.from_json(x, str(path)) for x in d["limits"]]


def shipped(camera: str) -> list[NormalLimits]:
    """The limits the product ships for ``camera`` (none: an empty list)."""
    file = resources.files("recon.spect") / "limits" / f"{camera}.json"
    return read(Path(str(file))) if file.is_file() else []


def choose(limits: Sequence[NormalLimits], camera: str, correction: str,
           samples: int | None) -> dict[str, NormalLimits]:
    """Each sex's limits for a scan of ``camera`` with ``correction`` (keyed by sex), checked
    against the scan's number of polar-map samples (None: not yet known); one line of error
    where there are none."""
    found = {x.sex: x for x in limits if x.correction == correction}
    if not found:
        have = sorted({x.correction for x in limits}) or ["none at all"]
        raise UserError(f"no normal limits for {camera} with {correction} attenuation correction "
                        f"(the database has {', '.join(have)}): build them with `petdaq cardiac "
                        "normals` or choose another --mu-map")
    for x in found.values():
        if x.camera != camera:
            raise UserError(f"normal limits are of camera {x.camera}, not of this scan's {camera}")
        if samples is not None and x.mean_percent.size != samples:
            raise UserError(f"normal limits of {x.label} have {x.mean_percent.size} samples, "
                            f"this polar map {samples}: they were built with another sampling")
    return found
