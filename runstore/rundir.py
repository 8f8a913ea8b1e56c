"""The run directory: one folder per acquisition, everything a later reader needs.

::

    RUN/
      run.json           start and stop documents (runstore.rundocs), the final image's files
      journal.bpj        raw frames as received (daq.pipeline.links.journal): the record of truth
      coincidences.h5    list-mode prompts and delayeds (runstore.listmode)
      images/            reconstructed images (NIfTI, PNG)

``run.json`` is rewritten atomically (write to a temporary file, then rename), so a killed process
leaves either the old or the new document, never half of one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from infra.atomic import replacing
from infra.errors import UserError
from runstore.rundocs import StartDocument, StopDocument, utc_now

__all__ = ["IMAGES_DIR", "JOURNAL_FILE", "LISTMODE_FILE", "RUN_FILE", "RunDir", "utc_now"]

RUN_FILE = "run.json"
JOURNAL_FILE = "journal.bpj"
LISTMODE_FILE = "coincidences.h5"
IMAGES_DIR = "images"
RESERVE_FILE = ".reserved-for-the-stop-document"
#: Disk space a run holds from its start for its stop document, released to write it: a run that
#: fills its disk still records why it ended and what it counted.
RESERVE_BYTES = 64 << 10


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
            (path / RESERVE_FILE).write_bytes(bytes(RESERVE_BYTES))
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
        with replacing(self.meta_file) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_jsonable) + "\n")
        return doc

    def write_start(self, start: StartDocument) -> None:
        """Write the start document (and no stop document yet)."""
        self.update(start=start.to_json(), stop=None)

    def new_start(self, scanner: str, scanner_digest: str, settings: dict[str, Any],
                  calibration: dict[str, Any]) -> StartDocument:
        """Write the start document of this run, starting now; returns it."""
        start = StartDocument.new(self.path.name, scanner, scanner_digest, settings, calibration)
        self.write_start(start)
        return start

    def write_stop(self, stop: StopDocument) -> None:
        """Write the stop document: once, when the run has ended (in the space the run held for
        it since its start, should the disk have filled up)."""
        (self.path / RESERVE_FILE).unlink(missing_ok=True)
        self.update(stop=stop.to_json())

    @property
    def start(self) -> StartDocument | None:
        """The start document (None if none was written)."""
        doc = self.read().get("start")
        return StartDocument.from_json(doc) if isinstance(doc, dict) else None

    @property
    def stop(self) -> StopDocument | None:
        """The stop document (None while the run acquires, or after it was killed)."""
        doc = self.read().get("stop")
        return StopDocument.from_json(doc) if isinstance(doc, dict) else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
