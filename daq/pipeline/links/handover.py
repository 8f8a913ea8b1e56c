"""The receivers' hand-over to the processing thread: a queue bounded in bytes, taken whole.

A receiver that finds the queue full waits (back-pressure towards its link: ZeroMQ's high-water
mark, the serial port's buffer), never drops. The processing thread takes everything waiting at
once (up to a bound), so the busier the DAQ, the bigger the batches its workers share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

MAX_BYTES = 256 << 20
"""Bytes the queue holds before the receivers wait (about 30 M events on the wire)."""
BATCH_BYTES = 16 << 20
"""Bytes taken at most at once (about 2 M events): a batch's buffers stay allocated and reused,
and big enough to keep every worker busy."""
MIN_BATCH_BYTES = 4 << 20
"""Bytes a batch waits for (at most LINGER_S) when less is waiting: at the scanner's real rate
data trickle in message by message, and many small batches cost more per event (each is a
round of the workers) than a few larger ones."""
LINGER_S = 0.05
"""The longest a batch waits to grow to MIN_BATCH_BYTES (s): the live chain's added latency."""


def ring_bytes(queue_bytes: int = MAX_BYTES) -> int:
    """The journal's receive ring (:mod:`daq.pipeline.links.ring`) behind a queue of
    ``queue_bytes``: what the queue holds, the batch being decoded and the block being
    appended, and the journal's blocks not yet written."""
    return queue_bytes + 2 * BATCH_BYTES + (8 << 20)


class Handover:
    """A queue of ``(item, n_bytes)`` bounded at ``max_bytes`` (an item bigger than the bound
    still goes in, alone)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: list[Any] = []
        self._sizes: list[int] = []
        self._flush: list[bool] = []
        self._flushes = 0
        self._bytes = 0
        self._want = 0
        """Bytes the taker waits for (0: it is not waiting): a put wakes it only once they are
        there, so a batch that grows message by message costs one hand-off, not one each."""
        self._room_waiters = 0
        self._cond = threading.Condition()

    def put(self, item: Any, n_bytes: int, stopping: Callable[[], bool] = lambda: False,
            flush: bool = False) -> None:
        """Append ``item`` once there is room, or at once when ``stopping()`` (the processing
        thread then drains everything); ``flush``: to be taken without waiting for more."""
        with self._cond:
            while self._items and self._bytes + n_bytes > self.max_bytes and not stopping():
                self._room_waiters += 1
                self._cond.wait(0.1)
                self._room_waiters -= 1
            self._items.append(item)
            self._sizes.append(n_bytes)
            self._flush.append(flush)
            self._flushes += flush
            self._bytes += n_bytes
            if self._want and (self._bytes >= self._want or flush or len(self._items) == 1):
                self._cond.notify_all()

    def take(self, timeout_s: float, max_bytes: int = BATCH_BYTES,
             min_bytes: int = MIN_BATCH_BYTES, linger_s: float = LINGER_S) -> list[Any]:
        """What is waiting, in order, up to ``max_bytes`` (at least one item; ``[]`` if nothing
        came within ``timeout_s``); once something is there, up to ``linger_s`` more for the
        batch to reach ``min_bytes`` (an item put with ``flush`` ends the wait)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            try:
                self._want = 1
                while not self._items:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return []
                    self._cond.wait(left)
                full = time.monotonic() + linger_s
                self._want = min_bytes
                while self._bytes < min_bytes and not self._flushes:
                    left = full - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._want = 0
            k, taken = 0, 0
            while k < len(self._items) and (k == 0 or taken + self._sizes[k] <= max_bytes):
                taken += self._sizes[k]
                k += 1
            items = self._items[:k]
            self._flushes -= sum(self._flush[:k])
            del self._items[:k], self._sizes[:k], self._flush[:k]
            self._bytes -= taken
            if self._room_waiters:
                self._cond.notify_all()
            return items

    def fill(self) -> float:
        """How full the queue is (0..1)."""
        return min(self._bytes / self.max_bytes, 1.0)
