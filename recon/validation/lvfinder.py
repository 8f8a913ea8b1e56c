"""The left ventricle's axis finder on the images a torsos' validation kept, against each torso's truth.

``python -m recon.validation.torsos POPULATION --images DIR`` keeps every torso's three images
(``<torso>_<map>.nii.gz``: the calculated map, the true map, none); this runs
:func:`recon.spect.lvaxis.find_lv_axis` on them again without emulating, so a change to the
finder is measured on the same patients in minutes. Per torso and map: the angle to the
truth's axis (degrees) and the apex's distance (mm); a torso is found when both are within
20 degrees and 20 mm.

A validation, not a scan's processing: it reads the phantoms' ``truth.json``, as tests do.

Run: ``python -m recon.validation.lvfinder IMAGES POPULATION [--maps estimate,truth,none]
[--out lvfinder.csv]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emulator.phantoms.truth import PhantomTruth
from recon.outputs.export import read_nifti
from recon.spect.cardiac import axis_errors
from recon.spect.lvaxis import LvAxis, find_lv_axis
from recon.validation.runs import write_rows

#: A torso's axis is found when it is within these of the truth's; the summary also counts
#: the axes within :data:`CLOSE_DEG` (the cardiac issue's mark for a report's axis).
FOUND_DEG, FOUND_MM, CLOSE_DEG = 20.0, 20.0, 8.0


def errors(lv: LvAxis, truth: PhantomTruth) -> tuple[float, float]:
    """(angle between the axes in degrees, apex distance in mm) of ``lv`` against ``truth``."""
    return axis_errors(lv, np.asarray(truth.lv_axis.apex_mm), np.asarray(truth.lv_axis.base_mm))


def rows(images: Path, population: Path, maps: list[str]) -> list[dict[str, float | str]]:
    """One row per kept image of ``maps`` whose torso is in ``population``."""
    out: list[dict[str, float | str]] = []
    for m in maps:
        for path in sorted(images.glob(f"*_{m}.nii.gz")):
            torso = path.name[: -len(f"_{m}.nii.gz")]
            folder = population / torso
            if not (folder / "truth.json").is_file():
                continue
            t0 = time.perf_counter()
            angle, apex = errors(find_lv_axis(read_nifti(path)),
                                 PhantomTruth.read(folder / "truth.json", str(folder)))
            out.append({"torso": torso, "map": m, "axis_deg": round(angle, 1),
                        "apex_mm": round(apex, 1),
                        "found": int(angle <= FOUND_DEG and apex <= FOUND_MM),
                        "seconds": round(time.perf_counter() - t0, 1)})
            print(", ".join(f"{k} {v}" for k, v in out[-1].items()), flush=True)
    return out


def summary(table: list[dict[str, float | str]]) -> list[str]:
    """Per map: torsos found, those within :data:`CLOSE_DEG`, median and largest angle and
    apex distance."""
    lines = []
    for m in dict.fromkeys(r["map"] for r in table):
        r = [x for x in table if x["map"] == m]
        deg, mm = (np.array([float(x[k]) for x in r]) for k in ("axis_deg", "apex_mm"))
        lines.append(f"{m}: found {sum(int(x['found']) for x in r)}/{len(r)}; within "
                     f"{CLOSE_DEG:g} deg {int((deg <= CLOSE_DEG).sum())}; angle median "
                     f"{np.median(deg):.1f}, largest {deg.max():.1f} deg; apex median "
                     f"{np.median(mm):.1f}, largest {mm.max():.1f} mm")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.validation.lvfinder",
                                description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path, help="the folder torsos --images wrote")
    p.add_argument("population", type=Path, help="the population's folder (truth.json)")
    p.add_argument("--maps", default="estimate,truth,none")
    p.add_argument("--out", type=Path, default=Path("lvfinder.csv"))
    a = p.parse_args(argv)
    table = rows(a.images, a.population, a.maps.split(","))
    if not table:
        raise SystemExit(f"no kept images of {a.maps} with a torso of {a.population} in "
                         f"{a.images}")
    write_rows(a.out, table)
    print("\n".join(summary(table)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
