"""The cardiac figures of an image of the cardiac phantom: the 17-segment polar map, the
perfusion defect's segments, extent and contrast, and the inferior-to-lateral wall ratio.

The left ventricle's axis is found in the image (:mod:`recon.spect.lvaxis`) or given by hand; the
phantom's own axis (apex at the cavity's apical end, base 0.6 of the myocardium's half-length
behind its centre, anterior = -y in LPS) measures its error. The defect's true segments are
those it touches: under :data:`TOUCHED_PERCENT` in the polar map of the
phantom's own activity, sampled the same way. The image's abnormal segments are those under
:data:`ABNORMAL_PERCENT` of its maximum: a fixed threshold, which also flags the thin apex of a
normal ventricle (partial volume); clinical packages compare against a normal database instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emulator.phantoms.truth import lv_axis_of
from infra.errors import UserError
from recon.grid import Image
from recon.spect.lvaxis import LvAxis, find_lv_axis
from recon.spect.polarmap import SEGMENT_NAMES, TERRITORIES, PolarMap, polar_map

#: A segment under this percent of the map's maximum is abnormal (a perfusion defect).
ABNORMAL_PERCENT = 70.0
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


def map_of(image: Image, lv: LvAxis) -> PolarMap:
    return polar_map(image, lv.apex_mm, lv.base_mm, lv.anterior, radius_mm=lv.radius_mm)


def polar_map_report(pm: PolarMap, folder: Path | None) -> dict[str, Any]:
    """The polar map's segments (percent of the maximum) and territories, and its PNG in
    ``folder`` when given."""
    result: dict[str, Any] = {
        "segments": {f"{i + 1} {n}": float(v)
                     for i, (n, v) in enumerate(zip(SEGMENT_NAMES, pm.percent, strict=True))},
        "territories": pm.territory_means()}
    if folder is not None:
        result["png"] = str(pm.write_png(Path(folder) / "polar_map.png"))
    return result


def under(pm: PolarMap, percent: float) -> list[int]:
    """The segments (1-17) under ``percent`` of the map's maximum."""
    return [i + 1 for i, p in enumerate(pm.percent) if p < percent]


def wall_ratio(pm: PolarMap) -> float:
    """Mean of the inferior segments over the mean of the lateral ones."""
    seg = pm.segments
    return float(np.mean([seg[s - 1] for s in INFERIOR]) / np.mean([seg[s - 1] for s in LATERAL]))


def territory_of(segment: int) -> str:
    return next(name for name, segs in TERRITORIES.items() if segment in segs)


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


def cardiac_figures(image: Image, phantom: Any, without_ac: Image | None = None,
                    lv: LvAxis | None = None, folder: Path | None = None) -> dict[str, Any]:
    """The defect (true and measured segments, extent, contrast) and the inferior-to-lateral
    ratio of ``image`` (and of ``without_ac``, the same data without attenuation correction),
    on the ventricle's axis ``lv`` (None: found in the image, :func:`recon.spect.lvaxis.find_lv_axis`).
    The defect's true segments come from the phantom's own activity on the phantom's axis.
    ``folder``: where ``polar_map.png`` goes."""
    source = "manual" if lv is not None else "image"
    lv = lv if lv is not None else find_lv_axis(image)
    measured = map_of(image, lv)
    truth_axis = phantom_axis(phantom)
    truth = map_of(image.grid.image(phantom.activity_map(image.grid), "truth"), truth_axis)
    true_defect, found = under(truth, TOUCHED_PERCENT), under(measured, ABNORMAL_PERCENT)
    normal = [s for s in range(1, 18) if s not in true_defect]
    seg = measured.segments
    contrast = (1.0 - float(np.mean([seg[s - 1] for s in true_defect]))
                / float(np.mean([seg[s - 1] for s in normal]))) if true_defect else 0.0
    ratios = {"with_attenuation_correction": wall_ratio(measured),
              "phantom": wall_ratio(truth)}
    if without_ac is not None:
        ratios["without_attenuation_correction"] = wall_ratio(map_of(without_ac, lv))
    return {"lv_axis": axis_report(lv, source, phantom),
            "polar_map": polar_map_report(measured, folder), "defect": {"true_segments": true_defect,
                       "true_percent": [round(float(v), 1) for v in truth.percent],
                       "lowest_segment": int(np.argmin(seg)) + 1,
                       "measured_segments": found,
                       "territories": sorted({territory_of(s) for s in found}),
                       "extent_percent_of_segments": 100.0 * len(found) / 17,
                       "contrast": contrast,
                       "abnormal_below_percent": ABNORMAL_PERCENT},
            "inferior_to_lateral": ratios}


def write_segments_csv(pm_percent: dict[str, float], path: Path) -> Path:
    """``polar_map.csv``: segment number, name, coronary territory, percent of the maximum."""
    from infra.atomic import replacing

    lines = ["segment,name,territory,percent"]
    for i, name in enumerate(SEGMENT_NAMES):
        lines.append(f"{i + 1},{name},{territory_of(i + 1)},"
                     f"{pm_percent[f'{i + 1} {name}']:.1f}")
    with replacing(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
