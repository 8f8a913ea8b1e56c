"""The PET system model around the projector: detection weights, attenuation, sensitivity.

Expected counts of an event's LOR i (units: counts over the acquisition; per mm of TOF position
with TOF) are ``ybar_i = w_i * AF_i * (A x)_i + r_i`` with ``x`` the image (expected annihilations
per voxel over the acquisition), ``A`` the projector (:mod:`recon.projector`), ``w_i`` the pair's
detection weight (:func:`recon.lors.pair_weights`), ``AF_i = exp(-integral of mu)`` the attenuation
factor, ``r_i`` the additive randoms term. The sensitivity image is ``s_j = sum_i w_i AF_i A_ij``
over *every* valid crystal pair i (those the sorter accepts: circular sector difference >=
``min_sector_difference``), non-TOF (a TOF kernel integrates to one along its LOR).

There are 75 M valid pairs on bedside-brain, so :func:`sensitivity` uses an unbiased Monte-Carlo
estimate: ``samples`` pairs drawn uniformly among the valid pairs, back-projected with weight
``w_i AF_i N_pairs / samples``. Without a mu-map on a centred grid, the estimate is averaged over
the symmetries the scanner and the grid share (quarter turns when the module count is a multiple
of four, the y and z mirrors: 16 images for bedside-brain), which divides its variance by up to
16 at no cost. The result is cached on disk (:mod:`recon.cache`) per scanner digest, grid,
mu-map, sample count and seed.
"""

from __future__ import annotations

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError
from recon.cache import cached_array
from recon.grid import Grid, Image, array_digest
from recon.lors import LORs, lor_order, pair_weights
from recon.projector import Projector, pad

#: Changes whenever the sensitivity model changes, so stale cache entries are never used.
MODEL_VERSION = "sens-2"
#: Default Monte-Carlo sample count for the sensitivity image.
DEFAULT_SAMPLES = 10_000_000
#: Events per projector call when streaming pairs through it.
CHUNK = 1 << 20


def min_sector_difference(scanner: Scanner, value: int | None = None) -> int:
    """The geometric cut: ``value`` or the scanner's default."""
    k = scanner.acquisition.get("min_sector_difference", 0) if value is None else value
    if not 0 <= int(k) <= scanner.n_modules // 2:
        raise UserError(f"min_sector_difference must be between 0 and {scanner.n_modules // 2}, "
                        f"got {k}")
    return int(k)


def valid_module_pairs(scanner: Scanner, k: int) -> np.ndarray:
    """(n_modules, n_modules) bool: sector pairs the sorter accepts."""
    m = np.arange(scanner.n_modules)
    d = np.abs(m[:, None] - m[None, :])
    return np.minimum(d, scanner.n_modules - d) >= k


def valid_pair_count(scanner: Scanner, k: int) -> int:
    """Number of unordered valid crystal pairs (a != b)."""
    per_module = np.bincount(scanner.crystal_module, minlength=scanner.n_modules).astype(np.int64)
    ordered = int(per_module @ valid_module_pairs(scanner, k) @ per_module)
    if k == 0:
        ordered -= scanner.n_crystals
    return ordered // 2


def sample_pairs(scanner: Scanner, n: int, rng: np.random.Generator, k: int) -> LORs:
    """``n`` crystal pairs drawn uniformly among the valid pairs (rejection sampling)."""
    parts_a, parts_b, have = [], [], 0
    while have < n:
        m = int((n - have) * 1.3) + 64
        a = rng.integers(0, scanner.n_crystals, m, dtype=np.int32)
        b = rng.integers(0, scanner.n_crystals, m, dtype=np.int32)
        ok = (scanner.sector_difference(a, b) >= k) & (a != b)
        parts_a.append(a[ok])
        parts_b.append(b[ok])
        have += int(ok.sum())
    a = np.concatenate(parts_a)[:n]
    b = np.concatenate(parts_b)[:n]
    return LORs(a, b, np.zeros(n, np.float32))


def fov_mask(scanner: Scanner, grid: Grid) -> np.ndarray:
    """[x, y, z] bool: voxels whose centre lies inside the transaxial field of view."""
    x, y, _ = grid.centres_mm()
    r = scanner.transaxial_fov_mm / 2
    return np.broadcast_to(x * x + y * y <= r * r, grid.shape).copy()


