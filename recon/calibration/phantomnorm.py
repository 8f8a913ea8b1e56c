"""Crystal efficiencies from a uniform phantom's run (a water cylinder centred in the field of
view), for a scanner whose crystals have no Lu-176 of their own to make a blank scan.

The run's own coincidences (the scanner's energy window and sector difference) are fitted by fan
sums as a blank scan's are (:func:`recon.calibration.normalization.fit_blank`); what the
phantom's geometry puts into each crystal's fan sum (its chords, attenuation and scatter, the
ring's solid angles) is then divided out: the same fit of a run that the emulator makes of the
scanner's model (every crystal alike) with the same phantom, averaged over the crystals the
ring's symmetries make alike: shipped for the built-in scanners' models, else measured once per
model and phantom and cached (:mod:`recon.calibration.modelfactors`).

What it needs: the phantom where the model has it (centred; a phantom off centre moves counts
between crystals that the model does not move), and counts: a crystal's fan sum has the Poisson
noise of its prompts and delayeds, as for a blank scan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hw.dtypes import COINC_DTYPE, join
from hw.scanner import Scanner
from infra.pool import Workers
from infra.progress import Progress
from recon.calibration.modelfactors import (
    alike_model,
    class_means,
    model_factors,
    symmetry_classes,
)
from recon.calibration.normalization import BlankFit, fit_blank, split_blank
from recon.pet.lors import LORs
from recon.pet.system import min_sector_difference

#: The emulated run of the scanner's model with the phantom that gives the geometric factors.
MODEL_SECONDS, MODEL_ACTIVITY_MBQ = 10.0, 20.0


def phantom_factors(scanner: Scanner, phantom: str, seconds: float | None = None,
                    threads: int = 1) -> np.ndarray:
    """(N,) what the fan-sum fit gives for each crystal of the scanner's model, every crystal
    alike, in a run of ``phantom`` (F-18, :data:`MODEL_ACTIVITY_MBQ`, ``seconds`` default
    :data:`MODEL_SECONDS`), averaged over the crystals alike by symmetry; shipped for the
    built-in scanners' models, else emulated once and cached
    (:mod:`recon.calibration.modelfactors`)."""
    seconds = MODEL_SECONDS if seconds is None else seconds
    return model_factors(scanner, phantom_key(phantom, seconds),
                         lambda: model_phantom_fit(scanner, phantom, seconds, threads))


def phantom_key(phantom: str, seconds: float | None = None) -> str:
    """What names the factors of a model's run of ``phantom`` (shipped and cached)."""
    seconds = MODEL_SECONDS if seconds is None else seconds
    return "|".join(["phantom-geometry-v3", phantom, f"{seconds:g}", f"{MODEL_ACTIVITY_MBQ:g}"])


def model_phantom_fit(scanner: Scanner, phantom: str, seconds: float | None = None,
                      threads: int = 1) -> np.ndarray:
    """(N,) :func:`phantom_factors` emulated: the class means of the fit of a run of
    ``phantom`` of the scanner's model."""
    seconds = MODEL_SECONDS if seconds is None else seconds
    progress = Progress(f"geometric factors of {scanner.name}'s {phantom} (once)", seconds,
                        unit="s")
    model = alike_model(scanner)
    coinc = emulated_coincidences(model, phantom, MODEL_ACTIVITY_MBQ, seconds, 20261127,
                                  threads, lambda s: progress.update(s))
    progress.close(seconds)
    eff, fit = fit_blank(*split_blank(coinc), model, min_sector_difference(model),
                         what=f"the model's {phantom} run")
    return class_means(eff, symmetry_classes(model), ~fit.dead & ~fit.noisy)


def emulated_coincidences(scanner: Scanner, phantom: str, activity_mbq: float, seconds: float,
                          seed: int, threads: int = 1,
                          done: Callable[[float], None] = lambda s: None,
                          motion: Any = None) -> np.ndarray:
    """The prompts and delayeds of an emulated F-18 run, sorted with the scanner's own settings
    by the streaming sorter a second of singles at a time: memory holds the coincidences, not
    the singles, and the output is one sort of the whole run's. ``motion``: the phantom's pose
    over the scan (:class:`hw.motion.MotionTrace`; None: still)."""
    import emulator
    from coincidence.sorter import Sorter

    emu = emulator.Emulator(scanner, phantom, "F-18", activity_mbq, seed, threads=threads,
                            motion=motion)
    workers = Workers(threads, "sort")
    try:
        sorter = Sorter(scanner=scanner, delay_ps=scanner.acquisition["delay_ps"],
                        workers=workers)
        parts = []
        for n, chunk in enumerate(emu.run(seconds, chunk_s=min(1.0, seconds))):
            parts.append(sorter.feed(emulator.calibrated(chunk.raw, scanner)))
            done(min(seconds, n + 1.0))
        parts.append(sorter.flush())
    finally:
        workers.close()
    return join(parts, COINC_DTYPE)


def estimate_sorted(prompts: LORs, delayeds: LORs, scanner: Scanner, phantom: str,
                    threads: int = 1) -> tuple[np.ndarray, BlankFit]:
    """(efficiency, fit) of each crystal from a ``phantom`` run's prompts and delayeds (the
    scanner's own sorting): mean 1 over the live crystals, 0 for a dead one."""
    eff, fit = fit_blank(prompts, delayeds, scanner, min_sector_difference(scanner),
                         what=f"the {phantom} run")
    eff = eff / phantom_factors(scanner, phantom, threads=threads)
    eff[fit.dead] = 0.0
    eff[~fit.dead] /= eff[~fit.dead].mean()
    return eff, fit
