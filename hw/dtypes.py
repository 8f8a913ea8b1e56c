"""Event record layouts shared by every stage above the wire.

Time is always integer picoseconds (int64) since run start; energies are keV (float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from infra.pool import Workers

#: What a digitizer sends, after decoding: one detected photon, uncalibrated.
#: ``t`` ps since run start (int64), ``crystal`` global crystal index, ``adc`` the raw ADC code.
RAW_DTYPE = np.dtype([("t", np.int64), ("crystal", np.int32), ("adc", np.uint16)])

#: A calibrated single: ``t`` ps (int64), ``crystal`` global index (int32), ``energy`` keV (float32).
SINGLE_DTYPE = np.dtype([("t", np.int64), ("crystal", np.int32), ("energy", np.float32)])

#: A coincidence. ``t`` ps of the earlier single; ``dt`` = t_b - t_a in ps (int32, >= 0 for
#: prompts since a is the earlier single); ``delayed`` 1 for delayed-window coincidences.
COINC_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("crystal_a", np.int32),
        ("crystal_b", np.int32),
        ("energy_a", np.float32),
        ("energy_b", np.float32),
        ("dt", np.int32),
        ("delayed", np.uint8),
    ]
)


#: Bytes a worker copies at a time in :func:`join` on workers.
JOIN_PIECE_BYTES = 1 << 22


def join(arrays: Sequence[np.ndarray], dtype: np.dtype, out: np.ndarray | None = None,
         workers: Workers | None = None) -> np.ndarray:
    """The record arrays one after the other, as one array of ``dtype`` (into ``out`` when
    given, of the joined size). Copied as bytes: numpy copies packed records field by field,
    about ten times slower. With ``workers``, a large join is copied in pieces on them."""
    dtype = np.dtype(dtype)
    for a in arrays:
        if a.dtype != dtype:
            raise ValueError(f"join: {a.dtype} is not {dtype}")
    parts = [np.ascontiguousarray(a).view(np.uint8).reshape(-1) for a in arrays]
    n_bytes = sum(p.size for p in parts)
    if workers is None or workers.threads == 1 or n_bytes < 2 * JOIN_PIECE_BYTES:
        if out is not None:
            np.concatenate(parts, out=out.view(np.uint8).reshape(-1))
            return out
        return np.concatenate(parts).view(dtype) if parts else np.empty(0, dtype)
    if out is not None and out.nbytes != n_bytes:
        raise ValueError(f"join: out holds {out.nbytes} bytes, the arrays {n_bytes}")
    flat = np.empty(n_bytes, np.uint8) if out is None else out.view(np.uint8).reshape(-1)
    pieces, at = [], 0
    for p in parts:
        pieces += [(p, lo, at + lo) for lo in range(0, p.size, JOIN_PIECE_BYTES)]
        at += p.size

    def copy(k: int) -> None:
        part, lo, to = pieces[k]
        piece = part[lo:lo + JOIN_PIECE_BYTES]
        flat[to:to + piece.size] = piece

    workers.map(copy, len(pieces), "join")
    return out if out is not None else flat.view(dtype)


def take(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``records[index]`` (``index`` integers, or a boolean mask) of a 1-D record array, picked
    as rows of bytes: numpy picks packed records field by field, 5-10 times slower."""
    index = np.asarray(index)
    rows = np.ascontiguousarray(records).view(np.uint8).reshape(records.size,
                                                                 records.dtype.itemsize)
    picked = (np.compress(index, rows, axis=0) if index.dtype == np.bool_
              else np.take(rows, index, axis=0))
    return picked.view(records.dtype).reshape(-1)
