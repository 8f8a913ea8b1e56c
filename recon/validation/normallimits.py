"""Normal limits built from a population's normal torsos, and the scores they give, each torso
scored against limits built without it (leave one out).

Reads the images a torsos' validation kept (``python -m recon.validation.torsos POPULATION
--images DIR``: ``<torso>_<map>.nii.gz`` for the calculated map, the phantom's own and none) and
each torso's ``truth.json`` (sex, defect). Every image is sampled on the axis the product finds
in it (:func:`recon.spect.lvaxis.find_lv_axis`), as a scan is; where that axis is more than 20
degrees or 20 mm off the truth's, on the truth's instead, as a technologist mends a wrong axis
(``axis_ok`` 0 in the table); those stay out of the limits (the truth's axis is not drawn the
way the finder draws one: its apex lies 10-15 mm further). Per torso and map: the summed score,
TPD, the territories called, and for a defect (the truth's territory) whether its territory was
called and whether another was, and per map how well TPD ranks the defects over the normals
(the area under its ROC curve); with ``--write FILE`` the limits of all normal torsos, per map
and sex, as the product's database (``recon/spect/limits/<camera>.json``; the file's limits of
other corrections are kept). With ``--held-out IMAGES --held-out-population POP``, the torsos of
another population are scored against the limits of all of these normals instead (torsos a
model or the limits never saw).

A validation, not a scan's processing: it reads the phantoms' truth, as tests do.

Run: ``python -m recon.validation.normallimits IMAGES... --population POP [--camera
spect-general] [--maps estimate,truth,none] [--threshold-sd 3] [--out scores.csv] [--write
limits.json] [--held-out IMAGES --held-out-population POP]``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.phantoms.truth import PhantomTruth
from recon.outputs.export import read_nifti
from recon.spect import normals, scores
from recon.spect.cardiac import axis_errors
from recon.spect.lvaxis import LvAxis, find_lv_axis
from recon.spect.polarmap import PolarMap
from recon.spect.reading import map_of
from recon.validation.runs import write_rows

#: The kept images' map names and the correction their limits are of (learned:
#: python -m recon.validation.learnedmap keeps those).
MAPS = {"estimate": "calculated", "truth": "measured", "none": "none", "learned": "learned"}
FOUND_DEG, FOUND_MM = 20.0, 20.0


@dataclass(frozen=True)
class Sampled:
    """One torso's image on its found axis."""

    torso: str
    sex: str
    territory: str | None
    severity: float
    extent_percent: float
    polar: PolarMap
    axis_ok: bool


def sample(images: list[Path], population: Path, m: str) -> list[Sampled]:
    """Every kept image of map ``m`` with a torso in ``population``, on its found axis."""
    out = []
    paths = {p.name: p for d in images for p in sorted(d.glob(f"*_{m}.nii.gz"))}
    for name, path in sorted(paths.items()):
        torso = name[: -len(f"_{m}.nii.gz")]
        folder = population / torso
        if not (folder / "truth.json").is_file():
            continue
        truth = PhantomTruth.read(folder / "truth.json", str(folder))
        pm, angle, apex = _sampled(path, truth)
        d = truth.defect
        out.append(Sampled(torso, str(truth.parameters["sex"]), d.territory if d else None,
                           d.severity if d else 0.0, d.extent_percent if d else 0.0,
                           pm, angle <= FOUND_DEG and apex <= FOUND_MM))
        print(f"{m} {torso}: axis {angle:.1f} deg, apex {apex:.1f} mm", flush=True)
    return out


def _sampled(path: Path, truth: PhantomTruth) -> tuple[PolarMap, float, float]:
    """The image's polar map on its found axis, or on the truth's where the found one is more
    than 20 degrees or 20 mm off (as a technologist mends a wrong axis), and the found axis'
    errors (kept beside the image as ``<image>.polar.npz``: the finder takes seconds)."""
    kept = path.with_name(path.name.replace(".nii.gz", ".polar.npz"))
    if kept.is_file() and kept.stat().st_mtime >= path.stat().st_mtime:
        with np.load(kept) as z:
            return (PolarMap(z["segments"], z["samples"], z["sample_segments"]),
                    float(z["angle"]), float(z["apex"]))
    image = read_nifti(path)
    lv = find_lv_axis(image)
    angle, apex = axis_errors(lv, np.asarray(truth.lv_axis.apex_mm),
                              np.asarray(truth.lv_axis.base_mm))
    if not (angle <= FOUND_DEG and apex <= FOUND_MM):
        t = truth.lv_axis
        lv = LvAxis(np.asarray(t.apex_mm), np.asarray(t.base_mm), np.asarray(t.anterior),
                    lv.radius_mm)
    pm = map_of(image, lv)
    np.savez(kept, segments=pm.segments, samples=pm.samples, sample_segments=pm.sample_segments,
             angle=angle, apex=apex)
    return pm, angle, apex


def limits_of(torsos: list[Sampled], camera: str, correction: str,
              leave_out: str | None = None) -> dict[str, normals.NormalLimits]:
    """Each sex's limits of the normal torsos whose axis was found, without ``leave_out``."""
    return {sex: normals.build([t.polar for t in torsos if t.territory is None and t.axis_ok
                                and t.sex == sex and t.torso != leave_out],
                               camera, correction, sex) for sex in normals.SEXES}


