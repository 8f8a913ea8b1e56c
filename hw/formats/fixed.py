"""Files of fixed-size records, read in chunks; a truncated last record is a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from infra.errors import UserError


def read_fixed(path: Path, dtype: np.dtype, chunk_records: int, what: str, offset: int = 0
               ) -> Iterator[np.ndarray]:
    """Records of ``dtype`` from byte ``offset`` of ``path``, ``chunk_records`` at a time;
    refuses (before the first record) a file whose size is not a whole number of records."""
    size = path.stat().st_size - offset
    if size % dtype.itemsize:
        raise UserError(f"{path}: its last {what} record has {size % dtype.itemsize} of "
                        f"{dtype.itemsize} bytes (truncated, or not a {what} file)")
    with path.open("rb") as fh:
        fh.seek(offset)
        while True:
            rows = np.fromfile(fh, dtype, chunk_records)
            if rows.size == 0:
                return
            yield rows
