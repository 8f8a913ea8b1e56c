"""A PET scan's own mu-map when it has none measured: the calculated map of the outline of its
emission image without attenuation correction (:mod:`recon.corrections.attenuation`), with the
large cold regions of a body that is not a head taken as lung (:mod:`recon.corrections.lungs`).

The emission image is :data:`UPDATES` updates (fewer for few prompts) of TOF list-mode EM over at most
:data:`MAX_PROMPTS` prompts (a spread sample: the outline needs the edge, not the counts) on a
grid of at least 1 mm voxels (4 mm under :data:`FEW_PROMPTS`), with randoms and the crystals'
normalization, and no attenuation; of a head that moved, corrected for its motion event by event
(:func:`recon.motion.correct.motion_osem`), so the outline is the head's at rest drawn from all
its prompts.
"""

from __future__ import annotations

import numpy as np

from hw.motion import MotionTrace
from hw.scanner import Scanner
from infra.errors import UserError
from recon.corrections import attenuation, lungs, phantommaps
from recon.corrections.attenuation import MuMap
from recon.grid import Grid, Image, default_grid
from recon.motion.correct import motion_osem
from recon.pet.osem import lm_osem
from recon.pet.system import PairFactor

#: Prompts the outline's emission image is made of, at most (a spread sample of the scan's).
MAX_PROMPTS = 1_000_000
#: EM updates of the outline's emission image (2 iterations of 5 subsets, fewer subsets for
#: fewer prompts): a first update leaves the edge too blurred to draw.
UPDATES, SUBSETS = 10, 5
#: Prompts per update, at least 2 updates: more updates of few events make the image spiky (a
#: 20 cm cylinder's 50 k prompts after 10 updates: voxels from 0 to 14 times the mean).
PROMPTS_PER_UPDATE = 20_000
#: Monte-Carlo LORs of the outline image's sensitivity (no mu-map: cached once per grid).
SAMPLES = 10_000_000
#: The outline image's voxel is the scanner's, but no finer than this (mm).
FINEST_VOXEL_MM = 1.0
#: Under this many prompts, the outline image's voxels are at least :data:`FEW_PROMPTS_VOXEL_MM`
#: (a 20 cm cylinder's 50 k prompts over 2 mm voxels leave its EM image too sparse to outline).
FEW_PROMPTS, FEW_PROMPTS_VOXEL_MM = 500_000, 4.0


def estimate(coinc: np.ndarray, scanner: Scanner, body_part: str | None = None, *,
             tof: bool = True, window_ps: float | None = None,
             min_sector_difference: int | None = None,
             normalization: PairFactor | None = None, phantom: str | None = None,
             phantom_sure: bool = True, motion: MotionTrace | None = None,
             scan_stop_s: float | None = None) -> MuMap:
    """The calculated mu-map of COINC_DTYPE coincidences (a head's when ``body_part`` is one,
    :func:`recon.corrections.attenuation.is_head`); of a ``phantom`` of known construction, its
    construction's, placed on the emission (:mod:`recon.corrections.phantommaps`). A phantom
    not found in the emission is an error when ``phantom_sure`` (the user named it), else the
    outline's map is taken. ``motion``: the head's pose over a scan of ``scan_stop_s``
    seconds, the map the head's at rest."""
    nac = emission_without_attenuation(coinc, scanner, tof=tof, window_ps=window_ps,
                                       min_sector_difference=min_sector_difference,
                                       normalization=normalization, motion=motion,
                                       scan_stop_s=scan_stop_s)
    try:
        mu, words = _template(phantom, nac, coinc, scanner)
    except UserError:
        if phantom_sure:
            raise
        mu, words = None, ""
    if mu is None:
        mu, words = calculated_map(nac.array, nac.grid, body_part)
    mu.meta.update(method="calculated", body_part=body_part or "", prompts=nac.meta["events"])
    return MuMap(mu, "calculated", words)


