"""The calculated (CT-less) PET attenuation on a population of virtual heads, against their own maps.

For each head of a population (``petdaq phantoms population --body head``): an emulated FDG scan
(bedside-brain by default, 20 MBq, 60 s) reconstructed as ``petdaq recon`` does, once with the
calculated map (the outline of the emission, water, a skull) and once with the phantom's own
map (``--mu-map truth``); each region's mean over the two (grey matter: the cortex and the deep
nuclei; white matter; cerebellum), on the voxels whose centre the region holds. And the
head/body rule: the same scan's calculated map when the run names no body part (a body: lungs
searched for), and how much lung it finds in the head (none is right).

A validation, not a scan's processing: it reads the phantom's truth, as tests do.

Run: ``python -m recon.validation.heads POPULATION [--n 20] [--activity-mbq 20] [--seconds 60]
[--seed 21] [--out heads.csv] [--body-rule-only]``; a table started again goes on where it
stopped.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from emulator import phantoms
from hw.scanner import Scanner, load_scanner
from infra.pool import available_cores
from recon.corrections.attenuation import HEAD, MU_WATER_PER_MM, HeadLayers, MuMap
from recon.pet.runimage import RunReconOptions, mu_map_of
from recon.validation.runs import (
    facts_of,
    header_of,
    image,
    patients,
    population_parser,
    region_means,
    scan,
    table,
)

GROUPS = {"grey": ("cortex", "brain", "thalamus_left", "thalamus_right", "caudate_left",
                   "caudate_right", "putamen_left", "putamen_right"),
          "white": ("white_matter_left", "white_matter_right"), "cerebellum": ("cerebellum",)}
#: The skull's regions a head of the population has a thickness for (``skull_<region>_mm``).
SKULL_REGIONS = ("frontal", "parietal", "temporal", "occipital")
POPULATION_CSV = "population.csv"


def lung_ml(mu: MuMap) -> float:
    """The lung a calculated map holds (mL; 0 for none)."""
    return float(mu.image.meta.get("lung_ml", 0.0)) if mu.image is not None else 0.0


def _bare_map(coinc: np.ndarray, scanner: Scanner, activity_mbq: float, seconds: float) -> Any:
    """The calculated map of a run that names no body part and no phantom."""
    return mu_map_of(coinc, header_of(scanner), facts_of(scanner, None, activity_mbq, seconds,
                                                         None), None, scanner,
                     RunReconOptions())


def body_rule(path: Path, scanner_name: str, activity_mbq: float, seconds: float, seed: int
              ) -> dict[str, float | str]:
    """The head/body rule alone: the lung the calculated map of a run that names no body part
    finds in the head (none is right)."""
    scanner = load_scanner(scanner_name)
    coinc = scan(scanner, str(path), activity_mbq, seconds, seed, available_cores())
    bare = _bare_map(coinc, scanner, activity_mbq, seconds)
    return {"head": path.name, "prompts": int(np.count_nonzero(coinc["delayed"] == 0)),
            "no_body_part_lung_ml": lung_ml(bare), "map": bare.description}


def check_head(path: Path, scanner_name: str, activity_mbq: float, seconds: float, seed: int
               ) -> dict[str, float | str]:
    """One head's row."""
    t0 = time.perf_counter()
    scanner = load_scanner(scanner_name)
    phantom = phantoms.get(str(path), scanner)
    coinc = scan(scanner, str(path), activity_mbq, seconds, seed, available_cores())
    facts = facts_of(scanner, str(path), activity_mbq, seconds, "HEAD")
    calc, truth = image(coinc, scanner, facts, "estimate"), image(coinc, scanner, facts, "truth")
    labels, names = phantom.label_map(calc.image.grid)
    a = region_means(calc.image.array, labels, names, GROUPS)
    b = region_means(truth.image.array, labels, names, GROUPS)
    bare = _bare_map(coinc, scanner, activity_mbq, seconds)
    row: dict[str, float | str] = {
        "head": phantom.name, "prompts": int(np.count_nonzero(coinc["delayed"] == 0))}
    row |= {f"{g}_calculated_over_truth": round(a[g] / b[g], 4) for g in GROUPS}
    row |= {"skull_map": calc.mu_map.description,
            "no_body_part_lung_ml": lung_ml(bare),
            "seconds": round(time.perf_counter() - t0, 1)}
    return row


