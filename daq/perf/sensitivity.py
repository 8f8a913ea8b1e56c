"""The error and the time of a mu-map's Monte-Carlo sensitivity image against the exact sum over
every valid pair, for the ratio estimate the reconstruction uses and for the back projection of
the attenuated weights of as many samples as the plain image has (the baseline of the same run).

``python -m daq.perf.sensitivity [--scanner S] [--voxel-mm V] [--phantom P ...]`` prints, per
phantom, the rms relative error over the voxels of the field of view above 5 % of the maximum
and over those in the phantom, the mean error in the phantom, and each estimate's wall and CPU
seconds (the plain image, shared by every mu-map of the grid, computed before).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from hw.scanner import Scanner, load_scanner
from recon.grid import Grid, default_grid
from recon.pet.system import (
    DEFAULT_SAMPLES,
    Attenuation,
    as_mu_map,
    back_projected,
    fov_mask,
    min_sector_difference,
    sampled_chunks,
    sensitivity,
    valid_pair_count,
)


def attenuated_back_projection(scanner: Scanner, grid: Grid, attenuation: Attenuation,
                               samples: int, seed: int = 0) -> np.ndarray:
    """The baseline: ``samples`` valid pairs' ``w_i AF_i`` back-projected, times N_pairs /
    samples, zero outside the field of view."""
    k = min_sector_difference(scanner)
    chunks = sampled_chunks(scanner, samples, np.random.default_rng(seed), k)
    sens = back_projected(scanner, grid, attenuation, chunks, valid_pair_count(scanner, k) / samples)
    sens[~fov_mask(scanner, grid)] = 0.0
    return sens


def _timed(compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    image = compute()
    return image, time.perf_counter() - wall, time.process_time() - cpu


def _errors(image: np.ndarray, exact: np.ndarray, inside: np.ndarray, body: np.ndarray) -> str:
    fov, obj = image[inside] / exact[inside] - 1, image[body] / exact[body] - 1
    return (f"rms {np.sqrt(np.mean(fov ** 2)) * 100:.2f} % in the FOV, "
            f"{np.sqrt(np.mean(obj ** 2)) * 100:.2f} % in the phantom, "
            f"mean {np.mean(obj) * 100:+.2f} %")


def measure(scanner: Scanner, grid: Grid, phantom: str) -> list[str]:
    """The lines printed for ``phantom``'s mu-map (see the module docstring)."""
    import emulator

    mu = as_mu_map(emulator.phantoms.get(phantom, scanner).mu_map(grid, 511.0), grid)
    k = min_sector_difference(scanner)
    exact = sensitivity(scanner, grid, mu, samples=valid_pair_count(scanner, k))
    sensitivity(scanner, grid)                      # the plain image, cached
    inside = fov_mask(scanner, grid) & (exact > 0.05 * exact.max())
    body = inside & (mu.array > 0)
    ratio, wall_r, cpu_r = _timed(lambda: sensitivity(scanner, grid, mu, use_cache=False))
    base, wall_b, cpu_b = _timed(lambda: attenuated_back_projection(
        scanner, grid, Attenuation(scanner, mu), DEFAULT_SAMPLES))
    return [f"{phantom}:",
            f"  ratio estimate: {_errors(ratio, exact, inside, body)}; "
            f"{wall_r:.2f} s, {cpu_r:.2f} CPU s",
            f"  attenuated weights back-projected: {_errors(base, exact, inside, body)}; "
            f"{wall_b:.2f} s, {cpu_b:.2f} CPU s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daq.perf.sensitivity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scanner", default="bedside-brain")
    parser.add_argument("--voxel-mm", type=float, default=2.0)
    parser.add_argument("--phantom", nargs="+", default=["cylinder", "brain"])
    args = parser.parse_args(argv)
    scanner = load_scanner(args.scanner)
    grid = default_grid(scanner, args.voxel_mm)
    for phantom in args.phantom:
        print("\n".join(measure(scanner, grid, phantom)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
