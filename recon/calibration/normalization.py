"""Crystal efficiencies from a blank scan: the crystals' own Lu-176 coincidences, fitted by fan
sums.

With nothing in the scanner, a Lu-176 decay in crystal a leaves its beta (and what of its cascade
stays there) in a, and one of its 307 or 202 keV gammas can reach crystal b across the ring: an
*intrinsic* coincidence of the pair (a, b) at a rate ``eff_a eff_b h_ab``, where
``h_ab = A (cos theta_a + cos theta_b) / d_ab^2`` is the solid angle each crystal's face offers to
the other's decays (A the face, theta the angle of the line to a crystal's normal, d the distance
between the crystals' centres): decays are uniform in the crystals' volume, and either end can be
the one that decayed. The events are sorted from the run's singles in a wide energy window
(:data:`LU176_WINDOW_KEV`: the beta continuum and the cascade gammas; on bedside-brain about
29 k net intrinsic coincidences/s against 3 k randoms), each crystal's randoms fan sum taken as
its delayed coincidences', and each crystal's net fan sum fitted by
:func:`recon.corrections.fansums.fixed_point` with that ``h``.

What stays biased: the fit sees a crystal's efficiency for the Lu-176 energies, not for 511 keV;
the electronics' acceptance (light, trigger, dead channels) is the same, but the share of the
511 keV photopeak that a crystal's energy resolution leaves in the scanner's window is not seen
(under 1 % for a 10 % spread of an 11.5 % resolution in a 435-585 keV window). Photons scattered
from crystal to crystal, and attenuation in the crystals between two partners, are left out of
``h``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from hw.dtypes import SINGLE_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError
from infra.progress import Progress
from recon.calibration.modelfactors import alike_model, class_means, model_factors, symmetry_classes
from recon.corrections.fansums import fixed_point
from recon.corrections.normalization import CrystalEfficiencies
from recon.corrections.randoms import crystal_counts
from recon.pet.lors import LORs
from recon.pet.system import min_sector_difference, valid_module_pairs

#: The energy window (keV) the blank scan's singles are sorted in: the cascade's 202 and 307 keV
#: gammas at one end, the beta and what stays of the cascade at the other.
LU176_WINDOW_KEV = (100.0, 900.0)
#: The sectors apart that a blank scan's pairs must be: neighbouring modules count (their
#: coincidences are most of the intrinsic ones), a module with itself does not (there,
#: photons scattered from crystal to crystal pair up).
BLANK_SECTOR_DIFFERENCE = 1
#: Seconds of the emulated blank scan of the scanner's model, every crystal alike, that gives the
#: fit's geometric factors (:func:`geometric_factors`).
MODEL_SECONDS = 60.0
#: Fan-sum iterations.
ITERATIONS = 30
#: A crystal is dead (efficiency 0) when it has no prompts, or far fewer (five standard
#: deviations) than a crystal of this share of the median's efficiency would have.
DEAD_SHARE = 0.3


@dataclass(frozen=True)
class BlankFit:
    """What the fit saw: per-crystal prompts, randoms and net fan sums, and the noise they allow."""

    prompts: np.ndarray
    randoms: np.ndarray
    net: np.ndarray
    dead: np.ndarray
    """(N,) bool: crystals taken as dead."""
    noisy: np.ndarray
    """(N,) bool: crystals whose own triggers swamp their coincidences with randoms (far more
    delayeds than the others): their efficiency is their symmetry class's."""

    @property
    def expected_rms(self) -> float:
        """The relative error (RMS over live crystals) that the counts alone allow: a crystal's
        net fan sum has the Poisson variance of its prompts plus its delayeds."""
        live = ~self.dead & ~self.noisy & (self.net > 0)
        var = self.prompts[live] + self.randoms[live]
        return float(np.sqrt(np.mean(var / self.net[live] ** 2)))


