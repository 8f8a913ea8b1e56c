"""A hand-over queue bounded in events that never blocks its producer: a full one drops and counts."""

from __future__ import annotations

import queue
import threading

import numpy as np


class HandOver:
    """Coincidence chunks from the sorter's thread to a consumer's (the live image, the motion watch)."""

    def __init__(self, max_pending_events: int = 4_000_000) -> None:
        """``max_pending_events``: coincidences handed over and not yet taken beyond which
        chunks are dropped."""
        self.max_pending_events = max_pending_events
        self.dropped_events = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()

    def offer(self, coinc: np.ndarray) -> None:
        """Hand a chunk over; drops (and counts) it if the queue is full."""
        with self._lock:
            if self._pending + coinc.size > self.max_pending_events:
                self.dropped_events += int(coinc.size)
                return
            self._pending += int(coinc.size)
        self._queue.put(coinc)

    def take(self, timeout_s: float | None = None) -> np.ndarray:
        """The oldest chunk, waiting up to ``timeout_s`` (0: not at all); ``queue.Empty`` if none."""
        chunk = self._queue.get(timeout=timeout_s)
        with self._lock:
            self._pending -= int(chunk.size)
        return chunk

    def empty(self) -> bool:
        return self._queue.empty()

    def fill(self) -> float:
        """How full the queue is (0..1)."""
        return self._pending / self.max_pending_events
