"""Cardiac SPECT of a population of virtual torsos on the general-purpose camera: the ventricle's
axis found in the image, the perfusion defect read with and without attenuation correction, and
the lungs' search.

For each torso of a population (``petdaq phantoms population --body torso``) at stress: an
emulated Tc-99m scan (spect-general, 800 MBq, 120 s by default) reconstructed as a SPECT run is
(OSEM 4 x 6, TEW scatter) with the calculated map (the product's default), with the phantom's
own map (a CT's, validation) and with none. On the default image: the left ventricle's axis
found (:func:`recon.spect.lvaxis.find_lv_axis`) against the phantom's (its truth), in degrees and
mm; on each image, on the true axis, the polar map's segments under 70 % of its maximum (a
fixed threshold; :mod:`recon.validation.normallimits` scores them against normal limits)
against the defect's true segments (those it covers a fifth of or more), as false and missed
segments; and the lungs the PET search finds in the image without correction
(:func:`recon.corrections.lungs.lung_share`) against the true lungs' volume.

A validation, not a scan's processing: it reads the phantom's truth, as tests do.

Run: ``python -m recon.validation.torsos POPULATION [--n 20] [--activity-mbq 800]
[--seconds 120] [--seed 31] [--out torsos.csv] [--images DIR]``; a table started again goes on
where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from emulator import phantoms
from emulator.phantoms.volume import AIR_CUT, VoxelVolume
from hw.scanner import load_scanner
from recon.corrections import attenuation, lungs
from recon.outputs.export import write_nifti
from recon.spect.cardiac import FALLBACK_PERCENT, axis_report, phantom_axis, under
from recon.spect.lvaxis import find_lv_axis
from recon.spect.reading import map_of
from recon.validation import spectruns
from recon.validation.runs import patients, population_parser, table

#: A segment is the defect's when the defect covers at least this share of it.
TRUE_SHARE = 0.2


def check_torso(path: Path, scanner_name: str, activity_mbq: float, seconds: float, seed: int,
                images_dir: Path | None = None) -> dict[str, float | str]:
    """One torso's row; with ``images_dir``, its three images kept there as NIfTI
    (``<torso>_<map>.nii.gz``) for work on the readers without emulating again."""
    t0 = time.perf_counter()
    scanner = load_scanner(scanner_name)
    phantom = phantoms.get(str(path), scanner)
    proj, counts = spectruns.scan(scanner, phantom, "Tc-99m", activity_mbq, seconds, seed)
    images = {m: spectruns.image(proj, scanner, phantom, m, "CHEST")
              for m in ("estimate", "truth", "none")}
    if images_dir is not None:
        images_dir.mkdir(parents=True, exist_ok=True)
        for m, image in images.items():
            write_nifti(image, images_dir / f"{phantom.name}_{m}.nii.gz")
    lv = find_lv_axis(images["estimate"])
    found = axis_report(lv, "image", phantom)
    truth = phantom.truth
    true = sorted(k for k, share in (truth.defect.segments.items() if truth.defect else ())
                  if share >= TRUE_SHARE)
    row: dict[str, float | str] = {
        "torso": phantom.name, "sex": truth.parameters.get("sex", ""),
        "bmi": truth.parameters.get("bmi", ""), "photopeak": int(counts["photopeak"]),
        "axis_deg": found["angle_to_phantom_deg"], "apex_mm": found["apex_to_phantom_mm"],
        "base_mm": found["base_to_phantom_mm"],
        # the finder's cavity centre: its base lies 0.75 of the apex's distance beyond it
        "found_centre_in": organ_at(phantom.volume, (lv.base_mm + 0.75 * lv.apex_mm) / 1.75),
        "true_segments": " ".join(map(str, true))}
    axis = phantom_axis(phantom)
    for m, image in images.items():
        seen = under(map_of(image, axis), FALLBACK_PERCENT)
        row[f"{m}_false"] = len(set(seen) - set(true))
        row[f"{m}_missed"] = len(set(true) - set(seen))
    none = images["none"]
    body = attenuation.outline(none.array, none.grid.voxel_mm)
    share = lungs.lung_share(none.array, body, none.grid.voxel_mm)
    v = phantom.volume
    lung_labels = [k for k, n in v.label_names.items() if n.startswith("lung")]
    row["lungs_true_ml"] = round(float(np.isin(v.labels, lung_labels).sum()) * v.voxel_ml, 0)
    row["lungs_found_ml"] = round(lungs.volume_ml(share, none.grid.voxel_mm), 0)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def organ_at(volume: VoxelVolume, point_mm: np.ndarray) -> str:
    """The name of the region of ``volume`` that holds ``point_mm`` (``body`` where it is
    unnamed tissue, ``outside`` beyond the volume or in air)."""
    if volume.labels is not None:
        label = int(volume.values_at(volume.labels, point_mm)[0])
        if label in volume.label_names:
            return volume.label_names[label]
    return "body" if volume.values_at(volume.density, point_mm)[0] > AIR_CUT else "outside"


def summary(rows: list[dict]) -> None:
    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])

    for name in ("axis_deg", "apex_mm", "base_mm"):
        v = col(name)
        print(f"{name}: median {np.median(v):.1f}, 90th percentile {np.percentile(v, 90):.1f}, "
              f"largest {v.max():.1f}")
    for m in ("estimate", "truth", "none"):
        print(f"{m}: false segments {col(f'{m}_false').sum():.0f} over {len(rows)} torsos "
              f"(per torso {col(f'{m}_false').mean():.2f}), missed {col(f'{m}_missed').sum():.0f}")
    found, true = col("lungs_found_ml"), col("lungs_true_ml")
    print(f"lungs found in {np.sum(found > 0)}/{len(rows)}; found / true median "
          f"{np.median(found / true):.2f}")


def main(argv: list[str] | None = None) -> int:
    p = population_parser("recon.validation.torsos", __doc__, "spect-general", 800.0, 120.0, 31, "torsos.csv")
    p.add_argument("--images", type=Path, default=None,
                   help="a folder to keep each torso's three images in (NIfTI)")
    a = p.parse_args(argv)
    rows = table(patients(a.population, a.n), "torso", lambda folder, k: check_torso(
        folder, a.scanner, a.activity_mbq, a.seconds, a.seed + k, a.images), a.out)
    summary(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
