"""A cardiac SPECT image read as clinical packages read it: the left ventricle's axis, the
17-segment polar map, and its scores against the normal limits of the scan's camera, attenuation
correction and patient's sex.

The limits are the product's for the camera (:func:`recon.spect.normals.shipped`) or a site's own
file; a camera without limits gets the polar map and no scores, and says why. A study without a
sex is scored against both sexes' limits (:func:`recon.spect.scores.score_by_sex`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UserError
from recon.grid import Image
from recon.spect import normals, scores
from recon.spect.lvaxis import LvAxis, find_lv_axis
from recon.spect.polarmap import SEGMENT_NAMES, TERRITORIES, PolarMap, polar_map

#: What a reading without limits says in place of its scores.
NO_LIMITS = ("not scored: no normal limits for {camera} with {correction} attenuation correction "
             "(`petdaq cardiac normals` builds them)")


@dataclass(frozen=True)
class CardiacReading:
    """The axis (and where it came from), the polar map, and its scores (None without limits,
    ``note`` then says why)."""

    lv: LvAxis
    axis_source: str
    polar: PolarMap
    correction: str
    scores: dict[str, Any] | None
    note: str | None = None

    @property
    def abnormal_segments(self) -> list[int]:
        return list(self.scores["abnormal_segments"]) if self.scores else []

    @property
    def territories(self) -> list[str]:
        return list(self.scores["abnormal_territories"]) if self.scores else []

    def summary(self) -> str:
        """The reading in one line: the correction, the limits, SSS, TPD and territories."""
        if not self.scores:
            return str(self.note)
        s = self.scores
        if "by_sex" in s:
            parts = [f"{sex}: SSS {x['summed_score']}, TPD {x['tpd_percent']:.1f} %"
                     for sex, x in s["by_sex"].items()]
            called = ", ".join(s["abnormal_territories"]) or "none"
            maybe = ", ".join(s["equivocal_territories"]) or "none"
            return (f"{self.correction} AC, no sex: {'; '.join(parts)}; abnormal {called}, "
                    f"equivocal {maybe}")
        called = ", ".join(s["abnormal_territories"]) or "none"
        return (f"{self.correction} AC, {s['sex']}: SSS {s['summed_score']}, TPD "
                f"{s['tpd_percent']:.1f} %, abnormal territories {called}")

    def segment_scores(self) -> dict[str, list[int]]:
        """Each segment's score by the column it goes in: ``score`` (the patient's sex's limits)
        or ``score_F`` and ``score_M`` (a study without a sex); empty without limits."""
        if not self.scores:
            return {}
        if "by_sex" in self.scores:
            return {f"score_{sex}": list(x["segment_scores"])
                    for sex, x in self.scores["by_sex"].items()}
        return {"score": list(self.scores["segment_scores"])}

    def write(self, folder: Path) -> list[Path]:
        """``polar_map.png`` (the bull's-eye) and ``polar_map.csv`` (segment, name, territory,
        percent of the maximum, and its scores) in ``folder``."""
        from infra.atomic import replacing

        columns = self.segment_scores()
        lines = [",".join(["segment", "name", "territory", "percent", *columns])]
        for i, name in enumerate(SEGMENT_NAMES):
            lines.append(",".join([str(i + 1), name, territory_of(i + 1),
                                   f"{self.polar.percent[i]:.1f}",
                                   *(str(v[i]) for v in columns.values())]))
        path = Path(folder) / "polar_map.csv"
        with replacing(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        return [self.polar.write_png(Path(folder) / "polar_map.png"), path]

    def report(self) -> dict[str, Any]:
        """The report's ``polar_map`` (percent of the maximum per segment, territories' means),
        ``lv_axis`` (where it came from, apex and base in mm) and ``perfusion`` (the scores, or
        why there are none) entries."""
        polar = segments_report(self.polar)
        perfusion = dict(self.scores) if self.scores else {"note": self.note}
        return {"polar_map": polar, "lv_axis": {"source": self.axis_source, **self.lv.to_json()},
                "perfusion": {"attenuation_correction": self.correction, **perfusion}}


def segments_report(pm: PolarMap) -> dict[str, Any]:
    """A polar map's segments (percent of the maximum) and territories' means, for a report."""
    return {"segments": {f"{i + 1} {n}": float(v)
                         for i, (n, v) in enumerate(zip(SEGMENT_NAMES, pm.percent, strict=True))},
            "territories": pm.territory_means()}


def territory_of(segment: int) -> str:
    return next(name for name, segs in TERRITORIES.items() if segment in segs)


def map_of(image: Image, lv: LvAxis) -> PolarMap:
    return polar_map(image, lv.apex_mm, lv.base_mm, lv.anterior, radius_mm=lv.radius_mm)


def limits_for(camera: str, correction: str, samples: int,
               file: str | Path | None = None) -> dict[str, normals.NormalLimits] | None:
    """Each sex's limits for the scan (``file``: a site's database, else the product's), or
    None where the product ships none for ``camera`` and ``correction``."""
    if file is not None:
        return normals.choose(normals.read(file), camera, correction, samples)
    have = [x for x in normals.shipped(camera) if x.correction == correction]
    return normals.choose(have, camera, correction, samples) if have else None


def read_heart(image: Image, camera: str, correction: str, sex: str | None,
               lv: LvAxis | None = None, limits_file: str | Path | None = None) -> CardiacReading:
    """Read the heart in ``image`` (``lv``: the axis given by hand; None: found in the image)."""
    if sex is not None and sex not in normals.SEXES:
        sex = None  # "O": scored against both, as without a sex
    source = "manual" if lv is not None else "image"
    lv = lv if lv is not None else find_lv_axis(image)
    pm = map_of(image, lv)
    limits = limits_for(camera, correction, pm.samples.size, limits_file)
    if limits is None:
        return CardiacReading(lv, source, pm, correction, None,
                              NO_LIMITS.format(camera=camera, correction=correction))
    if sex is not None and sex not in limits:
        raise UserError(f"the normal limits of {camera} ({correction}) have no {sex} database")
    return CardiacReading(lv, source, pm, correction, scores.score_by_sex(pm, limits, sex))


def correction_of(image: Image) -> str:
    """The correction a reconstructed image's limits are of (its meta's ``attenuation_kind``)."""
    kind = image.meta.get("attenuation_kind", "none" if not image.meta.get("attenuation")
                          else "calculated")
    return normals.CORRECTION_OF_METHOD.get(kind, "measured")

