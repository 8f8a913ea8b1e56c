"""Dynamic reconstruction: a run's list-mode cut into frames, each reconstructed and quantified.

Every frame gets the run's LM-OSEM (TOF, randoms from the frame's own delayeds, one mu-map for
all frames: the run's own estimate from all its coincidences, or, for the DAQ's live frames, which
have not all of them yet, from the scan's opening (:data:`OPENING_PROMPTS`); the sensitivity
image is shared) with the same
number of updates as a run's image (subsets by the frame's prompts, iterations so that subsets x
iterations stays :data:`recon.pet.runimage.RUN_UPDATES`), and is quantified in Bq/mL decay-corrected
to the scan's start and corrected for its own dead time (the run's singles rates in the frame).
Frames are reconstructed one after the other, each on every core, or as tasks
on a Dask cluster's workers, each reading the run's list-mode file where it lies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hw.deadtime import RateTable
from infra.cluster import run_all, worker_threads
from recon.frames import Frame, check_frames
from recon.pet.runimage import (
    RunReconOptions,
    calibration_of,
    dead_time_of,
    describe,
    motion_of,
    mu_map_of,
    nuclide_of,
    osem_counts,
    run_phantom,
    scatter_scale_of,
    schedule,
)
from runstore.facts import RunFacts


@dataclass
class DynamicImage:
    """The frames' images (Bq/mL, decay-corrected to the scan's start) and what they came
    from."""

    frames: list[Frame]
    images: list[Any]
    decay_factors: list[float]
    """Per frame: the factor that took its mean activity to the activity at the scan's start."""
    prompts: list[int]
    updates: list[int]
    """Per frame: the LM-OSEM updates (iterations x subsets)."""
    facts: RunFacts
    quantified: Any
    """The DICOM description (radiopharmaceutical, acquisition) of the series."""
    mu_map: Any = None
    """The frames' attenuation (:class:`recon.corrections.attenuation.MuMap`)."""

    @property
    def array(self) -> np.ndarray:
        """[x, y, z, frame] float32."""
        return np.stack([np.asarray(i.array, np.float32) for i in self.images], axis=-1)


def frame_options(options: RunReconOptions, coinc: np.ndarray) -> RunReconOptions:
    """The options of a frame: as a run's image (:func:`recon.pet.runimage.schedule`), every frame
    given :data:`recon.pet.runimage.RUN_UPDATES` updates (a short frame is not left unconverged)
    even where ``options`` ask for fewer iterations; more where they ask for more."""
    chosen = schedule(replace(options, iterations=None), coinc)
    return replace(chosen, iterations=max(options.iterations or 1, chosen.iterations))


@dataclass(frozen=True)
class FrameImage:
    """One frame's image (Bq/mL at the scan's start) and what it came from."""

    frame: Frame
    image: Any
    decay_factor: float
    """The factor that took the frame's mean activity to the activity at the scan's start."""
    prompts: int
    updates: int


#: Prompts of a scan's opening, whose calculated mu-map the DAQ's live frames take (they cannot
#: wait for the whole run): the first frames' until they hold this many.
OPENING_PROMPTS = 300_000


