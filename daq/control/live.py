"""The live image: a reconstruction thread updated every few seconds from all events so far.

Coincidences reach it through a queue bounded in events that never blocks the sorter; the thread
takes them in as they come (``add``: cheap, per event) and runs an image update every interval.
Only when the reconstruction cannot keep up (an add or an update longer than the queue's worth of
data) are whole chunks dropped from the *live* image, and counted (``recon_dropped_events``,
published on the monitor stream). The list-mode file always has every
coincidence, and the final image is reconstructed from it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from daq.control.handover import HandOver

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter, ThreadClock
    from hw.scanner import Scanner


class LiveImage:
    """Run a live reconstruction on a background thread, handing each new image to ``on_image``."""

    def __init__(self, reconstructor: object, interval_s: float = 2.0,
                 on_image: Callable[[object, int, int], None] | None = None,
                 max_pending_events: int = 4_000_000, cpu: CpuMeter | None = None,
                 attenuation: object | None = None) -> None:
        """``reconstructor`` (a :class:`recon.LiveRecon`) has ``add(coinc)`` and
        ``update() -> Image``; ``interval_s``: seconds between image updates;
        ``max_pending_events``: coincidences handed over and not yet added beyond which chunks
        are dropped. ``cpu``: a meter the thread clocks its CPU time on (the run's,
        :mod:`daq.pipeline.cpu`; the reconstruction's own worker threads are outside it).
        ``attenuation``: the live image's correction (a :class:`recon.pet.livemu.LiveAttenuation`,
        ``corrected(image, prompts) -> Image``; None: none)."""
        self.recon = reconstructor
        self.attenuation = attenuation
        self._cpu = cpu
        self._clock: ThreadClock | None = None
        self.interval_s, self.on_image = interval_s, on_image
        self.handover = HandOver(max_pending_events)
        self.events = 0
        self.updates = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-recon", daemon=True)
        self._thread.start()

    def offer(self, coinc: np.ndarray) -> None:
        """Hand a chunk of coincidences over; drops (and counts) it if the queue is full."""
        self.handover.offer(coinc)

    @property
    def dropped_events(self) -> int:
        return self.handover.dropped_events

    def queue_fill(self) -> float:
        """How full the hand-over queue is (0..1)."""
        return self.handover.fill()

    def _add(self, chunk: np.ndarray) -> None:
        from recon.threads import KERNELS

        with KERNELS:
            self.recon.add(chunk)
        self.events += int(chunk.size)

    def _drain(self) -> None:
        while True:
            try:
                chunk = self.handover.take(0)
            except queue.Empty:
                return
            self._add(chunk)

    def _loop(self) -> None:
        self._clock = self._cpu.clock("live recon") if self._cpu is not None else None
        due = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            try:
                self._add(self.handover.take(min(0.1, max(0.0, due - time.monotonic()))))
                self._lap("add events")
            except queue.Empty:
                pass
            if time.monotonic() >= due:
                self._update()
                due = time.monotonic() + self.interval_s
        if self._clock is not None:
            self._clock.close()

    def _lap(self, part: str) -> None:
        if self._clock is not None and not self._clock.closed:
            self._clock.lap(part)

    def _update(self) -> None:
        self._drain()
        self._lap("add events")
        if self.events == 0:
            return
        from recon.threads import KERNELS

        with KERNELS:
            image = self.recon.update()
        if self.attenuation is not None:
            image = self.attenuation.corrected(image, self.recon.n_prompts)
        self._lap("update image")
        self.updates += 1
        if self.on_image is not None:
            self.on_image(image, self.events, self.updates)
            self._lap("publish image")

    def close(self) -> None:
        """Stop the thread after a last update with everything queued."""
        self._stop.set()
        self._thread.join()
        self._update()


#: The voxel of the warm-up's coarse grid (mm): the kernels compile whatever the grid.
WARM_UP_VOXEL_MM = 16.0


def warm_up_live(scanner: Scanner, coinc: np.ndarray, tof: bool, window_ps: int,
                 min_sector_difference: int) -> None:
    """One update of a live reconstruction of ``coinc`` on a coarse grid, thrown away: numba
    compiles (or loads) the live image's kernels before the boards stream, not in the live
    thread while it holds the interpreter."""
    import recon

    live = recon.LiveRecon(scanner, recon.default_grid(scanner, WARM_UP_VOXEL_MM), tof=tof,
                           window_ps=window_ps, min_sector_difference=min_sector_difference,
                           sensitivity_samples=1)
    live.add(coinc)
    live.update()
