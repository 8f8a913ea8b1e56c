"""What a run of another digitizer kept (its source files, or its ABCD links' journal), read
again as it came: for ``replay``, ``recover`` and ``calibrate``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.digitizers import abcdlive
from daq.pipeline.digitizers.importer import (
    SOURCE_DIR,
    ImportSettings,
    channel_map_of,
    sort_any,
    source_chunks,
)
from daq.pipeline.links.journal import check_journal
from daq.pipeline.process.processor import SortSettings
from hw.channelmap import ChannelMap
from hw.formats import Pairs, Records, abcd
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument


@dataclass(frozen=True)
class KeptSource:
    """The source a run's start document names, found in the run."""

    run: RunDir
    settings: ImportSettings
    files: list[Path]
    map_named: str
    """As :func:`daq.pipeline.digitizers.importer.keep_sources` names it."""
    links: list[str] | None
    """A live ABCD run's links (its records are in the journal); None for files."""

    @classmethod
    def of(cls, run: RunDir) -> KeptSource | None:
        """The source of ``run``; None for a run of our own boards."""
        source = run.start.setting("source") if run.start is not None else None
        if not source:
            return None
        links = source.get("links") if source.get("journal") else None
        files = [run.path / SOURCE_DIR / name for name in source["files"]]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{run.path}: the source file {missing[0]} it was imported from is "
                            "gone")
        if links is not None:
            check_journal(run.journal)
        return cls(run, ImportSettings.from_json(source), files, source["map"], links)

    @property
    def map_file(self) -> Path | None:
        """The run's kept map file (None: the scanner's wiring, or a simulation's crystals)."""
        return (self.run.path / self.map_named if self.map_named.startswith(SOURCE_DIR)
                else None)

    def channel_map(self, scanner: Scanner) -> ChannelMap:
        return channel_map_of(self.run.path, self.map_named, scanner, self.settings)

    def records(self, scanner: Scanner, journal: Path | None = None
                ) -> Iterator[Records | Pairs]:
        """The records as they came: the files one after the other, or the links' journal
        (``journal``: a copy of it elsewhere)."""
        if self.links is None:
            return iter(source_chunks(self.files, self.settings, scanner))
        sample_ps = abcd.ps_per_sample(self.settings.ns_per_sample)
        return abcdlive.journal_records(journal or self.run.journal, sample_ps)

    def extra(self) -> dict[str, Any] | None:
        """What the start document records of a live source besides the settings."""
        return None if self.links is None else {"links": self.links, "journal": True}

    def spectra(self, scanner: Scanner) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(crystal, raw energy) of every mapped record, chunk by chunk."""
        cmap = self.channel_map(scanner)
        for chunk in self.records(scanner):
            for records in (chunk.a, chunk.b) if isinstance(chunk, Pairs) else (chunk,):
                crystal = cmap.crystals_of(records.board, records.channel)
                ok = crystal >= 0
                yield crystal[ok], records.energy[ok]


def recover(kept: KeptSource, scanner: Scanner, sort: SortSettings,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Sort a killed run's kept records again into its own list-mode file and write its stop
    document (the status of a stop document it had is kept)."""
    run = kept.run
    result = sort_any(kept.records(scanner), kept.settings, scanner,
                      kept.channel_map(scanner), sort, run.listmode, progress)
    what = "the journal" if kept.links is not None else "the source files"
    previous = run.stop
    run.write_stop(StopDocument(
        f"recovered from {what}", previous.exit_status if previous else ExitStatus.ABORT,
        result["counts"], result["losses"], data_end_s=result["data_end_s"],
        details={"previous_stop": previous.to_json() if previous else None}))
    return result
