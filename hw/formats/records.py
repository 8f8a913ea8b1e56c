"""A chunk of another digitizer's events (board, channel, time ps, raw energy) and how to read them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Records:
    """Events as a file gives them, in the file's order (not necessarily time order)."""

    board: np.ndarray
    """int32: the digitizer (ABCD: the position of its link; a file: 0 unless it says)."""
    channel: np.ndarray
    """int32: the channel on its board (PETsys: the whole channelID)."""
    t_ps: np.ndarray
    """int64: time in ps on the file's clock."""
    energy: np.ndarray
    """float64: energy in the file's raw unit (ADC channels, ToT ns, QDC counts)."""

    @classmethod
    def of(cls, board, channel, t_ps, energy) -> Records:
        n = len(t_ps)
        return cls(np.broadcast_to(np.asarray(board, np.int32), (n,)).copy(),
                   np.asarray(channel, np.int32), np.asarray(t_ps, np.int64),
                   np.asarray(energy, np.float64))

    @property
    def size(self) -> int:
        return int(self.t_ps.size)

    @classmethod
    def join(cls, parts: list[Records]) -> Records:
        """The records of ``parts`` one after the other."""
        return cls(*(np.concatenate([getattr(r, k) for r in parts])
                     for k in ("board", "channel", "t_ps", "energy")))


@dataclass(frozen=True)
class Pairs:
    """Coincidences another system sorted: its pairs, each side reduced to one single."""

    a: Records
    b: Records
    delayed: np.ndarray | None = None
    """uint8: 1 for a pair of the delayed window (None: every pair a prompt)."""

    @property
    def size(self) -> int:
        return self.a.size

    @property
    def delayed_flags(self) -> np.ndarray:
        return np.zeros(self.size, np.uint8) if self.delayed is None else self.delayed

    @property
    def t_ps(self) -> np.ndarray:
        """Each pair's earlier time."""
        return np.minimum(self.a.t_ps, self.b.t_ps)

    def take(self, keep: np.ndarray) -> Pairs:
        """The pairs ``keep`` (a mask or indices) selects."""
        return Pairs(*(Records(*(getattr(r, k)[keep] for k in _FIELDS)) for r in (self.a, self.b)),
                     self.delayed_flags[keep])

    @classmethod
    def join(cls, parts: list[Pairs]) -> Pairs:
        return cls(Records.join([p.a for p in parts]), Records.join([p.b for p in parts]),
                   np.concatenate([p.delayed_flags for p in parts]))


_FIELDS = ("board", "channel", "t_ps", "energy")


def merge_by_time(streams: list[Iterator[Pairs]]) -> Iterator[Pairs]:
    """Pairs of several streams, each nearly in time order (a prompts and a delayed tree, one
    file of each), as chunks that follow each other in time as those streams allow: a chunk
    holds what every open stream has passed."""
    iters = [iter(s) for s in streams]
    held: list[Pairs | None] = [None] * len(iters)
    open_ = [True] * len(iters)
    while True:
        for k, it in enumerate(iters):
            while open_[k] and (held[k] is None or held[k].size == 0):
                nxt = next(it, None)
                if nxt is None:
                    open_[k] = False
                else:
                    held[k] = nxt if held[k] is None else Pairs.join([held[k], nxt])
        live = [k for k, h in enumerate(held) if h is not None and h.size]
        if not live:
            return
        waiting = [int(held[k].t_ps.max()) for k in live if open_[k]]
        horizon = min(waiting) if waiting else None
        out = []
        for k in live:
            t = held[k].t_ps
            now = np.ones(t.size, bool) if horizon is None else t <= horizon
            out.append(held[k].take(now))
            held[k] = held[k].take(~now)
        yield Pairs.join(out)


#: How a group of hits (light sharing, inter-crystal scatter) becomes singles: its first hit with
#: the group's summed energy (PETsys' own convention), its first hit alone, or every hit.
GROUP_RULES = ("sum", "first", "all")


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need besides the file."""

    ns_per_sample: float | None = None
    """The digitizer's sample period (ns), for clocks that count samples (ABCD)."""
    crystal_centres_mm: np.ndarray | None = None
    """(N, 3) the scanner model's crystals, for simulated hits given by position (GATE)."""
    gate_repeaters: tuple[int, ...] | None = None
    """GATE cylindricalPET: the copies of rsector, module, submodule, crystal, layer; with them
    a single's channel is its volume IDs in one number (:func:`hw.formats.gate.linear_id`)."""
    layout: str | None = None
    """PETsys: the file's layout (:data:`hw.formats.petsys.LAYOUTS`); None: told from the file."""
    group_rule: str = "sum"
    """How a group becomes singles (:data:`GROUP_RULES`)."""
    resort: bool = False
    """A coincidence file: its singles sorted again by our sorter, not its own pairs."""
    gate_pairs: bool = False
    """GATE: a file's own coincidences (and delayeds), even where it has singles."""
