"""The PET system model around the projector: detection weights, attenuation, sensitivity.

Expected counts of an event's LOR i (units: counts over the acquisition; per mm of TOF position
with TOF) are ``ybar_i = w_i * AF_i * (A x)_i + r_i`` with ``x`` the image (expected annihilations
per voxel over the acquisition), ``A`` the projector (:mod:`recon.pet.projector`), ``w_i`` the pair's
detection weight (:func:`recon.pet.lors.pair_weights`), ``AF_i = exp(-integral of mu)`` the attenuation
factor, ``r_i`` the additive randoms term. The sensitivity image is ``s_j = sum_i w_i AF_i A_ij``
over *every* valid crystal pair i (those the sorter accepts: circular sector difference >=
``min_sector_difference``), non-TOF (a TOF kernel integrates to one along its LOR).

There are 75 M valid pairs on bedside-brain, so :func:`sensitivity` uses an unbiased Monte-Carlo
estimate: ``samples`` pairs drawn uniformly among the valid pairs, back-projected with weight
``w_i AF_i N_pairs / samples``. Without a mu-map on a centred grid, the estimate is averaged over
the symmetries the scanner and the grid share (quarter turns when the module count is a multiple
of four, the y and z mirrors: 16 images for bedside-brain), which divides its variance by up to
16 at no cost. With a mu-map or a normalization (pair factors ``f_i = AF_i N_i``) the
estimate is that symmetrised image times a ratio estimate of what the factors keep of it:
``s_j = s0_j * sum_i w_i f_i A_ij / sum_i w_i A_ij`` over :data:`RATIO_SHARE` of the samples,
drawn afresh (the ratio estimator of survey sampling). The factors of the lines through a voxel
differ far less than their number and chord lengths do, so the ratio is steadier than either
sum: against the exact sum over bedside-brain's 61 M pairs at 2 mm, 3 M samples' ratio left
1.6 % rms error in a 20 cm water cylinder and 1.2 % in the brain phantom's head, where 10 M
samples of ``w_i f_i`` back-projected left 2.8 % and 2.7 %, in 1.8 s against 4.0 s (the
plain image cached, shared by every mu-map of the grid). The default sample count keeps the
samples per voxel of 10 M at 2 mm
(:func:`default_samples`); where that is more than there are valid pairs (small-animal's
0.5 mm grid), every pair is back-projected once: the exact sum, without Monte-Carlo noise, which
OSEM would otherwise multiply into the image at every subset (a 5 % noisy sensitivity made
small-animal's 0.5 mm images of a uniform chamber 90 % noisy after 20 subsets, whatever the
counts). The result is cached on disk (:mod:`recon.cache`) per scanner digest, grid, mu-map,
sample count and seed (the exact sum: per scanner, grid and mu-map).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError
from infra.progress import Progress
from recon.cache import cached_array
from recon.grid import Grid, Image, array_digest
from recon.pet.lors import LORs, lor_order, pair_weights
from recon.pet.projector import Projector, pad
from recon.threads import KERNELS

#: Changes whenever the sensitivity model changes, so stale cache entries are never used.
MODEL_VERSION = "sens-2"
#: Monte-Carlo sample count of the sensitivity image on 2 mm voxels (and coarser).
DEFAULT_SAMPLES = 10_000_000
#: Share of the sample count whose ratio scales the plain image to a mu-map's or a
#: normalization's (see the module docstring).
RATIO_SHARE = 0.3
#: Marks the cache keys of ratio estimates.
RATIO_VERSION = "ratio-1"
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


def default_samples(grid: Grid) -> int:
    """The sensitivity's sample count for ``grid``: :data:`DEFAULT_SAMPLES` at 2 mm voxels and
    coarser, as many more as the voxels are smaller (the same samples per voxel)."""
    return max(DEFAULT_SAMPLES, round(DEFAULT_SAMPLES * 8.0 / grid.voxel_volume_mm3))


def every_pair(scanner: Scanner, k: int, chunk: int) -> Iterator[LORs]:
    """Every valid pair (a < b) once, in chunks of at most ``chunk`` pairs (of one crystal's
    pairs at least)."""
    n = scanner.n_crystals
    rows = max(1, chunk // n)
    b = np.arange(n, dtype=np.int32)
    for a0 in range(0, n, rows):
        a = np.repeat(np.arange(a0, min(n, a0 + rows), dtype=np.int32), n)
        bb = np.tile(b, a.size // n)
        ok = (bb > a) & (scanner.sector_difference(a, bb) >= k)
        yield LORs(a[ok], bb[ok], np.zeros(int(ok.sum()), np.float32))


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


class PairFactor(Protocol):
    """A multiplicative factor of each line of response (STIR's ``BinNormalisation``):
    attenuation, normalization. ``digest`` identifies it in cache keys."""

    digest: str

    def factors(self, lors: LORs) -> np.ndarray: ...


def nontrivial(factor: PairFactor | None) -> PairFactor | None:
    """``factor``, or None where it is 1 on every line (``is_trivial``: a table of alike
    crystals), so that a model with it is bit for bit the model without."""
    return None if factor is None or getattr(factor, "is_trivial", False) else factor


def event_weights(scanner: Scanner, grid: Grid, lors: LORs,
                  attenuation: PairFactor | None = None,
                  normalization: PairFactor | None = None) -> np.ndarray:
    """(n,) float32: ``w_i AF_i N_i`` of each event (see the module docstring): the geometry,
    times the attenuation and the normalization where given."""
    w = pair_weights(scanner, lors, grid.voxel_volume_mm3)
    for factor in (attenuation, normalization):
        if factor is not None:
            w *= factor.factors(lors)
    return w


def sensitivity(scanner: Scanner, grid: Grid, mu_map: Image | np.ndarray | None = None,
                samples: int | None = None, seed: int = 0, k: int | None = None,
                use_cache: bool = True, normalization: PairFactor | None = None) -> np.ndarray:
    """[x, y, z] float32: probability that an annihilation in each voxel is detected as a prompt
    in a valid pair (zero outside the transaxial FOV). ``samples``: Monte-Carlo pairs (None:
    :func:`default_samples`); as many as there are valid pairs or more: every pair once, exact.
    ``normalization``: the crystals' efficiencies (a dead crystal's pairs add nothing).
    ``use_cache``: keep the result on disk; the plain image that a Monte-Carlo estimate with a
    mu-map or a normalization scales is kept in any case. See the module docstring."""
    samples = default_samples(grid) if samples is None else samples
    if samples < 1:
        raise UserError(f"sensitivity samples must be >= 1, got {samples}")
    k = min_sector_difference(scanner, k)
    mu = as_mu_map(mu_map, grid)
    attenuation = Attenuation(scanner, mu) if mu is not None else None
    exact = samples >= valid_pair_count(scanner, k)

    def compute() -> np.ndarray:
        if exact:
            return _exact(scanner, grid, attenuation, k, normalization)
        return _monte_carlo(scanner, grid, attenuation, samples, seed, k, normalization)

    if not use_cache:
        return compute()
    factors = attenuation is not None or normalization is not None
    key = "|".join([MODEL_VERSION, scanner.digest, grid.key(),
                    *(["every pair"] if exact else [str(samples), str(seed)]), str(k),
                    attenuation.digest if attenuation else "no-mu",
                    *([normalization.digest] if normalization is not None else []),
                    *([RATIO_VERSION] if factors and not exact else [])])
    return cached_array(key, compute, prefix="sensitivity")


def back_projected(scanner: Scanner, grid: Grid, attenuation: Attenuation | None,
                   chunks: Iterator[LORs], scale: float,
                   normalization: PairFactor | None = None) -> np.ndarray:
    """The sum of ``w_i AF_i N_i * scale`` back-projected over the pairs of ``chunks`` (float64,
    unpadded)."""
    projector = Projector(scanner, grid, tof=False)
    acc = None
    for lors in chunks:
        with KERNELS:  # a chunk at a time: the DAQ's live image and frames run between them
            lors = lors.take(lor_order(lors, projector.endpoints))
            w = event_weights(scanner, grid, lors, attenuation, normalization) * np.float32(scale)
            acc = projector.back_padded(w, lors, acc)
    return np.ascontiguousarray(acc[1:-1, 1:-1, 1:-1], np.float64)


def sampled_chunks(scanner: Scanner, samples: int, rng: np.random.Generator, k: int
                   ) -> Iterator[LORs]:
    """``samples`` valid pairs drawn by ``rng``, in chunks of at most :data:`CHUNK`."""
    return (sample_pairs(scanner, min(CHUNK, samples - start), rng, k)
            for start in range(0, samples, CHUNK))


def _monte_carlo(scanner: Scanner, grid: Grid, attenuation: Attenuation | None, samples: int,
                 seed: int, k: int, normalization: PairFactor | None = None) -> np.ndarray:
    if attenuation is not None or normalization is not None:
        plain = sensitivity(scanner, grid, None, samples, seed, k)
        share = max(1, round(samples * RATIO_SHARE))
        return (plain * _ratio(scanner, grid, attenuation, normalization, share, seed, k)
                ).astype(np.float32)
    chunks = sampled_chunks(scanner, samples, np.random.default_rng(seed), k)
    sens = back_projected(scanner, grid, None, chunks, valid_pair_count(scanner, k) / samples)
    sens = _symmetrise(scanner, grid, sens)
    sens[~fov_mask(scanner, grid)] = 0.0
    return sens.astype(np.float32)


def _ratio(scanner: Scanner, grid: Grid, attenuation: Attenuation | None,
           normalization: PairFactor | None, samples: int, seed: int, k: int) -> np.ndarray:
    """[x, y, z] float64: ``sum w_i f_i A_ij / sum w_i A_ij`` over ``samples`` pairs drawn
    apart from the plain image's (0 where no line was drawn)."""
    kept, drawn = ratio_sums(scanner, grid, attenuation, normalization, samples,
                             np.random.default_rng((seed, 1)), k)
    return np.divide(kept, drawn, out=np.zeros_like(kept), where=drawn > 0)