class Attenuation:
    """Attenuation factors exp(-integral mu dl) of LORs through a mu-map (1/mm)."""

    def __init__(self, scanner: Scanner, mu_map: Image) -> None:
        if np.any(~np.isfinite(mu_map.array)) or np.any(mu_map.array < 0):
            raise UserError("mu-map must be finite and >= 0 (1/mm)")
        self._projector = Projector(scanner, mu_map.grid, tof=False)
        self._padded = pad(mu_map.array)
        self.digest = array_digest(mu_map.array) + mu_map.grid.key()

    def factors(self, lors: LORs) -> np.ndarray:
        """(n,) float32 in (0, 1]."""
        return np.exp(-self._projector.forward_padded(self._padded, lors))


def as_mu_map(mu_map: Image | np.ndarray | None, grid: Grid) -> Image | None:
    """A mu-map Image: an Image as is, an array on ``grid``, or None."""
    if mu_map is None or isinstance(mu_map, Image):
        return mu_map
    array = np.asarray(mu_map, np.float32)
    if array.shape != grid.shape:
        raise UserError(f"mu-map array shape {array.shape} is not the grid's {grid.shape}; "
                        "pass a recon.Image to give it its own grid")
    return grid.image(array, "1/mm")


def event_weights(scanner: Scanner, grid: Grid, lors: LORs,
                  attenuation: Attenuation | None = None) -> np.ndarray:
    """(n,) float32: ``w_i AF_i`` of each event (see the module docstring)."""
    w = pair_weights(scanner, lors, grid.voxel_volume_mm3)
    if attenuation is not None:
        w *= attenuation.factors(lors)
    return w


def sensitivity(scanner: Scanner, grid: Grid, mu_map: Image | np.ndarray | None = None,
                samples: int = DEFAULT_SAMPLES, seed: int = 0, k: int | None = None,
                use_cache: bool = True) -> np.ndarray:
    """[x, y, z] float32: probability that an annihilation in each voxel is detected as a prompt
    in a valid pair (zero outside the transaxial FOV). See the module docstring."""
    if samples < 1:
        raise UserError(f"sensitivity samples must be >= 1, got {samples}")
    k = min_sector_difference(scanner, k)
    mu = as_mu_map(mu_map, grid)
    attenuation = Attenuation(scanner, mu) if mu is not None else None

    def compute() -> np.ndarray:
        return _monte_carlo(scanner, grid, attenuation, samples, seed, k)

    if not use_cache:
        return compute()
    key = "|".join([MODEL_VERSION, scanner.digest, grid.key(), str(samples), str(seed), str(k),
                    attenuation.digest if attenuation else "no-mu"])
    return cached_array(key, compute, prefix="sensitivity")


def _monte_carlo(scanner: Scanner, grid: Grid, attenuation: Attenuation | None, samples: int,
                 seed: int, k: int) -> np.ndarray:
    projector = Projector(scanner, grid, tof=False)
    rng = np.random.default_rng(seed)
    scale = valid_pair_count(scanner, k) / samples
    acc = None
    for start in range(0, samples, CHUNK):
        lors = sample_pairs(scanner, min(CHUNK, samples - start), rng, k)
        lors = lors.take(lor_order(lors, projector.endpoints))
        w = event_weights(scanner, grid, lors, attenuation) * np.float32(scale)
        acc = projector.back_padded(w, lors, acc)
    sens = np.ascontiguousarray(acc[1:-1, 1:-1, 1:-1], np.float64)
    if attenuation is None:
        sens = _symmetrise(scanner, grid, sens)
    sens[~fov_mask(scanner, grid)] = 0.0
    return sens.astype(np.float32)


def _symmetrise(scanner: Scanner, grid: Grid, sens: np.ndarray) -> np.ndarray:
    """Average over the symmetries shared by the ring (mirrors y and z, quarter turns when the
    module count allows) and the grid (centred; square with equal x/y voxels for the turns)."""
    if not grid.is_centred():
        return sens
    sens = (sens + sens[:, ::-1, :]) / 2          # y -> -y maps module m to -m
    sens = (sens + sens[:, :, ::-1]) / 2          # z -> -z: rings are symmetric about z = 0
    square = grid.shape[0] == grid.shape[1] and grid.voxel_mm[0] == grid.voxel_mm[1]
    if square and scanner.n_modules % 4 == 0:
        sens = sum(np.rot90(sens, q, axes=(0, 1)) for q in range(4)) / 4
    return sens
