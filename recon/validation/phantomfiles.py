"""A built-in phantom written as a voxel phantom file emulates as the built-in one does.

The NEMA image-quality phantom (PET, bedside-brain, F-18) and the cardiac torso (SPECT,
spect-general, Tc-99m) are written as voxel files (``petdaq phantoms write``, 2 mm voxels) and
emulated from them and from the built-in shapes on the same scan:

- counts, with the emulator's truth: PET singles, prompts, trues, scatters, randoms and the
  scatter fraction (one second, the count-rate study's sort); SPECT singles, photopeak counts
  and the photopeak's scatter fraction;
- images: each region's mean (the built-in phantom's regions, on the voxels whose centre each
  holds) in the image of the file's scan over the built-in's (PET: ``petdaq recon`` with the
  phantom's own mu-map; SPECT: OSEM with its own map), beside the same ratio for the built-in
  scanned again with another seed: the noise the two scans' comparison has.

Run: ``python -m recon.validation.phantomfiles [--pet-s 20] [--spect-s 60] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from emulator import phantoms
from emulator.countrate import measure
from emulator.phantoms.io.writer import write_voxels
from hw.scanner import load_scanner
from infra.pool import available_cores
from recon.validation import runs, spectruns

PET = ("bedside-brain", "nema-iq", 20.0)
SPECT = ("spect-general", "cardiac", 400.0)
COUNTS = ("singles_cps", "prompts_cps", "trues_cps", "scatters_cps", "randoms_cps",
          "scatter_fraction")


def _means(image: Any, phantom: Any) -> dict[str, float]:
    labels, names = phantom.label_map(image.grid)
    return runs.region_means(image.array, labels, names, {n: (n,) for n in names.values()})


def _ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] / b[k] for k in b if b[k] > 0}


def pet(folder: Path, seconds: float, seed: int) -> list[str]:
    """The PET table's lines."""
    name, phantom_name, mbq = PET
    scanner = load_scanner(name)
    built = phantoms.get(phantom_name, scanner)
    path = str(write_voxels(built, folder / phantom_name, 2.0))
    lines = [f"PET: {phantom_name}, {name}, {mbq:g} MBq F-18; counts from 1 s, images from "
             f"{seconds:g} s", "", "| quantity | built-in | voxel file | file / built-in |",
             "|---|---|---|---|"]
    a = measure(scanner, mbq, 1.0, phantom=phantom_name, seed=seed)
    b = measure(scanner, mbq, 1.0, phantom=path, seed=seed)
    lines += [f"| {k} | {a[k]:.5g} | {b[k]:.5g} | {b[k] / a[k]:.4f} |" for k in COUNTS]
    images = {}
    for key, phantom, s in (("built", phantom_name, seed), ("file", path, seed),
                            ("again", phantom_name, seed + 1)):
        coinc = runs.scan(scanner, phantom, mbq, seconds, s, available_cores())
        facts = runs.facts_of(scanner, phantom, mbq, seconds, None)
        images[key] = _means(runs.image(coinc, scanner, facts, "truth").image, built)
    return lines + _region_table(images)


def spect(folder: Path, seconds: float, seed: int) -> list[str]:
    """The SPECT table's lines."""
    name, phantom_name, mbq = SPECT
    scanner = load_scanner(name)
    built = phantoms.get(phantom_name, scanner)
    path = str(write_voxels(built, folder / phantom_name, 2.0))
    voxels = phantoms.get(path, scanner)
    lines = [f"SPECT: {phantom_name}, {name}, {mbq:g} MBq Tc-99m, {seconds:g} s", "",
             "| quantity | built-in | voxel file | file / built-in |", "|---|---|---|---|"]
    scans = {"built": spectruns.scan(scanner, built, "Tc-99m", mbq, seconds, seed),
             "file": spectruns.scan(scanner, voxels, "Tc-99m", mbq, seconds, seed),
             "again": spectruns.scan(scanner, built, "Tc-99m", mbq, seconds, seed + 1)}
    a, b = scans["built"][1], scans["file"][1]
    lines += [f"| {k} | {a[k]:.5g} | {b[k]:.5g} | {b[k] / a[k]:.4f} |" for k in a]
    images = {k: _means(spectruns.image(proj, scanner, built if k != "file" else voxels,
                                        "truth"), built)
              for k, (proj, _) in scans.items()}
    return lines + _region_table(images)


def _region_table(images: dict[str, dict[str, float]]) -> list[str]:
    file, again = _ratios(images["file"], images["built"]), _ratios(images["again"],
                                                                    images["built"])
    lines = ["", "| region | file / built-in | built-in, another seed / built-in |",
             "|---|---|---|"]
    lines += [f"| {k} | {file[k]:.4f} | {again[k]:.4f} |" for k in file]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.validation.phantomfiles",
                                description=__doc__.splitlines()[0])
    p.add_argument("--pet-s", type=float, default=20.0)
    p.add_argument("--spect-s", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--only", choices=("pet", "spect"), default=None)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, run in (("pet", pet), ("spect", spect)):
            if a.only in (None, kind):
                seconds = a.pet_s if kind == "pet" else a.spect_s
                print("\n".join(run(Path(tmp), seconds, a.seed)), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
