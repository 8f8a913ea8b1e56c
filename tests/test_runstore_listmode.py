"""The list-mode file is readable while the run writes it: another process sees the rows
appended up to a flush interval before."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hw.dtypes import COINC_DTYPE
from runstore.listmode import ListModeWriter, read_listmode

READER = ("import sys; from runstore.listmode import read_listmode; "
          "c, h = read_listmode(sys.argv[1]); print(c.size, int(c['t'][-1]) if c.size else -1)")


def _rows(first: int, n: int) -> np.ndarray:
    c = np.zeros(n, COINC_DTYPE)
    c["t"] = np.arange(first, first + n, dtype=np.int64) * 1000
    return c


def _read_in_another_process(path: Path) -> tuple[int, int]:
    r = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True,
                       text=True, timeout=60, check=True)
    size, last = r.stdout.split()
    return int(size), int(last)


def test_rows_appended_are_read_by_another_process_while_the_file_is_open(tmp_path) -> None:
    path = tmp_path / "coincidences.h5"
    writer = ListModeWriter(path, {"scanner": "test"}, flush_interval_s=0.2)
    try:
        writer.append(_rows(0, 70_000))
        time.sleep(0.3)
        writer.append(_rows(70_000, 5_000))  # the interval has passed: flushed with it
        assert _read_in_another_process(path) == (75_000, 74_999_000)
        writer.append(_rows(75_000, 10))  # within the interval: not yet flushed
    finally:
        writer.close()
    coinc, header = read_listmode(path)
    assert coinc.size == 75_010 and header["scanner"] == "test"
    assert np.array_equal(coinc["t"], np.arange(75_010, dtype=np.int64) * 1000)