def _template(phantom: str | None, nac: Image, coinc: np.ndarray, scanner: Scanner
              ) -> tuple[Image | None, str]:
    """(the map of ``phantom``'s construction placed on ``nac``, its words), (None, "") for a
    phantom without one (:mod:`recon.corrections.phantommaps`)."""
    if not phantommaps.has_template(phantom):
        return None, ""
    return (phantommaps.template_map(phantom, nac, _line_ends(coinc, scanner)),
            f"calculated: {phantommaps.TEMPLATES[phantom]}, on the emission")


def _line_ends(coinc: np.ndarray, scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """The crystals (mm) at the two ends of each prompt of a spread sample of ``coinc``."""
    prompts = spread_sample(coinc, MAX_PROMPTS)
    prompts = prompts[prompts["delayed"] == 0]
    return (scanner.crystal_centres[prompts["crystal_a"]],
            scanner.crystal_centres[prompts["crystal_b"]])


def calculated_map(counts: np.ndarray, grid: Grid, body_part: str | None) -> tuple[Image, str]:
    """(the calculated mu-map of an emission image without attenuation correction on ``grid``,
    the words that name it): water in the outline, a skull for a head, lungs in another body
    (their volume in the map's ``meta["lung_ml"]``)."""
    body = attenuation.outline(counts, grid.voxel_mm)
    head = attenuation.is_head(body_part)
    layers = attenuation.HEAD if head else None
    beyond = attenuation.tissue(counts, grid.voxel_mm) if head else None
    mu = attenuation.calculated(body, grid, layers, beyond)
    words = "calculated: outline of the emission, water" + (
        f", {layers.words()}, tissue beyond" if head else "")
    if not head:
        share = lungs.lung_share(counts, body, grid.voxel_mm)
        if share.any():
            lung_ml = lungs.volume_ml(share, grid.voxel_mm)
            mu = grid.image(lungs.with_lungs(mu.array, share), "1/mm")
            mu.meta["lung_ml"] = round(lung_ml, 1)
            words += f", lungs {lung_ml:.0f} mL"
    return mu, words


def emission_without_attenuation(coinc: np.ndarray, scanner: Scanner, *, tof: bool = True,
                                 window_ps: float | None = None,
                                 min_sector_difference: int | None = None,
                                 normalization: PairFactor | None = None,
                                 motion: MotionTrace | None = None,
                                 scan_stop_s: float | None = None) -> Image:
    """The emission image the outline is drawn on (see the module docstring), in counts."""
    sample = spread_sample(coinc, MAX_PROMPTS)
    prompts = int(np.count_nonzero(sample["delayed"] == 0))
    voxel = max(scanner.default_voxel_mm, FINEST_VOXEL_MM)
    if prompts < FEW_PROMPTS:
        voxel = max(voxel, FEW_PROMPTS_VOXEL_MM)
    grid = default_grid(scanner, voxel)
    updates = int(np.clip(prompts // PROMPTS_PER_UPDATE, 2, UPDATES))
    subsets = max(d for d in range(1, SUBSETS + 1)
                  if updates % d == 0 and d <= max(1, prompts // 100_000))
    if motion is not None:
        stop_s = scan_stop_s or float(coinc["t"].max()) * 1e-12
        return motion_osem(sample, scanner, motion, stop_s, grid, updates // subsets, subsets,
                           tof, "delayed", window_ps=window_ps,
                           min_sector_difference=min_sector_difference,
                           sensitivity_samples=SAMPLES, normalization=normalization)
    return lm_osem(sample, scanner, grid, updates // subsets, subsets, tof, "delayed",
                   window_ps=window_ps, min_sector_difference=min_sector_difference,
                   sensitivity_samples=SAMPLES, normalization=normalization)


def spread_sample(coinc: np.ndarray, most: int) -> np.ndarray:
    """Every k-th row of ``coinc`` (k the least that keeps at most ``most`` prompts): prompts
    and delayeds thinned alike, so the randoms estimate stays in proportion."""
    prompts = int(np.count_nonzero(coinc["delayed"] == 0))
    step = max(1, -(-prompts // most))
    return coinc if step == 1 else coinc[::step]
