"""The truth side file (HDF5): every single's raw event and its truth, written chunk by chunk.

Datasets ``raw`` (hw.RAW_DTYPE, all boards merged in time order, exactly what the boards sent)
and ``truth`` (emulator.TRUTH_DTYPE), aligned row by row; attributes: the emulation's settings and,
at the end, its counters. Truth never travels on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emulator.engine import Chunk
from emulator.records import TRUTH_DTYPE
from hw.dtypes import RAW_DTYPE
from infra.errors import UserError

_ROWS = 1 << 16


class TruthWriter:
    """Appends chunks' events and truth to an HDF5 file."""

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        try:
            self._file = h5py.File(path, "w")
        except OSError as exc:
            raise UserError(f"cannot write truth file {path}: {exc}") from None
        self.path = Path(path)
        for name, dtype in (("raw", RAW_DTYPE), ("truth", TRUTH_DTYPE)):
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(_ROWS,), compression="lzf")
        for key, value in settings.items():
            self._file.attrs[key] = value
        self.rows = 0

    def append(self, chunk: Chunk) -> None:
        if chunk.truth is None:
            raise ValueError("the emulator keeps no truth: create it with truth=True")
        n = chunk.raw.size
        for name, data in (("raw", chunk.raw), ("truth", chunk.truth)):
            ds = self._file[name]
            ds.resize((self.rows + n,))
            ds[self.rows:] = data
        self.rows += n

    def close(self, counters: dict[str, int]) -> None:
        self._file.attrs["counters"] = json.dumps(counters)
        self._file.close()


def read_truth(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(raw, truth, attributes) of a truth file; ``attributes["counters"]`` is a dict."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            raw, truth = f["raw"][:], f["truth"][:]
    except OSError as exc:
        raise UserError(f"cannot read truth file {path}: {exc}") from None
    if "counters" in attrs:
        attrs["counters"] = json.loads(attrs["counters"])
    return raw, truth, attrs
