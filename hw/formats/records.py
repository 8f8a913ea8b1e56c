"""A chunk of another digitizer's events (board, channel, time ps, raw energy) and how to read them."""

from __future__ import annotations

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

    @property
    def size(self) -> int:
        return self.a.size


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
