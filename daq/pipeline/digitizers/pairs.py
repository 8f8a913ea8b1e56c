"""Coincidences another system sorted (PETsys, GATE) into a run's list-mode: each pair's sides on
crystals, in keV and time-corrected, time-ordered, as their writer chose them (windowed again
only where the user asks)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.digitizers.placing import by_keys, columns, fast_table, per_crystal
from daq.pipeline.digitizers.reorder import Reorder
from hw import formats
from hw.channelmap import ChannelMap
from hw.dtypes import COINC_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.listmode import ListModeWriter

#: What the list-mode file says of pairs it did not sort itself.
POLICY = "the source's own pairs"
_MAX_DT_PS = np.iinfo(np.int32).max


def coincidences_of(a: np.ndarray, b: np.ndarray, delayed: np.ndarray | None = None,
                    delay_ps: int | None = None) -> np.ndarray:
    """COINC_DTYPE coincidences of the aligned sides ``a``, ``b`` (SINGLE_DTYPE), prompts unless
    ``delayed`` says: side a is the earlier single (equal times: the lower crystal), ``dt`` the
    later one's time after it; a delayed pair whose sides lie ``delay_ps`` apart (their own
    times, as GATE writes them) has that delay taken off its ``dt``, as the sorter's delayeds."""
    earlier = (a["t"] < b["t"]) | ((a["t"] == b["t"]) & (a["crystal"] <= b["crystal"]))
    first, second = np.where(earlier, a, b), np.where(earlier, b, a)
    out = np.zeros(a.size, COINC_DTYPE)
    out["t"], out["crystal_a"], out["crystal_b"] = first["t"], first["crystal"], second["crystal"]
    out["energy_a"], out["energy_b"] = first["energy"], second["energy"]
    dt = second["t"] - first["t"]
    if delayed is not None and delay_ps:
        dt = np.where((delayed != 0) & (dt >= delay_ps // 2), dt - delay_ps, dt)
    if dt.size and int(dt.max()) > _MAX_DT_PS:
        raise UserError(f"a pair's sides lie {int(dt.max())} ps apart: no coincidence")
    out["dt"] = dt
    if delayed is not None:
        out["delayed"] = delayed
    return out


class PairPlacer:
    """Both sides of pairs onto crystals through a channel map, keV and time offsets."""

    def __init__(self, channel_map: ChannelMap, scanner: Scanner,
                 kev_per_unit: float | np.ndarray, offsets_ps: np.ndarray | None) -> None:
        n = scanner.n_crystals
        self._map = channel_map
        self._table = fast_table(channel_map, n)
        self._kev = per_crystal(kev_per_unit, n, np.float64)
        self._offsets = per_crystal(offsets_ps, n, np.int64)

    def side(self, records: formats.Records) -> np.ndarray:
        """SINGLE_DTYPE of every record, crystal -1 where the map names none."""
        if self._table is not None:
            return columns(records, self._table, self._kev, self._offsets)
        return by_keys(records, self._map, self._kev, self._offsets)


#: Sides whose energies tell whether the source's units are keV (their median).
ENERGY_SAMPLE = 100_000


def write_pairs(chunks: Iterable[formats.Records | formats.Pairs], scanner: Scanner,
                placer: PairPlacer, resolved: dict[str, Any], reorder_ps: int, listmode: Path,
                progress: Callable[[int], None] | None = None, windowed: bool = False
                ) -> dict[str, Any]:
    """Write the pairs of ``chunks`` into ``listmode`` (prompts, and delayeds where the source
    kept its delayed window's): a pair with a side on no mapped channel is lost as
    ``bad_channel``; with ``windowed`` (the user asked for an energy window), one with a side
    outside ``resolved``'s window is not taken, counted as ``outside_energy_window`` (a
    selection, as the sorter's window, not a loss); returns the counts, losses and settings as
    the sorter's import, and ``energy_median``: the median of the first sides' energies."""
    lo, hi = (float(v) for v in resolved["energy_window_kev"]) if windowed else (-np.inf, np.inf)
    settings = {**resolved, "policy": POLICY,
                "energy_selection": "the window" if windowed else "the source's own"}
    sample: list[np.ndarray] = []
    writer = ListModeWriter(listmode, {"scanner": scanner.name, "scanner_digest": scanner.digest,
                                       **settings})
    order = Reorder(reorder_ps, COINC_DTYPE, "crystal_a")
    counts = {"records": 0, "pairs": 0, "singles": 0, "prompts": 0, "delayeds": 0,
              "outside_energy_window": 0}
    losses = {"bad_channel": 0}
    last_ps = 0

    def write(coinc: np.ndarray) -> None:
        nonlocal last_ps
        if coinc.size:
            delayed = int(np.count_nonzero(coinc["delayed"]))
            counts["prompts"] += int(coinc.size) - delayed
            counts["delayeds"] += delayed
            counts["singles"] += 2 * int(coinc.size)
            last_ps = max(last_ps, int((coinc["t"] + coinc["dt"]).max()))
            writer.append(coinc)

    try:
        for pairs in chunks:
            if not isinstance(pairs, formats.Pairs):
                raise UserError("a coincidence file cannot be imported with files of singles "
                                "into one run: import them apart")
            a, b = placer.side(pairs.a), placer.side(pairs.b)
            counts["pairs"] += pairs.size
            counts["records"] += 2 * pairs.size
            mapped = (a["crystal"] >= 0) & (b["crystal"] >= 0)
            if sum(x.size for x in sample) < ENERGY_SAMPLE:
                sample.append(np.concatenate([a["energy"][mapped], b["energy"][mapped]]))
            inside = mapped & _inside(a, lo, hi) & _inside(b, lo, hi)
            losses["bad_channel"] += int((~mapped).sum())
            counts["outside_energy_window"] += int((mapped & ~inside).sum())
            coinc = coincidences_of(a[inside], b[inside], pairs.delayed_flags[inside],
                                    resolved.get("delay_ps"))
            write(order.feed(coinc))
            if progress is not None:
                progress(counts["records"])
        write(order.flush())
    finally:
        writer.close()
    energies = np.concatenate(sample) if sample else np.empty(0)
    return {"counts": counts, "losses": {**losses, "late_events": order.late_events},
            "settings": settings, "data_end_s": round(last_ps / 1e12, 6),
            "energy_median": float(np.median(energies)) if energies.size else None}


def _inside(side: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (side["energy"] >= lo) & (side["energy"] < hi)  # the sorter's lo <= E < hi
