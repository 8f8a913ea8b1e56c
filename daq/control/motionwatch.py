"""The live motion watch: the prompts' centroid per interval, its episodes, an alert on the monitor stream.

Coincidences reach it through a queue that never blocks the sorter (as the live image's); its
thread adds them into the signal and runs the detector on every interval the data have
completed (an interval is complete once a prompt after its end has arrived).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from daq.control.handover import HandOver
from recon.motion.episodes import Detector, Episode
from recon.motion.signal import SignalMaker

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter
    from hw.scanner import Scanner


class MotionWatch:
    """Watch a scan's prompts for motion; ``on_interval(watch)`` after each completed interval."""

    def __init__(self, scanner: Scanner, on_interval: Callable[[MotionWatch], None] | None = None,
                 cpu: CpuMeter | None = None, max_pending_events: int = 4_000_000) -> None:
        self.maker = SignalMaker(scanner)
        self.detector = Detector()
        self.on_interval = on_interval
        self.handover = HandOver(max_pending_events)
        self.data_s = 0.0
        """The latest prompt's time taken (s from the scan's start)."""
        self.last_news: list[Episode] = []
        """The episodes that started or ended in the last intervals taken."""
        self._cpu = cpu
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="motion-watch", daemon=True)
        self._thread.start()

    def offer(self, coinc: np.ndarray) -> None:
        """Hand a chunk of coincidences over; drops (and counts) it if the queue is full."""
        self.handover.offer(coinc)

    @property
    def dropped_events(self) -> int:
        return self.handover.dropped_events

    @property
    def moving(self) -> bool:
        return self.detector.moving

    def _loop(self) -> None:
        clock = self._cpu.clock("motion watch") if self._cpu is not None else None
        while not self._stop.is_set() or not self.handover.empty():
            try:
                chunk = self.handover.take(0.1)
            except queue.Empty:
                continue
            self._take(chunk)
            if clock is not None:
                clock.lap("motion signal")
        if clock is not None:
            clock.close()

    def _take(self, chunk: np.ndarray) -> None:
        self.maker.add(chunk)
        if chunk.size == 0:
            return
        self.data_s = max(self.data_s, float(chunk["t"].max()) * 1e-12)
        signal = self.maker.signal(upto_s=self.data_s)
        before = len(self.detector.displacement_mm)
        self.last_news = self.detector.update(signal)
        if len(self.detector.displacement_mm) > before and self.on_interval is not None:
            self.on_interval(self)

    def close(self, end_s: float | None) -> dict[str, Any]:
        """Take what is queued, the intervals the data reached (``end_s``: the scan's end, the
        last interval then complete); what the run records (``motion`` in its stop document)."""
        self._stop.set()
        self._thread.join()
        signal = self.maker.signal(upto_s=end_s)
        self.last_news = self.detector.update(signal)
        end = signal.t0_s + signal.sums.shape[0] * signal.interval_s
        return {"interval_s": signal.interval_s,
                "episodes": [e.to_json() for e in self.detector.finish(end)],
                "dropped_events": self.dropped_events}

    def message_fields(self) -> dict[str, Any]:
        """What the monitor stream's ``motion`` message carries (:func:`daq.messages.motion_message`)."""
        d = self.detector
        return {"interval_s": self.maker.interval_s,
                "displacement_mm": np.asarray(d.displacement_mm, np.float32),
                "moving": d.moving, "episodes": [e.to_json() for e in d.episodes],
                "data_s": self.data_s}
