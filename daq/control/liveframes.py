"""Live frames: a dynamic scan's frames reconstructed as each completes, and its regions' curves
published while the scan runs.

Coincidences reach a background thread through a queue that never blocks the sorter (as the live
image's, :mod:`daq.control.live`). A frame is complete once a coincidence a millisecond past its end has
arrived (the sorter emits in time order; a millisecond is far beyond any window or delay); it is
then reconstructed exactly as ``petdaq recon --frames`` reconstructs it
(:class:`recon.pet.dynamic.FrameRecon`, the same events in the same order: the same image), its
regions' means and SDs are appended to the curves, and the curves so far go out on the monitor
stream (topic ``curves``). At the run's end the frames the data reached are finished and the
curves are written to ``RUN/kinetics/live_tacs.csv``. When more coincidences wait than
``max_pending_events``, chunks are dropped from the live frames only (counted as
``live_frames_dropped_events``); a frame that lost events is left out of the live curves, never shown
wrong. The list-mode file has every coincidence.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hw.deadtime import RateTable
from infra.errors import UserError

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter, ThreadClock
    from recon.frames import Frame
    from recon.kinetics.tacs import Curves

#: How far past a frame's end a coincidence proves that the frame is complete (s).
COMPLETE_AFTER_S = 1e-3
_NO_REGIONS = ("live frames of detectors need regions for their curves: give "
               "--sphere NAME:X,Y,Z,R (mm)")


@dataclass
class CurvePoints:
    """The live curves so far: per reconstructed frame its times (kinetic min) and per region
    its mean and SD (Bq/mL)."""

    start_min: list[float]
    duration_min: list[float]
    mean_bq_ml: dict[str, list[float]]
    sd_bq_ml: dict[str, list[float]]
    voxels: dict[str, int]

    def append(self, start_min: float, duration_min: float, image: np.ndarray,
               regions: dict[str, np.ndarray]) -> None:
        self.start_min.append(start_min)
        self.duration_min.append(duration_min)
        for name, mask in regions.items():
            values = image[mask]
            self.mean_bq_ml[name].append(float(values.mean(dtype=np.float64)))
            self.sd_bq_ml[name].append(float(values.std(dtype=np.float64)))

    def curves(self) -> Curves:
        """As :class:`recon.kinetics.tacs.Curves` (for ``tacs.csv``)."""
        from recon.kinetics.tacs import Curves

        return Curves(np.asarray(self.start_min), np.asarray(self.duration_min),
                      {k: np.asarray(v) for k, v in self.mean_bq_ml.items()},
                      {k: np.asarray(v) for k, v in self.sd_bq_ml.items()}, dict(self.voxels))


#: The live frames' mu-map, beside their curves (``petdaq recon --frames --mu-map`` it to
#: reconstruct the same frames after the scan).
LIVE_MU_MAP = "live_mu_map.nii.gz"


def live_schedule(text: str, scanner: Any, time_scale: float, end: float | None
                  ) -> list[Frame]:
    """The frames of a schedule (:func:`recon.frames.parse_schedule`, in the kinetic clock that
    runs ``time_scale`` times the acquisition's), which must fit in the planned scan (``end``,
    acquisition s; None: not known); a clear error otherwise."""
    from recon.frames import parse_schedule

    if scanner.kind != "pet":
        raise UserError(f"scanner {scanner.name} is SPECT: live frames need a PET scanner")
    frames = parse_schedule(text, time_scale)
    if end and frames[-1].stop_s > end * (1 + 1e-6) + 1e-3:
        raise UserError(f"the frames {text!r} end at {frames[-1].stop_s:g} s of acquisition but "
                        f"the scan lasts {end:g} s: shorten the schedule")
    return frames


def check_live_frames(text: str | None, scanner: Any, time_scale: float, end: float | None,
                      spheres: list[str], emulated: bool) -> None:
    """The live frames' options, before anything starts: the schedule (:func:`live_schedule`),
    the spheres, and regions for the curves (detectors have no phantom's)."""
    if not text:
        if spheres:
            raise UserError("--sphere gives the live curves' regions: it needs --frames")
        return
    live_schedule(text, scanner, time_scale, end)
    if spheres:
        import recon
        from recon.kinetics.regions import sphere_regions
        from recon.pet.runimage import RunReconOptions, voxel_of

        sphere_regions(spheres, recon.default_grid(scanner, voxel_of(RunReconOptions(), scanner)))
    elif not emulated:
        raise UserError(_NO_REGIONS)


def live_regions(scanner: Any, facts: Any, spheres: list[str], voxel_mm: float
                 ) -> dict[str, np.ndarray]:
    """The regions of the live curves on the reconstruction's grid: ``spheres`` (``NAME:X,Y,Z,R``
    mm) when given, else the emulated phantom's; a clear error when there are none."""
    import recon
    from recon.kinetics.regions import phantom_regions, sphere_regions
    from recon.pet.runimage import run_phantom

    grid = recon.default_grid(scanner, voxel_mm)
    if spheres:
        return sphere_regions(spheres, grid)
    phantom = run_phantom(facts, scanner)
    if phantom is None:
        raise UserError(_NO_REGIONS)
    return phantom_regions(phantom, grid)


class LiveFrames:
    """Reconstruct the frames of a dynamic scan as they complete, on a background thread."""

    def __init__(self, frames: list[Frame], recon_of: Any, regions: dict[str, np.ndarray],
                 time_scale: float, on_curves: Callable[[CurvePoints, int], None] | None = None,
                 max_pending_events: int = 40_000_000, cpu: CpuMeter | None = None,
                 rates: Callable[[], RateTable | None] | None = None) -> None:
        """``frames``: the schedule (acquisition s); ``recon_of``: the run's
        :class:`recon.pet.dynamic.FrameRecon`; ``regions``: masks on its grid; ``time_scale``: the
        kinetic clock's seconds per acquisition second; ``on_curves(points, frames_done)`` after
        each frame; ``max_pending_events``: coincidences held beyond which chunks are dropped;
        ``rates()``: the singles rates so far (the dead-time correction; a frame waits until
        they cover it, as the list-mode file will)."""
        self.frames, self.recon_of, self.regions = frames, recon_of, regions
        self.rates = rates
        self.time_scale, self.on_curves = time_scale, on_curves
        self.max_pending_events = max_pending_events
        self.points = CurvePoints([], [], {n: [] for n in regions}, {n: [] for n in regions},
                                  {n: int(m.sum()) for n, m in regions.items()})
        self.done = 0
        """Frames finished (reconstructed, or left out for lost events)."""
        self.dropped_events = 0
        self.error = ""
        """Why the live frames stopped (a reconstruction that raised), or ""."""
        self._lossy: set[int] = set()
        self._held: list[np.ndarray] = []
        self._held_events = 0
        self._last_t_s = -np.inf
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._cpu = cpu
        self._clock: ThreadClock | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-frames", daemon=True)
        self._thread.start()

    def offer(self, coinc: np.ndarray) -> None:
        """Hand a chunk of coincidences over; drops (and counts) it when too many wait."""
        with self._lock:
            if self._pending + self._held_events + coinc.size > self.max_pending_events:
                self.dropped_events += int(coinc.size)
                self._mark_lossy(coinc)
                return
            self._pending += int(coinc.size)
        self._queue.put(coinc)

    def queue_fill(self) -> float:
        return (self._pending + self._held_events) / self.max_pending_events

    def _mark_lossy(self, coinc: np.ndarray) -> None:
        if coinc.size == 0:
            return
        lo, hi = float(coinc["t"].min()) * 1e-12, float(coinc["t"].max()) * 1e-12
        self._lossy.update(f.number for f in self.frames if f.start_s <= hi and f.stop_s > lo)

    def _loop(self) -> None:
        self._clock = self._cpu.clock("live frames") if self._cpu is not None else None
        while not self._stop.is_set():
            try:
                self._take(self._queue.get(timeout=0.1))
            except queue.Empty:
                continue
            self._finish_complete(self._last_t_s - COMPLETE_AFTER_S)
        if self._clock is not None:
            self._clock.close()

    def _take(self, chunk: np.ndarray) -> None:
        with self._lock:
            self._pending -= int(chunk.size)
            self._held_events += int(chunk.size)
        if chunk.size:
            self._held.append(chunk)
            self._last_t_s = max(self._last_t_s, float(chunk["t"].max()) * 1e-12)
        self._lap("take events")

    def _finish_complete(self, reached_s: float, final: bool = False) -> None:
        """Finish every frame that ends at or before ``reached_s`` (acquisition s) and whose
        singles rates are in (``final``: whatever they are)."""
        if not self._have_mu_map(reached_s, final):
            return
        while (not self.error and self.done < len(self.frames)
               and self.frames[self.done].stop_s <= reached_s):
            table = self.rates() if self.rates is not None else None
            stop_s = self.frames[self.done].stop_s
            if not final and self.rates is not None and (
                    table is None or (table.first_bin + table.counts.shape[0]) * table.bin_ps
                    < stop_s * 1e12):
                return
            try:
                self._finish(self.frames[self.done], table)
            except Exception as exc:  # the run goes on; the reason is kept
                number = self.frames[self.done].number
                self.error = f"frame {number}: {type(exc).__name__}: {exc}"
            self.done += 1

    def _have_mu_map(self, reached_s: float, final: bool) -> bool:
        """Whether the frames' mu-map is known; the first time the frames ``reached_s`` covers
        hold :data:`recon.pet.dynamic.OPENING_PROMPTS` prompts (``final``: whatever they hold),
        it is made from them, and frames wait for it until then."""
        if getattr(self.recon_of, "mu_map", True) is not None:
            return True
        from recon.pet.dynamic import OPENING_PROMPTS

        events = np.concatenate(self._held) if self._held else np.empty(0)
        if not events.size:
            return False
        t_s = events["t"] * 1e-12
        prompts = events["delayed"] == 0
        reached = [f for f in self.frames[self.done:] if f.stop_s <= reached_s]
        for k, frame in enumerate(reached):
            opening = t_s < frame.stop_s
            if (np.count_nonzero(opening & prompts) >= OPENING_PROMPTS
                    or (final and k == len(reached) - 1)):
                from recon.threads import KERNELS

                with KERNELS:
                    self.recon_of.take_mu_map_of(events[opening])
                self._lap("mu-map")
                return True
        return False

    def _finish(self, frame: Frame, rates: RateTable | None) -> None:
        events = np.concatenate(self._held) if self._held else np.empty(0)
        t_s = events["t"] * 1e-12 if events.size else np.empty(0)
        later = events[t_s >= frame.stop_s] if events.size else events
        if frame.number not in self._lossy and events.size:
            from recon.pet.dynamic import frame_events
            from recon.threads import KERNELS

            with KERNELS:  # not beside the live image's kernels
                image = self.recon_of.reconstruct(frame_events(events, t_s, frame), frame,
                                                  rates)
            self.points.append(frame.start_s * self.time_scale / 60.0,
                               frame.duration_s * self.time_scale / 60.0,
                               np.asarray(image.image.array), self.regions)
            self._lap("reconstruct frame")
        self._held = [later] if later.size else []
        with self._lock:
            self._held_events = int(later.size)
        if self.on_curves is not None:
            self.on_curves(self.points, self.done + 1)
            self._lap("publish curves")

    def _lap(self, part: str) -> None:
        if self._clock is not None and not self._clock.closed:
            self._clock.lap(part)

    def close(self, end_s: float | None) -> None:
        """Stop the thread, then finish every frame the data reached: ``end_s``, the run's
        acquisition time (s) when it ran to its end, else (None: stopped early) the last
        coincidence's time."""
        self._stop.set()
        self._thread.join()
        while True:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                break
        reached = end_s * (1 + 1e-9) + 1e-6 if end_s else self._last_t_s + COMPLETE_AFTER_S
        self._finish_complete(reached, final=True)
        self._held = []

    def write(self, path: Path) -> Path | None:
        """The curves as ``tacs.csv`` columns at ``path`` (None when no frame was finished)."""
        if not self.points.start_min:
            return None
        from recon.kinetics.tacs import write_tacs

        path.parent.mkdir(parents=True, exist_ok=True)
        mu = getattr(self.recon_of, "mu_map", None)
        if mu is not None and mu.image is not None:   # the first frame's estimate, beside them
            from recon.outputs.export import write_nifti

            write_nifti(mu.image, path.parent / LIVE_MU_MAP)
        return write_tacs(self.points.curves(), path)
