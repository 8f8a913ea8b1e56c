"""The learned mu-map on the emulated chain's cardiac scans of held-out virtual patients: its map
against the patient's own, and the 17 segments' values with each correction against those with
the patient's own map (a CT's).

For each torso of a population never used to train the model: an emulated Tc-99m scan on
spect-general (800 MBq, 60 s; its projections kept as ``<images>/<torso>_projections.npz``),
reconstructed as a SPECT run is with the learned map, the calculated map, none and the
phantom's own (each kept as ``<torso>_<map>.nii.gz``, the names
:mod:`recon.validation.normallimits` reads). On each image the polar map on the phantom's true
axis gives the 17 segments in % of their maximum; the table has, per correction, the mean
absolute difference from the own map's segments, their largest, and the mean bias of the
inferior (4, 10, 15) and anterior (1, 7, 13) walls; and the learned and calculated maps' mean
absolute error against the own map inside the body, as a share of its mean (NMAE), with the
learned map's NMAE when it reads the training's fast path's image of the same patient, and the
two paths' images compared region by region (how far the fast path stands from the emulated
chain).

A validation, not a scan's processing: it reads the phantom's truth, as tests do.

Run: ``python -m recon.validation.learnedmap POPULATION[:FIRST-LAST]... [--first 29] [--n 16]
[--model FILE] [--images DIR] [--out learnedmap.csv]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion

from emulator import phantoms
from hw.scanner import load_scanner
from infra.errors import UserError
from recon.learning import fastpath
from recon.outputs.export import read_nifti, write_nifti
from recon.spect.cardiac import phantom_axis
from recon.spect.osem import spect_osem
from recon.spect.reading import map_of
from recon.spect.runimage import peak_and_scatter
from recon.validation import spectruns
from recon.validation.runs import patients, table

#: The corrections compared with the phantom's own map, by their image names.
MAPS = ("learned", "estimate", "none")
INFERIOR, ANTERIOR = (4, 10, 15), (1, 7, 13)


def projections_of(folder: Path, scanner_name: str, images: Path, activity_mbq: float,
                   seconds: float, seed: int) -> np.ndarray:
    """The emulated scan's projections [window, head, view, row, column], kept in
    ``images``."""
    scanner = load_scanner(scanner_name)
    return spectruns.kept_scan(images / f"{folder.name}_projections.npz", scanner,
                               phantoms.get(str(folder), scanner), activity_mbq, seconds, seed)


def torso_row(folder: Path, scanner_name: str, images: Path, model: str | None,
              activity_mbq: float, seconds: float, seed: int) -> dict[str, float | str]:
    """One torso's row (see the module docstring)."""
    t0 = time.perf_counter()
    scanner = load_scanner(scanner_name)
    phantom = phantoms.get(str(folder), scanner)
    proj = projections_of(folder, scanner_name, images, activity_mbq, seconds, seed)
    got = {}
    for m in ("truth", *MAPS):
        path = images / f"{folder.name}_{m}.nii.gz"
        if m == "learned" or not path.is_file():
            write_nifti(spectruns.image(proj, scanner, phantom, m, "CHEST", model), path)
        got[m] = read_nifti(path)
    axis = phantom_axis(phantom)
    own = map_of(got["truth"], axis).percent
    truth = phantom.truth
    row: dict[str, float | str] = {
        "torso": folder.name, "sex": str(truth.parameters.get("sex", "")),
        "territory": truth.defect.territory if truth.defect else "none"}
    for m in MAPS:
        d = map_of(got[m], axis).percent - own
        row[f"{m}_mad"] = round(float(np.mean(np.abs(d))), 2)
        row[f"{m}_max"] = round(float(np.max(np.abs(d))), 2)
        row[f"{m}_inferior"] = round(float(np.mean(d[np.array(INFERIOR) - 1])), 2)
        row[f"{m}_anterior"] = round(float(np.mean(d[np.array(ANTERIOR) - 1])), 2)
        row[f"{m}_segments"] = " ".join(f"{v:.1f}" for v in d)
    row.update(map_errors(folder, scanner_name, proj, model))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def map_errors(folder: Path, scanner_name: str, proj: np.ndarray,
               model: str | None) -> dict[str, float]:
    """The learned and calculated maps' NMAE against the phantom's own inside the body."""
    from recon.grid import default_grid
    from recon.spect import learnedmap
    from recon.spect.mumap import estimate

    scanner = load_scanner(scanner_name)
    phantom = phantoms.get(str(folder), scanner)
    grid = default_grid(scanner)
    energy = float(np.mean(spectruns.windows_of(scanner).peak))
    peak, scatter = peak_and_scatter(proj, spectruns.windows_of(scanner))
    nac = spect_osem(peak, scanner, scatter, None, spectruns.OUTLINE_ITERATIONS,
                     spectruns.SUBSETS, grid, energy_kev=energy)
    own = phantom.mu_map(grid, energy)
    body = own > 0.1 * float(own.max())
    learned = learnedmap.predict(learnedmap.model_for(scanner.name, model), nac, energy)
    calculated = estimate(nac, energy, "CHEST")
    fast = fastpath.pair(folder, scanner, energy, np.random.default_rng(1))
    from_fast = learnedmap.predict(learnedmap.model_for(scanner.name, model),
                                   grid.image(fast.without_attenuation, "counts"), energy)
    scale = float(own[body].mean())
    errors = {f"{name}_mu_nmae": round(float(np.abs(m.image.array - own)[body].mean()) / scale, 4)
              for name, m in (("learned", learned), ("estimate", calculated),
                              ("learned_from_fast_path", from_fast))}
    return errors | fast_over_chain(fast.without_attenuation, nac.array, own)


