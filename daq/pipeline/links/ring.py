"""The receive ring: one block of memory per run where received bytes lie from the link to the decoder.

A link's bytes are copied once, as they arrive, into the ring, where they lie exactly as the
journal file holds them (block headers and payloads): byte ``pos`` of the journal is at
``pos % capacity``. The journal writes its pages from there (direct I/O needs page-aligned
memory: the ring is, and its capacity is whole pages), and the decoder reads the payloads
there. The memory is allocated and touched once, when a ring is made, and reused lap after
lap: no page is touched for the first time (a page fault, a page the kernel zeroes) while data
flow, however far the DAQ falls behind, and a link's own buffers (ZeroMQ's messages) are given
back at once, so they are reused too.

Rings are kept for the process (:meth:`ReceiveRing.take`, :meth:`ReceiveRing.give_back`): a
DAQ service's runs, or a test session's, reuse the same memory.
"""

from __future__ import annotations

import mmap
import threading
from typing import ClassVar

import numpy as np

PAGE_BYTES = 4096
"""The ring's capacity is whole pages of this size, its memory aligned to them."""
_GRAIN_BYTES = 2 << 20
"""Capacities are rounded up to this (one large page), so that a few sizes serve every run."""
_KEEP_FREE_BYTES = 1 << 30
"""Free rings kept for the process at most (bytes, all capacities)."""


class ReceiveRing:
    """``capacity`` bytes (rounded up to 2 MiB) of page-aligned memory, touched once."""

    _free: ClassVar[dict[int, list[ReceiveRing]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, capacity: int) -> None:
        self.capacity = round_capacity(capacity)
        private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        # private anonymous memory: the cheapest pages to fault, and large pages where offered
        self._mmap = mmap.mmap(-1, self.capacity, flags=private) if private else \
            mmap.mmap(-1, self.capacity)
        if hasattr(mmap, "MADV_HUGEPAGE"):  # fewer, larger pages where the kernel offers them
            self._mmap.madvise(mmap.MADV_HUGEPAGE)
        self._view = memoryview(self._mmap)
        np.frombuffer(self._mmap, np.uint8)[::PAGE_BYTES] = 0  # every page touched now

    @classmethod
    def take(cls, capacity: int) -> ReceiveRing:
        """A ring of (at least) ``capacity`` bytes: one the process gave back, else a new one."""
        size = round_capacity(capacity)
        with cls._lock:
            free = cls._free.get(size)
            if free:
                return free.pop()
        return cls(size)

    def give_back(self) -> None:
        """Keep this ring for the process's next run (its bytes are no longer read)."""
        with ReceiveRing._lock:
            kept = sum(r.capacity for rings in self._free.values() for r in rings)
            if kept + self.capacity <= _KEEP_FREE_BYTES:
                self._free.setdefault(self.capacity, []).append(self)

    def put(self, pos: int, data: memoryview) -> None:
        """Copy ``data`` (bytes) to stream position ``pos`` (across the ring's end if it
        reaches it)."""
        at = pos % self.capacity
        first = min(len(data), self.capacity - at)
        self._view[at:at + first] = data[:first]
        if first < len(data):
            self._view[:len(data) - first] = data[first:]

    def regions(self, pos: int, n: int) -> list[memoryview]:
        """The ``n`` bytes from stream position ``pos``, as one or two views (two where they
        reach the ring's end)."""
        at = pos % self.capacity
        first = min(n, self.capacity - at)
        out = [self._view[at:at + first]] if first else []
        if first < n:
            out.append(self._view[:n - first])
        return out

    def views(self, pos: int, n: int) -> list[memoryview]:
        """:meth:`regions` read-only (what the decoder is given)."""
        return [v.toreadonly() for v in self.regions(pos, n)]


def round_capacity(n_bytes: int) -> int:
    """``n_bytes`` rounded up to the ring's grain (2 MiB; whole pages)."""
    return max(1, -(-int(n_bytes) // _GRAIN_BYTES)) * _GRAIN_BYTES
