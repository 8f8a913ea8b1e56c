"""The run directory: one folder per acquisition, everything a later reader needs.

::

    RUN/
      run.json           start and stop documents (scanner, settings, calibration, counts, losses)
      journal.bpj        raw frames as received (daq.journal): the record of truth
      coincidences.h5    list-mode prompts and delayeds (daq.listmode)
      images/            reconstructed images (NIfTI, PNG)

``run.json`` is rewritten atomically (write to a temporary file, then rename), so a killed process
leaves either the old or the new document, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from hw.errors import UserError

RUN_FILE = "run.json"
JOURNAL_FILE = "journal.bpj"
LISTMODE_FILE = "coincidences.h5"
IMAGES_DIR = "images"


def software_version() -> str:
    """The installed version of bedside-pet."""
    try:
        return metadata.version("bedside-pet")
    except metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunDir:
    """A run folder and its metadata documents."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path, name: str | None = None) -> RunDir:
        """Create ``out/name`` (default ``run-YYYYmmdd-HHMMSS``); refuses an existing run."""
        name = name or time.strftime("run-%Y%m%d-%H%M%S")
        path = Path(out) / name
        if path.exists():
            raise UserError(f"run directory {path} already exists: choose another --name or --out")
        try:
            path.mkdir(parents=True)
            (path / IMAGES_DIR).mkdir()
        except OSError as exc:
            raise UserError(f"cannot create run directory {path}: {exc.strerror}") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run; refuses a folder without a journal or metadata."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"run {run.path} does not exist")
        if not (run.journal.is_file() or run.meta_file.is_file()):
            raise UserError(f"{run.path} is not a run directory (no {JOURNAL_FILE} or {RUN_FILE})")
        return run

    @property
    def meta_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_FILE

    @property
    def listmode(self) -> Path:
        return self.path / LISTMODE_FILE

    @property
    def images(self) -> Path:
        return self.path / IMAGES_DIR

    def read(self) -> dict[str, Any]:
        """The metadata document ({} if none was written yet)."""
        if not self.meta_file.is_file():
            return {}
        try:
            return json.loads(self.meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.meta_file} is not valid JSON: {exc}") from None

    def update(self, **sections: Any) -> dict[str, Any]:
        """Merge top-level sections into run.json and rewrite it atomically."""
        doc = self.read() | sections
        tmp = self.meta_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_jsonable) + "\n")
        os.replace(tmp, self.meta_file)
        return doc

    def start_document(self, scanner: str, scanner_digest: str, settings: dict[str, Any],
                       calibration: dict[str, Any]) -> dict[str, Any]:
        """Write the start document: what was asked for, with what, when."""
        start = {
            "uid": uuid.uuid4().hex, "run": self.path.name, "time_utc": utc_now(),
            "scanner": scanner, "scanner_digest": scanner_digest, "settings": settings,
            "calibration": calibration, "software": {"bedside-pet": software_version(),
                                                     "python": platform.python_version()},
            "host": platform.node(),
        }
        return self.update(start=start, stop=None)

    def stop_document(self, reason: str, counts: dict[str, Any], losses: dict[str, Any],
                      **extra: Any) -> dict[str, Any]:
        """Write the stop document: why it ended, what was counted, what was lost."""
        stop = {"time_utc": utc_now(), "reason": reason, "counts": counts, "losses": losses,
                **extra}
        return self.update(stop=stop)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