def fast_over_chain(fast: np.ndarray, chain: np.ndarray, own: np.ndarray) -> dict[str, float]:
    """The fast path's image without correction over the emulated chain's, each as a share of
    its body's counts, in the body's outer 2 voxels (fat and skin), the lungs and the air."""
    body = own > 0
    regions = {"shell": body & ~binary_erosion(body, iterations=2),
               "lungs": body & (own < 0.5 * float(np.median(own[body]))), "air": ~body}
    f, c = fast / float(fast[body].sum()), chain / float(chain[body].sum())
    return {f"fast_over_chain_{k}": round(float(f[m].sum() / max(float(c[m].sum()), 1e-30)), 3)
            for k, m in regions.items()}


def summary(rows: list[dict]) -> list[str]:
    """Per correction: the segments' mean absolute difference and 95th percentile, and the
    walls' biases (men's inferior, women's anterior); the maps' NMAE."""
    lines = []
    for m in MAPS:
        diffs = np.array([[float(v) for v in str(r[f"{m}_segments"]).split()] for r in rows])
        men = [float(r[f"{m}_inferior"]) for r in rows if r["sex"] == "M"]
        women = [float(r[f"{m}_anterior"]) for r in rows if r["sex"] == "F"]
        lines.append(f"{m}: segments |diff| mean {np.abs(diffs).mean():.2f} %, 95th percentile "
                     f"{np.percentile(np.abs(diffs), 95):.2f} %; inferior bias (men, "
                     f"{len(men)}) {np.mean(men) if men else float('nan'):+.2f} %, anterior "
                     f"bias (women, {len(women)}) "
                     f"{np.mean(women) if women else float('nan'):+.2f} %")
    for m in ("learned", "estimate", "learned_from_fast_path"):
        v = np.array([float(r[f"{m}_mu_nmae"]) for r in rows])
        lines.append(f"{m} map NMAE: {v.mean():.3f} +/- {v.std():.3f}")
    ratios = {k: np.median([float(r[f"fast_over_chain_{k}"]) for r in rows])
              for k in ("shell", "lungs", "air")}
    lines.append("fast path over emulated chain (median): " + ", ".join(
        f"{k} {v:.2f}" for k, v in ratios.items()))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.validation.learnedmap",
                                description=__doc__.splitlines()[0])
    p.add_argument("population", nargs="+",
                   help="populations, POP or POP:FIRST-LAST (1-based, inclusive)")
    p.add_argument("--first", type=int, default=29, help="a bare POP's first patient (1-based)")
    p.add_argument("--n", type=int, default=16, help="a bare POP's patients")
    p.add_argument("--model", default=None, help="a .onnx model (default: the shipped one)")
    p.add_argument("--images", type=Path, default=Path("learned_images"))
    p.add_argument("--activity-mbq", type=float, default=800.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--out", type=Path, default=Path("learnedmap.csv"))
    a = p.parse_args(argv)
    try:
        chosen = held_out(a.population, a.first, a.n, a.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = {folder: seed for folder, seed in chosen}
    rows = table(list(seeds), "torso", lambda folder, k: torso_row(
        folder, "spect-general", a.images, a.model, a.activity_mbq, a.seconds,
        seeds[folder]), a.out)
    print("\n".join(summary(rows)))
    return 0


def held_out(specs: list[str], first: int, n: int, seed: int) -> list[tuple[Path, int]]:
    """The torsos (and each one's scan seed) that ``specs`` name: ``POP`` (its patients
    ``first`` to ``first + n - 1``) or ``POP:FIRST-LAST``; the k-th population's seeds start at
    ``seed + 1000 k``."""
    chosen: list[tuple[Path, int]] = []
    for k, spec in enumerate(specs):
        path, _, span = spec.partition(":")
        lo, hi = first, first + n - 1
        if span:
            try:
                lo, hi = (int(v) for v in span.split("-"))
            except ValueError:
                raise UserError(f"{spec}: give a population as POP or POP:FIRST-LAST") from None
        folders = patients(Path(path), hi) if Path(path).is_dir() else []
        if len(folders) < hi or lo < 1:
            raise UserError(f"{path} holds {len(folders)} patients; asked {lo}-{hi}")
        chosen += [(f, seed + 1000 * k + lo - 1 + j) for j, f in enumerate(folders[lo - 1:])]
    names = [f.name for f, _ in chosen]
    if len(set(names)) < len(names):
        raise UserError("two populations' torsos share a name; their images would too")
    return chosen


if __name__ == "__main__":
    raise SystemExit(main())
