"""The validation figures of a cardiac image of a phantom with a heart: the axis found against
the phantom's, the perfusion defect's true segments against those the reading scores abnormal,
its contrast, and the inferior-to-lateral wall ratio with and without attenuation correction.

The phantom's own axis (apex at the cavity's apical end, base 0.6 of the myocardium's
half-length behind its centre, anterior = -y in LPS) measures the found axis' error. The
defect's true segments are those it touches: under :data:`TOUCHED_PERCENT` in the polar map of
the phantom's own activity, sampled the same way. The image's abnormal segments are those its
reading scores 1 or more against the normal limits (:mod:`recon.spect.reading`); on a camera
without limits, those under :data:`FALLBACK_PERCENT` of the maximum, and the report says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.phantoms.truth import lv_axis_of
from infra.errors import UserError
from recon.grid import Image
from recon.spect.lvaxis import LvAxis
from recon.spect.polarmap import PolarMap
from recon.spect.reading import CardiacReading, map_of, territory_of

#: Without normal limits for the camera, a segment under this percent of the map's maximum is
#: called abnormal (a fixed threshold: it also flags the thin apex of a normal ventricle).
FALLBACK_PERCENT = 70.0
#: A segment of the phantom's own map under this percent is touched by its defect.
TOUCHED_PERCENT = 95.0
INFERIOR, LATERAL = (4, 10, 15), (5, 6, 11, 12, 16)


def phantom_axis(phantom: Any) -> LvAxis:
    """The phantom's true axis: its truth's (a phantom file's ``truth.json``), else that of
    its shaped ``myocardium`` (with its ``blood_pool`` cavity,
    :func:`emulator.phantoms.truth.lv_axis_of`)."""
    truth = phantom.truth.lv_axis if phantom.truth is not None else None
    truth = truth or lv_axis_of(phantom.regions())
    if truth is None:
        raise UserError(f"phantom '{phantom.name}' has no left ventricle's axis: neither a "
                        "shaped myocardium nor a truth.json with lv_axis")
    return LvAxis(np.asarray(truth.apex_mm), np.asarray(truth.base_mm),
                  np.asarray(truth.anterior), tuple(truth.radius_mm))


def under(pm: PolarMap, percent: float) -> list[int]:
    """The segments (1-17) under ``percent`` of the map's maximum."""
    return [i + 1 for i, p in enumerate(pm.percent) if p < percent]


def wall_ratio(pm: PolarMap) -> float:
    """Mean of the inferior segments over the mean of the lateral ones."""
    seg = pm.segments
    return float(np.mean([seg[s - 1] for s in INFERIOR]) / np.mean([seg[s - 1] for s in LATERAL]))


def axis_report(lv: LvAxis, source: str, phantom: Any | None) -> dict[str, Any]:
    """The axis used, where it came from, and with a phantom its error against the phantom's."""
    out: dict[str, Any] = {"source": source, **lv.to_json()}
    if phantom is not None:
        true = phantom_axis(phantom)
        angle, apex = axis_errors(lv, true.apex_mm, true.base_mm)
        out |= {"angle_to_phantom_deg": round(angle, 1), "apex_to_phantom_mm": round(apex, 1),
                "base_to_phantom_mm": round(float(np.linalg.norm(lv.base_mm - true.base_mm)), 1)}
    return out


def axis_errors(lv: LvAxis, apex_mm: np.ndarray, base_mm: np.ndarray) -> tuple[float, float]:
    """(angle between ``lv`` and the axis base->apex in degrees, apex distance in mm)."""
    u = (lv.apex_mm - lv.base_mm) / np.linalg.norm(lv.apex_mm - lv.base_mm)
    v = (apex_mm - base_mm) / np.linalg.norm(apex_mm - base_mm)
    return (float(np.degrees(np.arccos(np.clip(u @ v, -1.0, 1.0)))),
            float(np.linalg.norm(lv.apex_mm - apex_mm)))


def cardiac_figures(image: Image, phantom: Any, reading: CardiacReading,
                    without_ac: Image | None = None) -> dict[str, Any]:
    """The defect (true and measured segments, extent, contrast) and the inferior-to-lateral
    ratio of ``image`` as ``reading`` read it (and of ``without_ac``, the same data without
    attenuation correction). The defect's true segments come from the phantom's own activity
    on the phantom's axis."""
    lv, measured = reading.lv, reading.polar
    truth = map_of(image.grid.image(phantom.activity_map(image.grid), "truth"),
                   phantom_axis(phantom))
    true_defect = under(truth, TOUCHED_PERCENT)
    if reading.scores is not None:
        found, rule = reading.abnormal_segments, f"scored against normal limits ({reading.correction})"
    else:
        found = under(measured, FALLBACK_PERCENT)
        rule = f"under {FALLBACK_PERCENT:.0f} % of the maximum: {reading.note}"
    normal = [s for s in range(1, 18) if s not in true_defect]
    seg = measured.segments
    contrast = (1.0 - float(np.mean([seg[s - 1] for s in true_defect]))
                / float(np.mean([seg[s - 1] for s in normal]))) if true_defect else 0.0
    ratios = {"with_attenuation_correction": wall_ratio(measured),
              "phantom": wall_ratio(truth)}
    if without_ac is not None:
        ratios["without_attenuation_correction"] = wall_ratio(map_of(without_ac, lv))
    return {"lv_axis": axis_report(lv, reading.axis_source, phantom),
            "defect": {"true_segments": true_defect,
                       "true_percent": [round(float(v), 1) for v in truth.percent],
                       "lowest_segment": int(np.argmin(seg)) + 1,
                       "measured_segments": found,
                       "territories": sorted({territory_of(s) for s in found}),
                       "extent_percent_of_segments": 100.0 * len(found) / 17,
                       "contrast": contrast, "abnormal_by": rule},
            "inferior_to_lateral": ratios}