@dataclass(frozen=True)
class FrameRecon:
    """What every frame of a run shares (scanner, sorter header, phantom, nuclide, calibration,
    options): the one reconstruction of a frame, for ``petdaq recon --frames`` and the DAQ's
    live frames alike."""

    scanner: Any
    header: dict[str, Any]
    facts: RunFacts
    phantom: Any
    half_life_s: float | None
    branching: float
    calibration: float
    options: RunReconOptions
    scatter_scale: float | None = None
    """The scatter estimate's scale fitted to the whole run (with ``options.scatter``)."""
    motion: Any = None
    """The head's pose over the run (:class:`hw.motion.MotionTrace`) the frames are corrected
    for, event by event; None: none."""
    mu_maps: list[Any] = field(default_factory=list)
    """The frames' one mu-map (:class:`recon.corrections.attenuation.MuMap`), once known: the
    run's (:meth:`of_run` with its coincidences), else the first frame's (:meth:`reconstruct`)."""

    @property
    def mu_map(self) -> Any:
        """The frames' mu-map, None before :meth:`take_mu_map_of` or the first frame of a run
        given without its coincidences."""
        return self.mu_maps[0] if self.mu_maps else None

    def take_mu_map_of(self, coinc: np.ndarray) -> None:
        """Take the map ``options.mu_map`` gives for ``coinc`` as every frame's (the DAQ's live
        frames: the scan's opening, :data:`OPENING_PROMPTS`)."""
        self.mu_maps[:] = [mu_map_of(coinc, self.header, self.facts, self.phantom, self.scanner,
                                     self.options)]

    @classmethod
    def of_run(cls, header: dict[str, Any], facts: RunFacts, scanner: Any,
               options: RunReconOptions | None = None, coinc: np.ndarray | None = None
               ) -> FrameRecon:
        """``coinc``: all of the run's coincidences, which scale the frames' scatter estimates
        (with ``options.scatter``)."""
        options = options or RunReconOptions()
        half_life, branching = nuclide_of(facts)
        phantom = run_phantom(facts, scanner)
        trace = (motion_of(coinc, facts, phantom, scanner, options, facts.duration_s)
                 if coinc is not None else None)
        mu = (mu_map_of(coinc, header, facts, phantom, scanner, options, trace)
              if coinc is not None else None)
        scale = (scatter_scale_of(coinc, header, mu, scanner, options)
                 if coinc is not None else None)
        return cls(scanner, header, facts, phantom, half_life, branching,
                   calibration_of(options, scanner), options, scale, trace,
                   [mu] if mu is not None else [])

    def reconstruct(self, part: np.ndarray, frame: Frame, rates: RateTable | None = None
                    ) -> FrameImage:
        """The image of ``frame`` from its coincidences ``part``, corrected for dead time with
        the run's singles ``rates`` (None: not corrected)."""
        import recon

        chosen = frame_options(self.options, part)
        if not self.mu_maps:
            self.mu_maps.append(mu_map_of(part, self.header, self.facts, self.phantom,
                                          self.scanner, self.options))
        counts = osem_counts(part, self.header, self.mu_map, self.scanner, chosen,
                             scatter_scale=self.scatter_scale, motion=self.motion,
                             facts=self.facts, span_s=(frame.start_s, frame.stop_s))
        image = recon.activity_concentration(counts, frame.duration_s, self.branching,
                                             self.half_life_s, self.calibration,
                                             dead_time_of(part, self.scanner, rates))
        lam = math.log(2.0) / self.half_life_s if self.half_life_s else 0.0
        since_start = math.exp(lam * frame.start_s)
        image = image.scaled(since_start, "Bq/mL")
        return FrameImage(frame, image, image.meta["decay_factor"] * since_start,
                          int(np.count_nonzero(part["delayed"] == 0)),
                          chosen.iterations * chosen.subsets)


def frame_events(coinc: np.ndarray, t_s: np.ndarray, frame: Frame) -> np.ndarray:
    """The coincidences of ``frame`` (``t_s``: their times in s)."""
    return coinc[(t_s >= frame.start_s) & (t_s < frame.stop_s)]


_READ: dict[str, tuple[np.ndarray, RateTable | None]] = {}


def frame_task(recon_of: FrameRecon, listmode: str, frame: Frame) -> FrameImage:
    """One frame on a cluster worker, with the worker's threads; the run's list-mode file is
    read once per worker."""
    from recon.threads import max_threads, set_threads
    from runstore.listmode import read_listmode, read_singles_rates

    set_threads(min(worker_threads(), max_threads()))
    if listmode not in _READ:
        _READ.clear()
        _READ[listmode] = (read_listmode(listmode)[0], read_singles_rates(listmode))
    coinc, rates = _READ[listmode]
    return recon_of.reconstruct(frame_events(coinc, coinc["t"] * 1e-12, frame), frame, rates)


def reconstruct_frames(coinc: np.ndarray, header: dict[str, Any], facts: RunFacts, scanner: Any,
                       frames: list[Frame], options: RunReconOptions | None = None,
                       on_frame: Callable[[Frame], None] | None = None,
                       cluster: tuple[Any, str] | None = None) -> DynamicImage:
    """Reconstruct each of ``frames`` (acquisition seconds from list-mode time 0) of a run's
    coincidences, corrected for dead time with its singles rates (``facts.singles_rates``);
    ``on_frame(frame)`` once each is done. ``cluster``: (a ``distributed.Client``, the
    list-mode file of ``coinc``, whose rates the workers read) to reconstruct the frames on its
    workers."""
    t_s = coinc["t"] * 1e-12
    check_frames(frames, t_s[coinc["delayed"] == 0], facts.duration_s)
    recon_of = FrameRecon.of_run(header, facts, scanner, options, coinc)
    if cluster is not None:
        client, listmode = cluster
        shared = client.scatter(recon_of, broadcast=True, hash=False)
        done = run_all(client, frame_task, [(shared, listmode, f) for f in frames],
                       label="frames", unit="frames")
    else:
        done = []
        for f in frames:
            done.append(recon_of.reconstruct(frame_events(coinc, t_s, f), f,
                                             facts.singles_rates))
            if on_frame is not None:
                on_frame(f)
    updates = [d.updates for d in done]
    few, most = min(updates), max(updates)
    images = [d.image for d in done]
    method = (f"LM-OSEM {few}{'' if few == most else f'-{most}'} updates a frame"
              + (" TOF" if images[0].meta.get("tof") else ""))
    quantified = describe(facts, images[0].meta, frames[-1].stop_s, "PET LM-OSEM dynamic",
                          method)
    return DynamicImage(frames, images, [d.decay_factor for d in done],
                        [d.prompts for d in done], updates, facts, quantified, recon_of.mu_map)
