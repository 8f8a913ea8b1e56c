"""Records onto crystals in one pass: channel map, keV scale and time offset, as singles."""

from __future__ import annotations

import numba
import numpy as np

from hw.channelmap import ChannelMap
from hw.dtypes import SINGLE_DTYPE
from hw.formats import Records


@numba.njit(nogil=True, cache=True)
def _place(board, channel, t_ps, energy, table, kev_per_unit, offsets_ps, out_t, out_c, out_e):
    """Write the records that ``table[board, channel]`` maps into the out columns, in their
    order; returns how many."""
    n_boards, n_channels = table.shape
    n = 0
    for i in range(t_ps.size):
        b, ch = board[i], channel[i]
        if b < 0 or b >= n_boards or ch < 0 or ch >= n_channels:
            continue
        c = table[b, ch]
        if c < 0:
            continue
        out_t[n] = t_ps[i] - offsets_ps[c]
        out_c[n] = c
        out_e[n] = np.float32(energy[i] * kev_per_unit[c])
        n += 1
    return n


def per_crystal(value: float | np.ndarray | None, n_crystals: int, dtype: type) -> np.ndarray:
    """``value`` as one entry a crystal (None: 0)."""
    if value is None:
        return np.zeros(n_crystals, dtype)
    if np.ndim(value):
        return np.ascontiguousarray(value, dtype)
    return np.full(n_crystals, value, dtype)


def place(records: Records, table: np.ndarray, kev_per_unit: np.ndarray, offsets_ps: np.ndarray
          ) -> tuple[np.ndarray, int]:
    """(SINGLE_DTYPE singles of ``records`` in their order, records on no mapped channel), through
    a dense map (:meth:`hw.channelmap.ChannelMap.dense`), with per-crystal keV per unit and time
    offsets (ps)."""
    out = np.empty(records.size, SINGLE_DTYPE)
    n = _place(records.board, records.channel, records.t_ps, records.energy, table,
               kev_per_unit, offsets_ps, out["t"], out["crystal"], out["energy"])
    return out[:n], records.size - n


def fast_table(channel_map: ChannelMap, n_crystals: int) -> np.ndarray | None:
    """The dense table of ``channel_map`` when every crystal it names is a scanner's crystal."""
    table = channel_map.dense()
    if table is None or table.max(initial=-1) >= n_crystals:
        return None
    return table


@numba.njit(nogil=True, cache=True)
def _columns(board, channel, t_ps, energy, table, kev_per_unit, offsets_ps, out_t, out_c, out_e):
    n_boards, n_channels = table.shape
    for i in range(t_ps.size):
        b, ch = board[i], channel[i]
        c = -1
        if 0 <= b < n_boards and 0 <= ch < n_channels:
            c = table[b, ch]
        out_c[i] = c
        if c >= 0:
            out_t[i] = t_ps[i] - offsets_ps[c]
            out_e[i] = np.float32(energy[i] * kev_per_unit[c])
        else:
            out_t[i] = t_ps[i]
            out_e[i] = np.float32(0.0)


def columns(records: Records, table: np.ndarray, kev_per_unit: np.ndarray, offsets_ps: np.ndarray
            ) -> np.ndarray:
    """SINGLE_DTYPE of every record in its place (crystal -1 where the map names none), for
    records that must stay aligned with others (the sides of pairs)."""
    out = np.empty(records.size, SINGLE_DTYPE)
    _columns(records.board, records.channel, records.t_ps, records.energy, table, kev_per_unit,
             offsets_ps, out["t"], out["crystal"], out["energy"])
    return out


def by_keys(records: Records, channel_map: ChannelMap, kev_per_unit: float | np.ndarray,
            offsets_ps: np.ndarray | None) -> np.ndarray:
    """:func:`columns` for a map too sparse for a dense table: through its sorted keys, with
    ``kev_per_unit`` one value or one a crystal and ``offsets_ps`` (per crystal) or None."""
    crystal = channel_map.crystals_of(records.board, records.channel)
    ok = crystal >= 0
    c = np.where(ok, crystal, 0)
    out = np.empty(records.size, SINGLE_DTYPE)
    out["crystal"] = crystal
    out["t"] = records.t_ps if offsets_ps is None else records.t_ps - offsets_ps[c] * ok
    scale = kev_per_unit[c] if np.ndim(kev_per_unit) else kev_per_unit
    out["energy"] = np.where(ok, records.energy * scale, 0.0)
    return out
