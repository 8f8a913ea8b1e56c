"""What a phantom's maker knows and a scan does not: its heart's axis, its defect, its drawn parameters.

Kept in ``truth.json`` beside a phantom file (``[phantom] truth``) and read by tests, validation
tools and ``truth`` options only. A built-in cardiac phantom's axis comes from its shapes
(:func:`lv_axis_of`): the apex at its cavity's apical end, the base 0.6 of the myocardium's
half-length behind its centre, anterior -y (LPS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.errors import UserError


@dataclass(frozen=True)
class LvTruth:
    """The left ventricle's long axis (scanner mm) and the polar map's sampling radii."""

    apex_mm: tuple[float, float, float]
    base_mm: tuple[float, float, float]
    anterior: tuple[float, float, float] = (0.0, -1.0, 0.0)
    radius_mm: tuple[float, float] = (3.0, 45.0)

    def to_json(self) -> dict[str, Any]:
        return {"apex_mm": list(self.apex_mm), "base_mm": list(self.base_mm),
                "anterior": list(self.anterior), "radius_mm": list(self.radius_mm)}


@dataclass(frozen=True)
class DefectTruth:
    """A perfusion defect: its coronary territory, size and the share of each AHA segment's
    myocardium it covers (segment 1-17 -> fraction 0-1)."""

    territory: str
    extent_percent: float
    """Of the left ventricle's myocardium (by volume)."""
    severity: float
    """The fraction of the uptake it takes away (0-1) where it is transmural."""
    transmurality: float
    """The fraction of the wall's thickness, from the endocardium, it reaches."""
    segments: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"territory": self.territory, "extent_percent": self.extent_percent,
                "severity": self.severity, "transmurality": self.transmurality,
                "segments": {str(k): v for k, v in sorted(self.segments.items())}}


@dataclass(frozen=True)
class PhantomTruth:
    """A phantom's truth: the heart's axis, the stress defect, the parameters it was drawn
    with (name -> number or word) and each region's uptake."""

    lv_axis: LvTruth | None = None
    defect: DefectTruth | None = None
    parameters: dict[str, float | str] = field(default_factory=dict)
    uptake: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parameters": self.parameters, "uptake": self.uptake}
        if self.lv_axis is not None:
            out["lv_axis"] = self.lv_axis.to_json()
        if self.defect is not None:
            out["defect"] = self.defect.to_json()
        return out

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    @classmethod
    def read(cls, path: Path, origin: str) -> PhantomTruth:
        """The truth file ``path`` of the phantom file ``origin``."""
        try:
            data = json.loads(path.read_text())
            lv, defect = data.get("lv_axis"), data.get("defect")
            return cls(
                lv_axis=LvTruth(tuple(lv["apex_mm"]), tuple(lv["base_mm"]),
                                tuple(lv.get("anterior", (0.0, -1.0, 0.0))),
                                tuple(lv.get("radius_mm", (3.0, 45.0)))) if lv else None,
                defect=DefectTruth(defect["territory"], float(defect["extent_percent"]),
                                   float(defect["severity"]), float(defect["transmurality"]),
                                   {int(k): float(v) for k, v in defect["segments"].items()})
                if defect else None,
                parameters=dict(data.get("parameters", {})),
                uptake={k: float(v) for k, v in data.get("uptake", {}).items()})
        except FileNotFoundError:
            raise UserError(f"phantom file {origin}: its truth {path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"phantom file {origin}: cannot read its truth {path}: {exc}"
                            ) from None


def lv_axis_of(regions: dict[str, Any]) -> LvTruth | None:
    """The axis of a shaped ``myocardium`` (with its ``blood_pool`` cavity); None without one."""
    myo = regions.get("myocardium")
    if myo is None or not hasattr(myo, "shape"):
        return None
    shape = myo.shape
    axis = np.asarray(shape.rotation)[2]
    centre = np.asarray(shape.centre_mm)
    cavity = regions.get("blood_pool")
    apex = (np.asarray(cavity.shape.centre_mm) + cavity.shape.semi_axes_mm[2] * axis
            if cavity is not None and hasattr(cavity, "shape")
            else centre + 0.8 * shape.semi_axes_mm[2] * axis)
    base = centre - 0.6 * shape.semi_axes_mm[2] * axis
    return LvTruth(tuple(float(v) for v in apex), tuple(float(v) for v in base),
                   (0.0, -1.0, 0.0), (3.0, 1.5 * max(shape.semi_axes_mm[:2])))