def rows(torsos: list[Sampled], camera: str, m: str,
         threshold_sd: float = scores.THRESHOLD_SD,
         limits: dict[str, normals.NormalLimits] | None = None) -> list[dict[str, float | str]]:
    """Each torso scored against its sex's limits built without it (or against ``limits``)."""
    out = []
    for t in torsos:
        own = limits or limits_of(torsos, camera, MAPS[m], t.torso)
        s = scores.score(t.polar, own[t.sex], threshold_sd)
        called = set(s.territories)
        row: dict[str, float | str] = {
            "torso": t.torso, "map": m, "sex": t.sex, "territory": t.territory or "none",
            "severity": round(t.severity, 2), "extent_percent": round(t.extent_percent, 1),
            "axis_ok": int(t.axis_ok), "sss": s.summed_score, "tpd_percent": round(s.tpd_percent, 1),
            "called": " ".join(sorted(called)) or "none",
            "right": int(t.territory in called) if t.territory else "",
            "other": int(bool(called - {t.territory}))}
        out.append(row)
    return out


def summary(table: list[dict[str, float | str]]) -> list[str]:
    """Per map: normals without a called territory; defects of 10 % or more at 40 % or more
    with their territory called and with no other called; how well TPD ranks the defects over
    the normals (the area under its ROC curve, all defects and the large ones)."""
    lines = []
    for m in dict.fromkeys(r["map"] for r in table):
        r = [x for x in table if x["map"] == m]
        normal = [x for x in r if x["territory"] == "none"]
        defects = [x for x in r if x["territory"] != "none"]
        big = [x for x in defects if float(x["severity"]) >= 0.4
               and float(x["extent_percent"]) >= 10.0]
        tpd = [float(x["tpd_percent"]) for x in normal]
        lines.append(
            f"{m}: normal read normal {sum(x['called'] == 'none' for x in normal)}/{len(normal)}; "
            f"defects >= 10 % at >= 40 %: right territory {sum(int(x['right']) for x in big)}"
            f"/{len(big)}, no other {sum(1 - int(x['other']) for x in big)}/{len(big)}; "
            f"TPD's AUC {roc_auc([float(x['tpd_percent']) for x in defects], tpd):.2f} "
            f"(large defects {roc_auc([float(x['tpd_percent']) for x in big], tpd):.2f})")
    return lines


def roc_auc(positive: list[float], negative: list[float]) -> float:
    """The area under the ROC curve of a score that should read higher in ``positive``: the
    chance a positive outscores a negative, ties counting half (NaN without both)."""
    p, n = np.asarray(positive, float)[:, None], np.asarray(negative, float)[None, :]
    if p.size == 0 or n.size == 0:
        return float("nan")
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def spread(torsos: list[Sampled], m: str) -> str:
    """The normals' spread: per sex, the median over segments of their standard deviation
    (percentage points) and how many normals."""
    parts = []
    for sex in normals.SEXES:
        seg = np.stack([t.polar.percent for t in torsos
                        if t.territory is None and t.axis_ok and t.sex == sex])
        parts.append(f"{sex} {np.median(seg.std(axis=0, ddof=1)):.1f} points (n={len(seg)})")
    return f"{m}: the normals' spread per segment, median: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.validation.normallimits",
                                description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path, nargs="+", help="folders torsos --images wrote")
    p.add_argument("--population", type=Path, required=True,
                   help="the population's folder (truth.json)")
    p.add_argument("--camera", default="spect-general")
    p.add_argument("--maps", default="estimate,truth,none")
    p.add_argument("--out", type=Path, default=Path("normal_scores.csv"))
    p.add_argument("--threshold-sd", type=float, default=scores.THRESHOLD_SD,
                   help="score with the lower limit this many spreads under the normal mean "
                        f"(default: the product's, {scores.THRESHOLD_SD:g})")
    p.add_argument("--write", type=Path, default=None,
                   help="write every normal torso's limits here (the product's database; its "
                        "limits of other corrections are kept)")
    p.add_argument("--held-out", type=Path, nargs="+", default=None,
                   help="score these folders' torsos against all of the normals' limits")
    p.add_argument("--held-out-population", type=Path, default=None)
    a = p.parse_args(argv)
    if (a.held_out is None) != (a.held_out_population is None):
        p.error("--held-out and --held-out-population go together")
    table, built, spreads = [], [], []
    for m in a.maps.split(","):
        torsos = sample(a.images, a.population, m)
        limits = limits_of(torsos, a.camera, MAPS[m])
        if a.held_out is not None:
            table += rows(sample(a.held_out, a.held_out_population, m), a.camera, m,
                          a.threshold_sd, limits)
        else:
            table += rows(torsos, a.camera, m, a.threshold_sd)
        built += limits.values()
        spreads.append(spread(torsos, m))
        write_rows(a.out, table)
    print("\n".join(summary(table) + spreads))
    if a.write is not None:
        print(f"wrote {normals.write(a.write, merged(a.write, built))}")
    return 0


def merged(path: Path, built: list[normals.NormalLimits]) -> list[normals.NormalLimits]:
    """``built`` and the database ``path``'s limits of the corrections and sexes it does not
    replace (none when there is no such file yet)."""
    new = {(x.camera, x.correction, x.sex) for x in built}
    old = normals.read(path) if path.is_file() else []
    return [x for x in old if (x.camera, x.correction, x.sex) not in new] + built


if __name__ == "__main__":
    raise SystemExit(main())