def partner_sums(scanner: Scanner, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """``H(s)_a = sum over valid partners b of h_ab s_b`` (see the module docstring). The
    crystals are visited module by module (a module's crystals in one contiguous block, its
    coordinates one array each), so the inner loop over a partner module is branch-free and
    vectorised."""
    module = scanner.crystal_module.astype(np.int64)
    order = np.argsort(module, kind="stable")
    starts = np.searchsorted(module[order], np.arange(scanner.n_modules + 1))
    xyz = np.ascontiguousarray(scanner.crystal_centres[order].astype(np.float64).T)
    nrm = np.ascontiguousarray(scanner.crystal_normals[order].astype(np.float64).T)
    valid = valid_module_pairs(scanner, k)

    def partners(s: np.ndarray) -> np.ndarray:
        out = np.empty(s.size)
        out[order] = _partners(xyz, nrm, module[order], starts, valid,
                               np.ascontiguousarray(np.asarray(s, np.float64)[order]))
        return out

    return partners


@numba.njit(nogil=True, cache=True, parallel=True, fastmath=True)
def _partners(xyz, nrm, module, starts, valid, s):
    n = s.size
    out = np.empty(n)
    for a in numba.prange(n):
        acc = 0.0
        for mb in range(starts.size - 1):
            if not valid[module[a], mb]:
                continue
            if mb == module[a]:   # a's own module: leave a out
                acc += _block(xyz, nrm, s, a, starts[mb], a)
                acc += _block(xyz, nrm, s, a, a + 1, starts[mb + 1])
            else:
                acc += _block(xyz, nrm, s, a, starts[mb], starts[mb + 1])
        out[a] = acc
    return out


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def _block(xyz, nrm, s, a, b0, b1):
    """sum over b in [b0, b1) of h_ab s_b."""
    ax, ay, az = xyz[0, a], xyz[1, a], xyz[2, a]
    nx, ny, nz = nrm[0, a], nrm[1, a], nrm[2, a]
    acc = 0.0
    for b in range(b0, b1):
        dx = xyz[0, b] - ax
        dy = xyz[1, b] - ay
        dz = xyz[2, b] - az
        d2 = dx * dx + dy * dy + dz * dz
        cos_sum = (abs(dx * nx + dy * ny + dz * nz)
                   + abs(dx * nrm[0, b] + dy * nrm[1, b] + dz * nrm[2, b]))
        acc += cos_sum / (d2 * np.sqrt(d2)) * s[b]
    return acc


def fit_blank(prompts: LORs, delayeds: LORs, scanner: Scanner, k: int | None = None,
              what: str = "the blank run") -> tuple[np.ndarray, BlankFit]:
    """(efficiency, fit) from a blank scan's prompt and delayed coincidences in
    :data:`LU176_WINDOW_KEV` (or another run's, ``what`` naming it in the errors). A crystal's
    randoms fan sum is its delayeds' (the fan-sum randoms estimate keeps each crystal's fan
    sum)."""
    k = min_sector_difference(scanner, k)
    n = scanner.n_crystals
    if len(prompts) == 0:
        window = " in the Lu-176 window" if what == "the blank run" else ""
        raise UserError(f"{what} has no coincidences{window}: nothing to normalize from")
    p = crystal_counts(prompts, n).astype(np.float64)
    r = crystal_counts(delayeds, n).astype(np.float64)
    net = np.maximum(p - r, 0.0)
    if not np.any(net > 0):
        raise UserError(f"{what}'s coincidences are all randoms: nothing to normalize from (a "
                        "longer scan?)")
    dead = _dead(p)
    noisy = _noisy(r) & ~dead
    # a noisy crystal's partners are fitted with its expected share, not its few net counts
    counts = np.where(dead, 0.0, net)
    eff = fixed_point(counts, partner_sums(scanner, k), ITERATIONS)
    eff[noisy] = class_means(eff, symmetry_classes(scanner), ~dead & ~noisy)[noisy]
    eff[dead] = 0.0
    eff /= eff[~dead].mean()
    return eff, BlankFit(p, r, net, dead, noisy)


def _dead(prompts: np.ndarray) -> np.ndarray:
    """(N,) bool: the crystals that saw nothing, or too little to be alive (:data:`DEAD_SHARE`):
    a short scan's few counts never make a live crystal dead."""
    expected = DEAD_SHARE * np.median(prompts[prompts > 0])
    return (prompts == 0) | (prompts < expected - 5.0 * np.sqrt(expected))


def _noisy(delayeds: np.ndarray) -> np.ndarray:
    """(N,) bool: crystals with five times the median's delayeds and more (ten standard
    deviations)."""
    m = np.median(delayeds)
    return delayeds > max(5.0 * m, m + 10.0 * np.sqrt(max(m, 1.0)))


def blank_sort_settings(scanner: Scanner) -> dict:
    """The sorter's settings for a blank scan (keyword arguments of :func:`coincidence.sort`):
    :data:`LU176_WINDOW_KEV`, :data:`BLANK_SECTOR_DIFFERENCE`, the scanner's delayed window."""
    return {"energy_window_kev": LU176_WINDOW_KEV, "delay_ps": scanner.acquisition["delay_ps"],
            "min_sector_difference": BLANK_SECTOR_DIFFERENCE}


def sort_blank(singles: np.ndarray, scanner: Scanner, threads: int = 1
               ) -> tuple[LORs, LORs]:
    """(prompts, delayeds) of a blank scan's singles (hw.SINGLE_DTYPE, keV) in
    :data:`LU176_WINDOW_KEV`."""
    from coincidence.sorter import sort

    return split_blank(sort(singles, scanner=scanner, threads=threads,
                            **blank_sort_settings(scanner)))


def split_blank(coinc: np.ndarray) -> tuple[LORs, LORs]:
    """(prompts, delayeds) of sorted coincidences."""
    delayed = coinc["delayed"] != 0
    return LORs.from_coinc(coinc, ~delayed), LORs.from_coinc(coinc, delayed)


def geometric_factors(scanner: Scanner, seconds: float = MODEL_SECONDS, threads: int = 1
                      ) -> np.ndarray:
    """(N,) what :func:`fit_blank` gives for each crystal of the scanner's model
    (:func:`~recon.calibration.modelfactors.alike_model`), averaged over the crystals that the
    ring's symmetries make alike: the part of a blank fit that is geometry (the material a gamma
    crosses leaving its module, the axial ends), which the analytic ``h`` leaves out. Shipped
    for the built-in scanners' models; for another model, measured once from a blank scan of
    ``seconds`` that the emulator makes of it, and cached (:mod:`recon.calibration.modelfactors`)."""
    return model_factors(scanner, blank_key(seconds),
                         lambda: model_blank_fit(scanner, seconds, threads))


def blank_key(seconds: float = MODEL_SECONDS) -> str:
    """What names the factors of a model's blank scan of ``seconds`` (shipped and cached)."""
    return "|".join(["blank-geometry-v2", f"{seconds:g}", f"{LU176_WINDOW_KEV}",
                     str(BLANK_SECTOR_DIFFERENCE)])


def model_blank_fit(scanner: Scanner, seconds: float = MODEL_SECONDS, threads: int = 1
                    ) -> np.ndarray:
    """(N,) :func:`geometric_factors` emulated: the class means of :func:`fit_blank` of a blank
    scan of ``seconds`` of the scanner's model."""
    import emulator

    progress = Progress(f"geometric factors of {scanner.name}'s blank scan (once)", 3,
                        unit="steps")
    model = alike_model(scanner)
    raw = emulator.simulate(model, "blank", "F-18", 0.0, seconds, seed=20261126,
                            threads=threads).raw
    progress.update(1)
    singles = np.empty(raw.size, SINGLE_DTYPE)
    singles["t"], singles["crystal"] = raw["t"], raw["crystal"]
    kev = (model.digitizer.kev_per_adc_code / model.crystal_gains()).astype(np.float32)
    singles["energy"] = raw["adc"].astype(np.float32) * kev[raw["crystal"]]
    prompts, delayeds = sort_blank(singles, model, threads)
    progress.update(2)
    eff, fit = fit_blank(prompts, delayeds, model, BLANK_SECTOR_DIFFERENCE)
    progress.close(3)
    return class_means(eff, symmetry_classes(model), ~fit.dead & ~fit.noisy)


def estimate(singles: np.ndarray, scanner: Scanner, threads: int = 1
             ) -> tuple[np.ndarray, BlankFit]:
    """(efficiency, fit) of each crystal from a blank scan's singles (hw.SINGLE_DTYPE, keV):
    sorted in the Lu-176 window, fitted by fan sums, the geometric factors divided out; mean 1
    over the live crystals, 0 for a dead one."""
    return estimate_sorted(*sort_blank(singles, scanner, threads), scanner, threads)


def estimate_sorted(prompts: LORs, delayeds: LORs, scanner: Scanner, threads: int = 1
                    ) -> tuple[np.ndarray, BlankFit]:
    """:func:`estimate` from a blank scan's coincidences already sorted as
    :func:`blank_sort_settings` says (e.g. by the DAQ's chain, a journal streamed through it)."""
    eff, fit = fit_blank(prompts, delayeds, scanner, BLANK_SECTOR_DIFFERENCE)
    eff = eff / geometric_factors(scanner, threads=threads)
    eff[fit.dead] = 0.0
    eff[~fit.dead] /= eff[~fit.dead].mean()
    return eff, fit


def table(eff: np.ndarray, scanner: Scanner, method: str, created_utc: str = "",
          from_run: str = "") -> CrystalEfficiencies:
    """The stored form of an estimate."""
    return CrystalEfficiencies(eff, scanner.name, scanner.digest, method, created_utc, from_run)