def main(argv: list[str] | None = None) -> int:
    p = population_parser("recon.validation.heads", __doc__, "bedside-brain", 20.0, 60.0, 21, "heads.csv")
    p.add_argument("--body-rule-only", action="store_true",
                   help="the head/body rule alone (the calculated map takes at most 1 M "
                        "prompts: a few seconds of scan give it)")
    a = p.parse_args(argv)
    check = body_rule if a.body_rule_only else check_head
    rows = table(patients(a.population, a.n), "head", lambda folder, k: check(
        folder, a.scanner, a.activity_mbq, a.seconds, a.seed + k), a.out)
    if not a.body_rule_only:
        summary(rows)
        if (a.population / POPULATION_CSV).is_file() and len(rows) >= 3:
            by_layers(rows, a.population / POPULATION_CSV)
    lungs = np.array([float(r["no_body_part_lung_ml"]) for r in rows])
    print(f"no body part: lung found in {np.sum(lungs > 0)}/{lungs.size} heads (largest "
          f"{lungs.max():.0f} mL)")
    return 0


def excess_mm(params: dict[str, str], skull_mm: float, layers: HeadLayers = HEAD) -> float:
    """The head's layers' attenuation (one way: ``skull_mm`` of its skull at its density, its
    scalp and CSF, all water-equivalent matter) beyond ``layers``', in mm of their skull."""
    mine = (skull_mm * float(params["skull_density"]) + float(params["scalp_mm"])
            + float(params["csf_gap_mm"])) * MU_WATER_PER_MM
    theirs = (layers.skull_mm * layers.skull_mu_per_mm
              + (layers.scalp_mm + layers.csf_mm) * MU_WATER_PER_MM)
    return (mine - theirs) / layers.skull_mu_per_mm


def by_layers(rows: list[dict], population_csv: Path) -> None:
    """Each region's ratio against the head's layers' excess over the map's (grey and white
    matter: the mean of the skull's four regions; the cerebellum: the occipital bone)."""
    with population_csv.open(newline="") as fh:
        params = {r["name"]: r for r in csv.DictReader(fh)}
    heads = [params[r["head"]] for r in rows]
    mean_skull = [np.mean([float(p[f"skull_{k}_mm"]) for k in SKULL_REGIONS]) for p in heads]
    occipital = [float(p["skull_occipital_mm"]) for p in heads]
    for g, skull in (("grey", mean_skull), ("white", mean_skull), ("cerebellum", occipital)):
        e = np.array([excess_mm(p, t) for p, t in zip(heads, skull, strict=True)])
        v = np.array([float(r[f"{g}_calculated_over_truth"]) for r in rows])
        slope, at_zero = np.polyfit(e, v, 1)
        print(f"{g} against the layers' excess ({e.min():.1f} to {e.max():.1f} mm of the map's "
              f"skull): r {np.corrcoef(e, v)[0, 1]:.2f}, {100 * slope:.2f} % a mm, "
              f"{at_zero:.3f} at none")


def summary(rows: list[dict]) -> None:
    """Each region's ratio over the heads: mean, spread, range, and how many are within 5 %."""
    for g in GROUPS:
        v = np.array([float(r[f"{g}_calculated_over_truth"]) for r in rows])
        print(f"{g}: mean {v.mean():.4f}, SD {v.std(ddof=1) if v.size > 1 else 0:.4f}, range "
              f"{v.min():.4f}-{v.max():.4f}, within 5 %: {np.sum(np.abs(v - 1) <= 0.05)}/{v.size}")


if __name__ == "__main__":
    raise SystemExit(main())
