"""One reconstruction of a run's coincidences into a quantified image, with one set of defaults:
the DAQ's final image at the stop and ``petdaq recon`` both make it here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hw.deadtime import RateTable, correction_factor
from infra.errors import UserError
from runstore.facts import RunFacts

RUN_ITERATIONS = 2
"""LM-OSEM iterations of a run's image at the most subsets (those of the scanners'
cross-calibration, ``python -m recon.calibration.crosscal``)."""
RUN_UPDATES = RUN_ITERATIONS * 10
"""EM updates (iterations x subsets) of a run's or a frame's image by default: those of the
cross-calibration (:data:`RUN_ITERATIONS` at 10 subsets), so that a short scan, given fewer
subsets, is not left less converged than the calibration (:func:`schedule`)."""


@dataclass(frozen=True)
class RunReconOptions:
    """How a run is reconstructed (the defaults are the product's)."""

    iterations: int | None = None
    """None: :data:`RUN_UPDATES` updates at the subsets (:func:`schedule`)."""
    subsets: int | None = None
    """None: by the prompts (:func:`schedule`)."""
    tof: bool = True
    randoms: bool = True
    """Randoms from the delayed coincidences."""
    mu_map: str = "estimate"
    """The attenuation: ``estimate`` (the scan's calculated map, :mod:`recon.pet.mumap`),
    ``truth`` (an emulated run's phantom, for validation), ``none``, or a NIfTI file's path
    (1/mm, or a CT in HU: :func:`recon.corrections.attenuation.load`)."""
    scatter: bool = False
    """Scatter correction (single-scatter simulation scaled to the tails, :mod:`recon.corrections.scatter`);
    it needs a mu-map."""
    voxel_mm: float | None = None
    """The image's voxel (mm); None: the scanner's ``default_voxel_mm`` (:func:`voxel_of`)."""
    sensitivity_samples: int | None = None
    calibration: float | None = None
    """Reconstructed counts per true annihilation; None: the scanner's
    ``counts_per_annihilation``."""
    normalization: str = "stored"
    """The crystals' efficiencies: ``stored`` (the scanner's newest table, none when it has
    none), ``truth`` (an emulated scanner's own, for validation), ``none``, or a table's path
    (:func:`recon.corrections.normalization.resolve`)."""
    body_part: str | None = None
    """What was scanned, for the calculated mu-map (None: the run's study's)."""
    phantom: str | None = None
    """The standard phantom scanned, for a run that names none (a real scan): the calculated
    mu-map of one of known construction is its construction's
    (:mod:`recon.corrections.phantommaps`)."""
    motion: str = "auto"
    """Head motion (:mod:`recon.motion.runmotion`): ``auto`` (a head scan whose prompts show
    motion: the pose estimated from them, corrected event by event), ``none``, or an external
    tracker's trace file (:mod:`hw.motion`)."""


@dataclass
class RunImage:
    """A run's image (Bq/mL when the run's duration is known), its DICOM description
    (``quantified``: radiopharmaceutical and acquisition, or None), the run's phantom and the
    attenuation it took (:class:`recon.corrections.attenuation.MuMap`)."""

    image: Any
    quantified: Any
    phantom: Any
    mu_map: Any = None
    motion: Any = None
    """The head's pose the image was corrected for (:class:`hw.motion.MotionTrace`; None)."""


def reconstruct_run(coinc: np.ndarray, header: dict[str, Any], facts: RunFacts,
                    scanner: Any, options: RunReconOptions = RunReconOptions(),
                    callback: Callable[[int, int, Any], None] | None = None,
                    say: Callable[[str], None] | None = None) -> RunImage:
    """LM-OSEM of a run's coincidences (``header``: the list-mode header; ``facts``: what the
    run's documents and list-mode file say of it) with TOF, randoms from the delayeds and the
    phantom's attenuation as ``options`` say, quantified in Bq/mL and corrected for dead time
    with the run's singles rates. ``callback(iteration, subset, image)`` after each subset;
    ``say`` hears how the head's motion is estimated, when it is."""
    phantom = run_phantom(facts, scanner)
    trace = motion_of(coinc, facts, phantom, scanner, options, _duration_s(coinc, facts), say)
    mu = mu_map_of(coinc, header, facts, phantom, scanner, options, trace)
    image = osem_counts(coinc, header, mu, scanner, options, callback, motion=trace,
                        facts=facts)
    image, quantified = quantify(image, coinc, facts, calibration_of(options, scanner),
                                 dead_time_of(coinc, scanner, facts.singles_rates))
    return RunImage(image, quantified, phantom, mu, trace)


def motion_of(coinc: np.ndarray, facts: RunFacts, phantom: Any, scanner: Any,
              options: RunReconOptions, duration_s: float | None,
              say: Callable[[str], None] | None = None) -> Any:
    """The head's pose ``options.motion`` names for a run (:func:`recon.motion.runmotion.run_motion`;
    the body part is the options', else the study's, else the emulated phantom's)."""
    from recon.motion.runmotion import run_motion

    body_part = options.body_part or facts.study.body_part or (
        phantom.body_part if phantom is not None else None)
    return run_motion(coinc, scanner, options.motion, duration_s, body_part, say,
                      facts.kinetic_time_scale)


def mu_map_of(coinc: np.ndarray, header: dict[str, Any], facts: RunFacts, phantom: Any,
              scanner: Any, options: RunReconOptions, motion: Any = None) -> Any:
    """The attenuation ``options.mu_map`` names for a run
    (:class:`recon.corrections.attenuation.MuMap`): estimated from the coincidences (of a head
    that moved as ``motion`` says, :class:`hw.motion.MotionTrace`: the head's at rest), the
    emulated ``phantom``'s own, a file's, or none."""
    from recon.corrections import attenuation, normalization
    from recon.corrections.attenuation import MuMap

    choice = options.mu_map
    if choice == attenuation.NONE:
        return MuMap.none()
    if choice == attenuation.TRUTH:
        if phantom is None:
            raise UserError("--mu-map truth needs an emulated run (its phantom's own map): this "
                            "run names no phantom")
        import recon

        grid = recon.default_grid(scanner, voxel_of(options, scanner))
        return MuMap(grid.image(phantom.mu_map(grid, 511.0), "1/mm"), attenuation.TRUTH,
                     f"emulated phantom's own mu-map ({phantom.name}; validation)")
    import recon

    grid = recon.default_grid(scanner, voxel_of(options, scanner))
    if choice != attenuation.ESTIMATE:
        return attenuation.on_grid(attenuation.load(choice), grid)
    from recon.pet.mumap import estimate

    window = header.get("window_ps")
    body_part = options.body_part or facts.study.body_part or (
        phantom.body_part if phantom is not None else None)
    return attenuation.on_grid(estimate(
        coinc, scanner, body_part, tof=options.tof,
        window_ps=window if window and window > 0 else None,
        min_sector_difference=header.get("min_sector_difference"),
        normalization=normalization.resolve(options.normalization, scanner),
        phantom=options.phantom or facts.phantom, phantom_sure=options.phantom is not None,
        motion=motion, scan_stop_s=_duration_s(coinc, facts)), grid)


def dead_time_of(coinc: np.ndarray, scanner: Any, rates: RateTable | None) -> float:
    """The dead-time correction of these coincidences' image over the cross-calibration's
    (:mod:`hw.deadtime`): 1 without singles rates or the scanner's dead-time model."""
    if rates is None or not scanner.singles_dead_time_ns:
        return 1.0
    prompts = coinc[coinc["delayed"] == 0]
    factor = correction_factor(rates, scanner, scanner.singles_dead_time_ns, prompts["t"],
                               prompts["crystal_a"], prompts["crystal_b"])
    return factor / scanner.calibration_dead_time_factor


def osem_counts(coinc: np.ndarray, header: dict[str, Any], mu_map: Any, scanner: Any,
                options: RunReconOptions,
                callback: Callable[[int, int, Any], None] | None = None,
                scatter_scale: float | None = None, motion: Any = None,
                facts: RunFacts | None = None,
                span_s: tuple[float, float] | None = None) -> Any:
    """The LM-OSEM image (counts) of coincidences as ``options`` say, with the attenuation of
    ``mu_map`` (:class:`recon.corrections.attenuation.MuMap`, :func:`mu_map_of`; None: none)
    and the sorter's settings from ``header``; with ``options.scatter`` a first image without
    scatter correction gives the scatter estimate, scaled by ``scatter_scale`` (None: fitted to
    these coincidences' tails). ``motion``: the head's pose over the scan
    (:class:`hw.motion.MotionTrace`, ``facts`` the run's), corrected event by event
    (:func:`recon.motion.correct.motion_osem`; the scatter estimate then ignores the motion)
    over ``span_s`` (a frame's window; None: the run's)."""
    import recon
    from recon.corrections import normalization

    options = schedule(options, coinc)
    grid = recon.default_grid(scanner, voxel_of(options, scanner))
    mu = mu_map.image if mu_map is not None else None
    window = header.get("window_ps")
    subsets = options.subsets
    norm = normalization.resolve(options.normalization, scanner)

    def osem(iterations: int, scatter: np.ndarray | None, call: Any) -> Any:
        if motion is not None:
            return _motion_osem(coinc, header, mu, scanner, options, motion, facts, norm,
                                iterations, scatter, call, span_s)
        return recon.lm_osem(
            coinc, scanner, grid, iterations, subsets, options.tof,
            "delayed" if options.randoms else None, mu, callback=call,
            window_ps=window if window and window > 0 else None,
            min_sector_difference=header.get("min_sector_difference"),
            sensitivity_samples=options.sensitivity_samples, scatter=scatter,
            normalization=norm)

    if not options.scatter:
        return _noted(osem(options.iterations, None, callback), norm, options, scanner, mu_map)
    if mu is None:
        raise UserError("scatter correction needs a mu-map (not --no-attenuation)")
    from recon.pet.scattercorr import scatter_additive
    from recon.pet.system import min_sector_difference

    first = osem(scatter_first_iterations(subsets), None, None)
    k = min_sector_difference(scanner, header.get("min_sector_difference"))
    additive, fraction = scatter_additive(
        coinc, scanner, grid, np.asarray(mu.array), np.asarray(first.array),
        tuple(header["energy_window_kev"]), options.tof, k, scatter_scale, norm)
    image = osem(options.iterations, additive, callback)
    image.meta["scatter_fraction"] = round(fraction, 4)
    return _noted(image, norm, options, scanner, mu_map)


def _motion_osem(coinc: np.ndarray, header: dict[str, Any], mu: Any, scanner: Any,
                 options: RunReconOptions, motion: Any, facts: RunFacts | None, norm: Any,
                 iterations: int, scatter: np.ndarray | None, call: Any,
                 span_s: tuple[float, float] | None) -> Any:
    """:func:`recon.motion.correct.motion_osem` of a run's coincidences as ``options`` say,
    over ``span_s`` (None: the run's time)."""
    import recon
    from recon.motion.correct import decay_constant_per_s, motion_osem

    half_life = nuclide_of(facts)[0] if facts is not None else None
    window = header.get("window_ps")
    scan_s = (_duration_s(coinc, facts) if facts is not None else None) or float(
        coinc["t"].max()) * 1e-12
    span_s = span_s if span_s is not None else (0.0, scan_s)
    return motion_osem(
        coinc, scanner, motion, span_s[1], recon.default_grid(scanner, voxel_of(options, scanner)),
        iterations, options.subsets, options.tof, "delayed" if options.randoms else None, mu,
        window_ps=window if window and window > 0 else None,
        min_sector_difference=header.get("min_sector_difference"),
        sensitivity_samples=options.sensitivity_samples,
        normalization=norm, decay_per_s=decay_constant_per_s(half_life), scatter=scatter,
        callback=call, start_s=span_s[0], scan_stop_s=scan_s)


def _noted(image: Any, table: Any, options: RunReconOptions, scanner: Any, mu_map: Any) -> Any:
    """``image`` with the normalization and the attenuation it took in its meta
    (``normalization_table``: the table's path, or why there was none;
    ``attenuation_method``: the mu-map's words)."""
    from recon.corrections import normalization

    note = normalization.describe(table, options.normalization, scanner)
    image.meta["normalization_table"] = note.get("table") or note.get("why") or note["method"]
    image.meta["attenuation_method"] = mu_map.description if mu_map is not None else "none"
    return image


def scatter_scale_of(coinc: np.ndarray, header: dict[str, Any], mu_map: Any, scanner: Any,
                     options: RunReconOptions) -> float | None:
    """The scatter estimate's scale fitted to all of a run's coincidences (for its frames), or
    None without scatter correction (or without a mu-map)."""
    if not (options.scatter and mu_map is not None and mu_map.image is not None):
        return None
    import recon
    from recon.corrections import normalization
    from recon.pet.scattercorr import run_scale
    from recon.pet.system import min_sector_difference

    grid = recon.default_grid(scanner, voxel_of(options, scanner))
    subsets = schedule(options, coinc).subsets
    first = osem_counts(coinc, header, mu_map, scanner,
                        replace(options, scatter=False, subsets=subsets,
                                iterations=scatter_first_iterations(subsets)))
    return run_scale(coinc, scanner, grid, np.asarray(mu_map.image.array), np.asarray(first.array),
                     tuple(header["energy_window_kev"]),
                     min_sector_difference(scanner, header.get("min_sector_difference")),
                     normalization.resolve(options.normalization, scanner))


#: Updates of the first image (without scatter correction) that the scatter estimate is
#: simulated from. The estimate depends on how far that image has converged (one MLEM update
#: from a uniform image leaves activity in the air and gives less scatter), so every
#: reconstruction, a whole run's or a short frame's with one subset, gets the same number.
SCATTER_FIRST_UPDATES = 10


def scatter_first_iterations(subsets: int) -> int:
    """Iterations of ``subsets`` subsets that give the first image
    :data:`SCATTER_FIRST_UPDATES` updates (at least)."""
    return max(1, -(-SCATTER_FIRST_UPDATES // max(1, subsets)))


def voxel_of(options: RunReconOptions, scanner: Any) -> float:
    """The image's voxel (mm): the option's, else the scanner's default."""
    return options.voxel_mm if options.voxel_mm is not None else scanner.default_voxel_mm


def calibration_of(options: RunReconOptions, scanner: Any) -> float:
    """Reconstructed counts per true annihilation: the option's, else the scanner's (with
    scatter correction, its scatter-corrected factor where it has one)."""
    if options.calibration is not None:
        return options.calibration
    corrected = scanner.scatter_corrected_counts_per_annihilation
    return corrected if options.scatter and corrected else scanner.counts_per_annihilation


def _duration_s(coinc: np.ndarray, facts: RunFacts) -> float | None:
    if facts.duration_s:
        return float(facts.duration_s)
    if coinc.size > 1:
        return float(coinc["t"].max() - coinc["t"].min()) * 1e-12
    return None


#: Prompts per subset of the default subset count (:func:`default_subsets`).
EVENTS_PER_SUBSET = 50_000


def default_subsets(coinc: np.ndarray, most: int = 10) -> int:
    """One subset per :data:`EVENTS_PER_SUBSET` prompts, 1 to ``most``. List-mode OSEM with too
    few events per subset is biased low (on bedside-brain's calibration cylinder, the central
    region's mean after 2 iterations is within 2 % of the converged value from 19 k to 190 k
    events per subset, 15 % low at 9 k), so short acquisitions get fewer subsets."""
    prompts = int(np.count_nonzero(coinc["delayed"] == 0))
    return int(np.clip(prompts // EVENTS_PER_SUBSET, 1, most))


def schedule(options: RunReconOptions, coinc: np.ndarray) -> RunReconOptions:
    """``options`` with the subsets and iterations settled: the subsets given, else one per
    :data:`EVENTS_PER_SUBSET` prompts (:func:`default_subsets`) down to a divisor of
    :data:`RUN_UPDATES`; the iterations given, else enough for :data:`RUN_UPDATES` updates
    (a scan of 60 k prompts: 1 subset, 20 iterations; of 5 M: 10 subsets, 2 iterations)."""
    subsets = options.subsets or max(d for d in range(1, default_subsets(coinc) + 1)
                                     if RUN_UPDATES % d == 0)
    iterations = options.iterations or max(RUN_ITERATIONS, -(-RUN_UPDATES // subsets))
    return replace(options, subsets=subsets, iterations=iterations)


def run_phantom(facts: RunFacts, scanner: Any) -> Any:
    """The emulated phantom the run names (:class:`emulator.phantoms.Phantom`), or None for a
    run from real detectors."""
    if not facts.phantom:
        return None
    from emulator import phantoms

    return phantoms.get(facts.phantom, scanner)


def quantify(image: Any, coinc: np.ndarray, facts: RunFacts, calibration: float,
             dead_time: float = 1.0) -> tuple[Any, Any]:
    """The image in Bq/mL with its DICOM description when the run's duration is known (and its
    nuclide, for decay and branching); otherwise the image in counts and None.
    ``calibration``: the scanner's
    :attr:`hw.scanner.Scanner.counts_per_annihilation` as a rule; ``dead_time``:
    :func:`dead_time_of`."""
    import recon

    duration = _duration_s(coinc, facts)
    if not duration:
        return image, None
    half_life, branching = nuclide_of(facts)
    image = recon.activity_concentration(image, duration, branching, half_life, calibration,
                                         dead_time)
    return image, describe(facts, image.meta, duration)


def nuclide_of(facts: RunFacts) -> tuple[float | None, float]:
    """(half-life s or None, positron fraction) of the run's nuclide (unknown: no decay, 1)."""
    if not facts.nuclide:
        return None, 1.0
    from hw import nuclides

    nuclide = nuclides.get(facts.nuclide)
    return nuclide.half_life_s, nuclide.positron_fraction


def describe(facts: RunFacts, meta: dict[str, Any], duration_s: float,
             series: str = "PET LM-OSEM", reconstruction: str | None = None
             ) -> tuple[Any, Any]:
    """The DICOM description (radiopharmaceutical, acquisition) of a run's image: the study's
    injection and patient where the run has them (an emulated static scan: its activity at the
    start), the reconstruction (``reconstruction``, else from the image's ``meta``) and the
    corrections from ``meta``."""
    import recon

    half_life, branching = nuclide_of(facts)
    start = (dt.datetime.fromisoformat(facts.start_utc) if facts.start_utc
             else dt.datetime.now(dt.UTC))
    study = facts.study
    injected = study.injected_mbq or facts.activity_mbq
    injection = (dt.datetime.fromisoformat(study.injection_time_utc)
                 if study.injection_time_utc else start)
    rp = recon.Radiopharmaceutical(
        facts.nuclide or "unknown", half_life or 0.0, branching,
        float(injected) * 1e6 if injected else 0.0, injection,
        study.radiopharmaceutical or "")
    corrections = tuple(c for c, on in (("RAN", meta.get("randoms") != "none"),
                                        ("ATTN", meta.get("attenuation")),
                                        ("SCAT", meta.get("scatter"))) if on)
    acq = recon.Acquisition(
        start, duration_s, scanner=facts.scanner,
        reconstruction=reconstruction or (
            f"LM-OSEM {meta.get('iterations')}i{meta.get('subsets')}s"
            + (" TOF" if meta.get("tof") else "")),
        corrections=corrections, series_description=series,
        attenuation_method=str(meta.get("attenuation_method") or ""),
        **({"patient_id": study.patient_id,
            "patient_name": study.patient_name or study.patient_id} if study.patient_id else {}),
        **({"study_description": study.requested_procedure}
           if study.requested_procedure else {}),
        patient_weight_kg=study.weight_kg, patient_height_m=study.height_m,
        patient_birth_date=study.birth_date or "", patient_sex=study.sex or "",
        accession_number=study.accession_number or "",
        study_instance_uid=study.study_instance_uid or "")
    return rp, acq