def ratio_sums(scanner: Scanner, grid: Grid, attenuation: PairFactor | None,
               normalization: PairFactor | None, samples: int, rng: np.random.Generator,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """[x, y, z] float64 ``(kept, drawn)``: ``sum w_i f_i A_ij`` and ``sum w_i A_ij`` over
    ``samples`` valid pairs drawn by ``rng`` (``f_i`` the attenuation's and the normalization's
    factors); ``drawn`` is ``samples / N_pairs`` of the plain sensitivity on average, ``kept``
    as much of the one with the factors."""
    projector = Projector(scanner, grid, tof=False)
    kept = drawn = None
    for lors in sampled_chunks(scanner, samples, rng, k):
        with KERNELS:
            lors = lors.take(lor_order(lors, projector.endpoints))
            drawn = projector.back_padded(event_weights(scanner, grid, lors), lors, drawn)
            kept = projector.back_padded(
                event_weights(scanner, grid, lors, attenuation, normalization), lors, kept)
    return tuple(np.asarray(a[1:-1, 1:-1, 1:-1], np.float64) for a in (kept, drawn))


def _exact(scanner: Scanner, grid: Grid, attenuation: Attenuation | None, k: int,
           normalization: PairFactor | None = None) -> np.ndarray:
    """Every valid pair back-projected once, with a progress line (minutes on a fine grid)."""
    total = valid_pair_count(scanner, k)
    progress = Progress(f"sensitivity image, every pair ({scanner.name}, "
                        f"{grid.voxel_mm[0]:g} mm voxels)", total, unit="pairs", interval_s=5.0)
    done = 0

    def counted() -> Iterator[LORs]:
        nonlocal done
        for lors in every_pair(scanner, k, CHUNK):
            yield lors
            done += len(lors)
            progress.update(done)

    sens = back_projected(scanner, grid, attenuation, counted(), 1.0, normalization)
    progress.close(done)
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
