"""List-mode OSEM / MLEM for PET, with TOF, randoms and attenuation.

The list-mode EM update over a subset S of the events (a fraction f of them) is

    x_j <- x_j / (f s_j) * sum_{i in S} w_i AF_i A_ij / ybar_i,
    ybar_i = w_i AF_i (A x)_i + r_i

with the notation of :mod:`recon.pet.system` (``s`` the sensitivity, ``r`` the randoms). Subsets are
taken by event order, interleaved (subset k holds events k, k + S, k + 2S, ...), so every subset
spans the whole acquisition; within a subset the events are put in LOR-space order, which doubles
the projector's speed (:func:`recon.pet.lors.lor_order`). The image unit is *counts*: expected
annihilations per voxel over the acquisition (see :func:`recon.quant.activity_concentration` for
Bq/mL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from hw.dtypes import COINC_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError
from recon.corrections.randoms import RandomsEstimate, crystal_counts, fan_sum_factors, randoms_per_mm
from recon.grid import Grid, Image, default_grid
from recon.pet.lors import LORs, check_crystals, lor_order
from recon.pet.projector import Projector, pad, unpad
from recon.pet.system import (
    Attenuation,
    PairFactor,
    as_mu_map,
    event_weights,
    min_sector_difference,
    nontrivial,
    sensitivity,
)

Callback = Callable[[int, int, Image], None]


SENSITIVITY_FLOOR = 0.05
"""Voxels with a sensitivity below this fraction of the maximum are outside the FOV."""


@dataclass(frozen=True)
class Events:
    """Prompts ready for EM: their LORs, ``weights`` w_i AF_i and ``additive`` r_i."""

    lors: LORs
    weights: np.ndarray
    additive: np.ndarray

    def __len__(self) -> int:
        return len(self.lors)

    def take(self, index: np.ndarray | slice) -> Events:
        return Events(self.lors.take(index), np.ascontiguousarray(self.weights[index]),
                      np.ascontiguousarray(self.additive[index]))


def split_coinc(coinc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prompts, delayeds) of a COINC_DTYPE array; raises UserError on anything else."""
    names = coinc.dtype.names or ()
    missing = [n for n in COINC_DTYPE.names if n not in names]
    if missing:
        raise UserError(f"coincidences lack the field(s) {', '.join(missing)} of hw.COINC_DTYPE")
    delayed = coinc["delayed"] != 0
    return coinc[~delayed], coinc[delayed]


