"""List-mode coincidences on disk: HDF5, chunked, readable while the run acquires (SWMR).

File layout (``coincidences.h5``): dataset ``/coincidences`` of :data:`hw.COINC_DTYPE`, one row per
prompt or delayed coincidence in the sorter's output order; attributes on the dataset carry what a
randoms estimate or a later reader needs: ``scanner``, ``scanner_digest``, ``window_ps``,
``delay_ps`` (-1 when no delayed window), ``energy_window_kev``, ``policy``,
``min_sector_difference``, ``mode``, ``time_unit`` = "ps", ``energy_unit`` = "keV".

A PET run's file also holds ``/singles_per_unit``: (bins, modules) uint32, the singles of each
dead-time unit (:func:`hw.deadtime.dead_time_units`) in consecutive bins of its ``bin_ps``
attribute from bin ``first_bin`` (time ``first_bin * bin_ps``), acquired from ``start_ps`` to
``end_ps`` (the first single's time and the last's + 1), which the dead-time correction reads
(:func:`read_singles_rates`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hw.deadtime import RATE_BIN_PS, RateTable
from hw.dtypes import COINC_DTYPE
from infra.errors import UserError

DATASET = "coincidences"
RATES = "singles_per_unit"
CHUNK_ROWS = 1 << 16
FLUSH_INTERVAL_S = 1.0
"""Rows appended are visible to readers (SWMR) at most this long (wall clock) after."""


class ListModeWriter:
    """Append coincidences to an HDF5 file that readers may open (SWMR) during the run."""

    def __init__(self, path: str | Path, header: dict[str, Any], rate_units: int = 0,
                 rate_bin_ps: int = RATE_BIN_PS, flush_interval_s: float = FLUSH_INTERVAL_S
                 ) -> None:
        """``rate_units``: dead-time units whose singles rates the file keeps (0: none);
        ``flush_interval_s``: the longest wall-clock time rows wait before readers see them."""
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
        self._rates = None
        if rate_units > 0:
            self._rates = self._file.create_dataset(
                RATES, shape=(0, rate_units), maxshape=(None, rate_units), dtype=np.uint32,
                chunks=(256, rate_units))
            self._rates.attrs["bin_ps"] = int(rate_bin_ps)
            for key in ("first_bin", "start_ps", "end_ps"):
                self._rates.attrs[key] = np.int64(-1)
        self._next_rate_bin: int | None = None
        """The bin the next rates must start at (None before the first), and the rates' rows:
        kept here, never read back from the file, where an attribute read in SWMR mode can
        hand back its value from before the last write."""
        self._rate_rows = 0
        self._file.swmr_mode = True
        self.rows = 0
        self._flush_interval_s = flush_interval_s
        self._flushed_at = time.monotonic()

    def append(self, coinc: np.ndarray) -> None:
        """Append rows (COINC_DTYPE)."""
        if coinc.size == 0:
            return
        self._ds.resize((self.rows + coinc.size,))
        self._ds[self.rows:] = coinc
        self.rows += coinc.size
        if time.monotonic() - self._flushed_at >= self._flush_interval_s:
            self.flush()

    def append_rates(self, table: RateTable | None) -> None:
        """Append the next bins of singles rates (they follow the bins written before)."""
        if table is None or self._rates is None or table.counts.shape[0] == 0:
            return
        if self._next_rate_bin is None:
            self._rates.attrs["first_bin"] = np.int64(table.first_bin)
            self._rates.attrs["start_ps"] = np.int64(table.start_ps)
        elif table.first_bin != self._next_rate_bin:
            raise ValueError(f"rate bins from {table.first_bin} do not follow "
                             f"{self._next_rate_bin}")
        n, more = self._rate_rows, table.counts.shape[0]
        self._rates.resize(n + more, axis=0)
        self._rates[n:] = table.counts
        self._rates.attrs["end_ps"] = np.int64(table.end_ps)
        self._rate_rows, self._next_rate_bin = n + more, table.first_bin + more

    def flush(self) -> None:
        """Make the rows so far visible to SWMR readers and durable in the OS."""
        self._ds.flush()
        if self._rates is not None:
            self._rates.flush()
        self._file.flush()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        """Flush and close; the file is closed even when the flush fails (a full disk), and the
        flush's error is raised then."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            file, self._file, self._ds, self._rates = self._file, None, None, None
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


def read_singles_rates(path: str | Path) -> RateTable | None:
    """The singles rates of a list-mode file (:data:`RATES`), or None when it has none (a file
    written before they were kept, or from another tool)."""
    try:
        with h5py.File(Path(path), "r", libver="latest", swmr=True) as fh:
            if RATES not in fh:
                return None
            ds = fh[RATES]
            ds.refresh()
            if ds.shape[0] == 0:
                return None
            a = ds.attrs
            return RateTable(int(a["bin_ps"]), int(a["first_bin"]), ds[:], int(a["start_ps"]),
                             int(a["end_ps"]))
    except (OSError, KeyError) as exc:
        raise UserError(f"{path} is not a readable list-mode file: {exc}") from None
