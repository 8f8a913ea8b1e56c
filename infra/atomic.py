"""Files written whole or not at all: a result appears under its final name only once complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, same suffixes, hidden) to write to; it
    replaces ``path`` when the block ends without an error and is removed when it raises, so
    that a full disk or a killed writer never leaves a partial file under the final name."""
    path = Path(path)
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