class ListModeEM:
    """One PET reconstruction set-up: projector, sensitivity, attenuation and randoms model.

    ``window_ps`` (the coincidence window, for the TOF randoms density) defaults to the scanner's;
    ``k`` (minimum sector difference of valid pairs) likewise.
    """

    def __init__(self, scanner: Scanner, grid: Grid | None = None, tof: bool = True,
                 mu_map: Image | np.ndarray | None = None, window_ps: float | None = None,
                 k: int | None = None, sensitivity_samples: int | None = None,
                 normalization: PairFactor | None = None,
                 sensitivity_image: np.ndarray | None = None,
                 projector: Projector | None = None) -> None:
        """``sensitivity_image``: the sensitivity on ``grid`` when it is known (a moving head's,
        :mod:`recon.motion.correct`); None: computed (:func:`recon.pet.system.sensitivity`).
        ``projector``: the EM's (a moving head's over all its poses' crystals,
        :meth:`Projector.over_poses`); None: the scanner's own on ``grid``."""
        if scanner.kind != "pet":
            raise UserError(f"scanner {scanner.name} is {scanner.kind.upper()}: list-mode "
                            "reconstruction needs a PET scanner (use recon.spect_osem)")
        self.scanner = scanner
        self.grid = grid if grid is not None else default_grid(scanner)
        self.k = min_sector_difference(scanner, k)
        self.window_ps = (window_ps if window_ps is not None
                          else scanner.acquisition.get("coincidence_window_ps"))
        self.projector = projector if projector is not None else Projector(scanner, self.grid,
                                                                           tof)
        mu = as_mu_map(mu_map, self.grid)
        self.attenuation = Attenuation(scanner, mu) if mu is not None else None
        self.normalization = nontrivial(normalization)
        """The crystals' efficiencies (None: alike)."""
        self._unfloored = (sensitivity(scanner, self.grid, mu, sensitivity_samples, k=self.k,
                                       normalization=self.normalization)
                           if sensitivity_image is None
                           else np.asarray(sensitivity_image, np.float32))

    @cached_property
    def sensitivity(self) -> np.ndarray:
        """[x, y, z] the sensitivity, zero where it is below :data:`SENSITIVITY_FLOOR` of its
        peak: voxels the scanner barely sees (the axial ends, the FOV's rim) have a small and,
        from the Monte-Carlo estimate, noisy sensitivity, which EM would amplify into hot spots;
        they are left out of the reconstructed field of view. (Computed when first used: a
        moving head's pose bins only weight events.)"""
        sens = self._unfloored
        return np.where(sens >= SENSITIVITY_FLOOR * sens.max(), sens, 0).astype(sens.dtype)

    @cached_property
    def _sens(self) -> np.ndarray:
        return pad(self.sensitivity)

    @cached_property
    def _inv_sens(self) -> np.ndarray:
        return np.divide(1.0, self._sens, out=np.zeros_like(self._sens), where=self._sens > 0)

    @property
    def tof(self) -> bool:
        return self.projector.tof

    def randoms_model(self, delayed_counts: np.ndarray) -> RandomsEstimate:
        """The randoms estimate from per-crystal delayed fan sums."""
        return RandomsEstimate(fan_sum_factors(delayed_counts, self.scanner, self.k),
                               self.window_ps, self.tof)

    def events(self, prompts: np.ndarray, randoms: RandomsEstimate | np.ndarray | None
               ) -> Events:
        """Events of COINC_DTYPE prompts; ``randoms`` a model, per-prompt expected randoms
        (counts per LOR, non-TOF) or None."""
        lors = LORs.from_coinc(prompts)
        check_crystals(lors, self.scanner.n_crystals)
        weights = event_weights(self.scanner, self.grid, lors, self.attenuation,
                                self.normalization)
        if randoms is None:
            additive = np.zeros(len(lors), np.float32)
        elif isinstance(randoms, RandomsEstimate):
            additive = randoms.per_event(lors)
        else:
            additive = np.asarray(randoms, np.float32)
            if additive.shape != (len(lors),) or np.any(~(additive >= 0)):
                raise UserError(f"randoms must be one expected count >= 0 per prompt "
                                f"({len(lors)}), got shape {additive.shape}")
            if self.tof:
                additive = additive * np.float32(randoms_per_mm(self.window_ps))
        return Events(lors, weights, additive)

    def in_lor_order(self, events: Events) -> Events:
        """The events reordered for the projector's caches (:func:`recon.pet.lors.lor_order`)."""
        return events.take(lor_order(events.lors, self.projector.endpoints))

    def initial(self, expected_counts: float) -> np.ndarray:
        """A padded uniform image whose expected total counts are ``expected_counts``."""
        x = (self._sens > 0).astype(np.float32)
        total = float(self.sensitivity.sum(dtype=np.float64))
        return x * np.float32(max(expected_counts, 1.0) / total) if total > 0 else x

    def padded(self, image: Image) -> np.ndarray:
        """A warm-start image as a padded working copy (zero where the sensitivity is)."""
        if image.grid.shape != self.grid.shape or not np.allclose(
                image.grid.affine, self.grid.affine):
            raise UserError(f"warm-start image grid {image.grid} is not the reconstruction "
                            f"grid {self.grid}")
        x = pad(image.array)
        x[self._sens <= 0] = 0
        return x

    def update(self, x: np.ndarray, events: Events, fraction: float) -> np.ndarray:
        """One EM sub-iteration over ``events`` (a ``fraction`` of all), in place on padded x."""
        return self.update_lors(x, events.lors, events.weights, fraction, events.additive)

    def update_lors(self, x: np.ndarray, lors: LORs, weights: np.ndarray, fraction: float,
                    additive: np.ndarray | None = None,
                    crystal_randoms: np.ndarray | None = None,
                    order: np.ndarray | None = None) -> np.ndarray:
        """:meth:`update` over the events ``order`` (indices; default all) of ``lors`` with their
        ``weights`` and additive term (``additive`` per event and/or ``crystal_randoms[a] *
        crystal_randoms[b]``, see :meth:`recon.pet.projector.Projector.em_back_padded`)."""
        if (len(lors) if order is None else len(order)) == 0:
            return x
        back = self.projector.em_back_padded(x, lors, weights, additive, crystal_randoms, order)
        _em_multiply(x.reshape(-1), back.reshape(-1), self._inv_sens.reshape(-1),
                     np.float32(1.0 / fraction))
        return x

    def image(self, x: np.ndarray, **meta: object) -> Image:
        """The padded working image as an :class:`Image` (a copy) in counts."""
        return Image(np.ascontiguousarray(unpad(x)), self.grid.voxel_mm, self.grid.origin_mm,
                     "counts", dict(meta))


