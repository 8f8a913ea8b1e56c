"""Cardiac SPECT images of a population's torsos made in seconds by the reconstruction's projector.

They are kept for measuring the image readers (the axis finder) on many patients.

Each torso's activity is projected on spect-general through its own mu-map with the
collimator's blur, scaled to :data:`PHOTOPEAK_COUNTS` (a 60 s stress scan of 800 MBq Tc-99m)
and drawn with Poisson noise; no scatter, so these images are cleaner than the emulated
chain's (:mod:`recon.validation.torsos` keeps those, minutes a torso). Each is reconstructed
as a SPECT run is (OSEM 4 x 6) with the calculated map of its outline (``estimate``) and with
the torso's own map (``truth``), and kept as ``<torso>_<map>.nii.gz``, the names
``python -m recon.validation.lvfinder`` reads.

A validation, not a scan's processing: it uses the phantoms' own maps, as tests do.

Run: ``python -m recon.validation.projected POPULATION --images DIR [--n 40] [--first 5]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emulator import phantoms
from hw.scanner import load_scanner
from recon.grid import default_grid
from recon.outputs.export import write_nifti
from recon.spect.mumap import estimate
from recon.spect.osem import spect_osem
from recon.spect.runimage import OUTLINE_ITERATIONS
from recon.validation.runs import patients
from recon.validation.spectruns import ITERATIONS, SUBSETS, projected_scan, windows_of

#: A 60 s stress scan's photopeak counts, and the camera.
PHOTOPEAK_COUNTS, CAMERA = 1.1e6, "spect-general"


def keep_images(folder: Path, images: Path) -> list[Path]:
    """The torso in ``folder``'s two images kept in ``images`` (made where missing)."""
    scanner = load_scanner(CAMERA)
    energy_kev = float(np.mean(windows_of(scanner).peak))  # the camera's photopeak window's centre
    grid = default_grid(scanner)
    paths = [images / f"{folder.name}_{m}.nii.gz" for m in ("estimate", "truth")]
    if all(p.is_file() for p in paths):
        return paths
    phantom = phantoms.get(str(folder), scanner)
    mu = phantom.mu_map(grid, energy_kev)
    measured = projected_scan(scanner, grid, phantom.activity_map(grid), mu, energy_kev,
                              PHOTOPEAK_COUNTS, np.random.default_rng([7, *folder.name.encode()]))

    def osem(mu_image: object, iterations: int) -> object:
        return spect_osem(measured, scanner, None, mu_image, iterations, SUBSETS, grid,
                          energy_kev=energy_kev)

    calculated = estimate(osem(None, OUTLINE_ITERATIONS), energy_kev, "CHEST").image
    images.mkdir(parents=True, exist_ok=True)
    for path, mu_image in zip(paths, (calculated, grid.image(mu, "1/mm")), strict=True):
        write_nifti(osem(mu_image, ITERATIONS), path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.validation.projected",
                                description=__doc__.splitlines()[0])
    p.add_argument("population", type=Path, help="a torso population's folder")
    p.add_argument("--images", type=Path, required=True, help="where the images are kept")
    p.add_argument("--n", type=int, default=40, help="how many torsos")
    p.add_argument("--first", type=int, default=1, help="the first torso's number")
    a = p.parse_args(argv)
    folders = patients(a.population, a.first - 1 + a.n)[a.first - 1:]
    if not folders:
        raise SystemExit(f"no torsos in {a.population} from number {a.first}")
    t0 = time.perf_counter()
    for k, folder in enumerate(folders, 1):
        keep_images(folder, a.images)
        print(f"{folder.name}: {k}/{len(folders)}, {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
