"""List-mode coincidences on disk: HDF5, chunked, readable while the run acquires (SWMR).

File layout (``coincidences.h5``): dataset ``/coincidences`` of :data:`hw.COINC_DTYPE`, one row per
prompt or delayed coincidence in the sorter's output order; attributes on the dataset carry what a
randoms estimate or a later reader needs: ``scanner``, ``scanner_digest``, ``window_ps``,
``delay_ps`` (-1 when no delayed window), ``energy_window_kev``, ``policy``,
``min_sector_difference``, ``mode``, ``time_unit`` = "ps", ``energy_unit`` = "keV".
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hw.dtypes import COINC_DTYPE
from hw.errors import UserError

DATASET = "coincidences"
CHUNK_ROWS = 1 << 16


class ListModeWriter:
    """Append coincidences to an HDF5 file that readers may open (SWMR) during the run."""

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "w", libver="latest")
        except OSError as exc:
            raise UserError(f"cannot create {self.path}: {exc}") from None
        self._ds = self._file.create_dataset(
            DATASET, shape=(0,), maxshape=(None,), dtype=COINC_DTYPE, chunks=(CHUNK_ROWS,)
        )
        for key, value in {"time_unit": "ps", "energy_unit": "keV", **header}.items():
            self._ds.attrs[key] = value if value is not None else -1
        self._file.swmr_mode = True
        self.rows = 0

    def append(self, coinc: np.ndarray) -> None:
        """Append rows (COINC_DTYPE)."""
        if coinc.size == 0:
            return
        self._ds.resize((self.rows + coinc.size,))
        self._ds[self.rows:] = coinc
        self.rows += coinc.size

    def flush(self) -> None:
        """Make the rows so far visible to SWMR readers and durable in the OS."""
        self._ds.flush()
        self._file.flush()

    def close(self) -> None:
        """Flush and close; the file is closed even when the flush fails (a full disk), and the
        flush's error is raised then."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            file, self._file, self._ds = self._file, None, None
            with contextlib.suppress(OSError, RuntimeError):  # the flush's error says what
                file.close()


def read_listmode(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read all coincidences and the header of a list-mode file (also while it is written)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"list-mode file {p} does not exist")
    try:
        with h5py.File(p, "r", libver="latest", swmr=True) as fh:
            ds = fh[DATASET]
            ds.refresh()
            header = {k: _plain(v) for k, v in ds.attrs.items()}
            return ds[:], header
    except (OSError, KeyError) as exc:
        raise UserError(f"{p} is not a readable list-mode file: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