@numba.njit(nogil=True, cache=True, parallel=True, fastmath=True)
def _em_multiply(x, back, inv_sens, inv_fraction):
    """x *= back / (fraction * sensitivity), zero where the sensitivity is."""
    for j in numba.prange(x.size):
        x[j] *= back[j] * inv_sens[j] * inv_fraction


def lm_osem(coinc: np.ndarray, scanner: Scanner, grid: Grid | None = None, iterations: int = 2,
            subsets: int = 10, tof: bool = True, randoms: str | np.ndarray | None = None,
            mu_map: Image | np.ndarray | None = None, image: Image | None = None,
            callback: Callback | None = None, *, window_ps: float | None = None,
            min_sector_difference: int | None = None,
            sensitivity_samples: int | None = None,
            scatter: np.ndarray | None = None,
            normalization: PairFactor | None = None) -> Image:
    """List-mode OSEM of COINC_DTYPE coincidences (prompts: ``delayed == 0``).

    ``randoms``: None (no randoms term), ``"delayed"`` (fan-sum estimate from the delayed rows of
    ``coinc``, see :mod:`recon.corrections.randoms`) or one expected randoms count per prompt. ``mu_map``:
    attenuation (1/mm), an Image on any grid or an array on ``grid``. ``image``: a warm start on
    ``grid``. ``callback(iteration, subset, image)`` after every subset. ``scatter``: the
    expected scattered coincidences of each prompt, in the EM's units (per crystal pair; per mm of
    TOF position with TOF: :func:`recon.pet.scattercorr.scatter_additive`). ``normalization``:
    the crystals' efficiencies (:class:`recon.corrections.normalization.CrystalEfficiencies`;
    None: alike). Returns the image in counts (expected annihilations per voxel over the
    acquisition).
    """
    if iterations < 0 or subsets < 1:
        raise UserError(f"iterations must be >= 0 and subsets >= 1, got {iterations}, {subsets}")
    prompts, delayeds = split_coinc(np.asarray(coinc))
    em = ListModeEM(scanner, grid, tof, mu_map, window_ps, min_sector_difference,
                    sensitivity_samples, normalization)
    model: RandomsEstimate | np.ndarray | None = None
    randoms_total = 0.0
    if isinstance(randoms, str):
        if randoms != "delayed":
            raise UserError(f"randoms must be None, 'delayed' or an array, got '{randoms}'")
        model = em.randoms_model(crystal_counts(LORs.from_coinc(delayeds), scanner.n_crystals))
        randoms_total = float(len(delayeds))
    elif randoms is not None:
        model = np.asarray(randoms, np.float32)
        randoms_total = float(model.sum(dtype=np.float64))
    events = em.events(prompts, model)
    if scatter is not None:
        extra = np.asarray(scatter, np.float32)
        if extra.shape != (len(events),) or np.any(~(extra >= 0)):
            raise UserError(f"scatter must be one value >= 0 per prompt ({len(events)}), got "
                            f"shape {extra.shape}")
        events = Events(events.lors, events.weights, events.additive + extra)
    parts = [em.in_lor_order(events.take(slice(s, None, subsets))) for s in range(subsets)]
    x = em.padded(image) if image is not None else em.initial(len(events) - randoms_total)
    for it in range(iterations):
        for s, part in enumerate(parts):
            em.update(x, part, len(part) / max(len(events), 1))
            if callback is not None:
                callback(it, s, em.image(x))
    return em.image(x, iterations=iterations, subsets=subsets, tof=em.tof, events=len(events),
                    randoms="none" if randoms is None else (
                        randoms if isinstance(randoms, str) else "given"),
                    attenuation=em.attenuation is not None, scatter=scatter is not None,
                    normalization=getattr(em.normalization, "method", "none"))


def lm_mlem(coinc: np.ndarray, scanner: Scanner, grid: Grid | None = None, iterations: int = 10,
            tof: bool = True, randoms: str | np.ndarray | None = None,
            mu_map: Image | np.ndarray | None = None, image: Image | None = None,
            callback: Callback | None = None, **options: object) -> Image:
    """List-mode MLEM: :func:`lm_osem` with one subset."""
    return lm_osem(coinc, scanner, grid, iterations, 1, tof, randoms, mu_map, image, callback,
                   **options)
