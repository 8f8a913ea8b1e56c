"""Other digitizers' files into a run: records -> crystals -> keV -> time order -> sorter ->
list-mode, as the live chain does for our boards.

The records of every file (:mod:`hw.formats`) reach the scanner's crystals through a channel map
(:mod:`hw.channelmap`; a channel it does not name is counted as ``bad_channel``), their raw
energies become keV by ``kev_per_unit``, a reordering bound puts them in time order (a record
older than it is a counted ``late_events``) and the coincidence sorter takes them chunk by chunk:
memory stays bounded for files of any size.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import coincidence
from daq.pipeline import timing
from daq.pipeline.processor import SortSettings
from daq.pipeline.reorder import Reorder
from daq.pipeline.timing import TimingTable
from hw import channelmap, formats
from hw.channelmap import ChannelMap
from hw.dtypes import SINGLE_DTYPE
from hw.scanner import Scanner
from runstore.listmode import ListModeWriter
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument

#: How late a record may come after a later one and still take its place (ms).
DEFAULT_REORDER_MS = 1000.0
#: Where a run keeps the files it was imported from, and its channel map.
SOURCE_DIR = "source"
MAP_FILE = "map.csv"
#: A run read through the scanner's own wiring.
WIRING = "wiring"


@dataclass(frozen=True)
class ImportSettings:
    """How another digitizer's files are read."""

    format: str
    """A name of :func:`hw.formats.readers`."""
    ns_per_sample: float | None = None
    """The digitizer's sample period (ns), for formats whose clock counts samples (ABCD)."""
    kev_per_unit: float = 1.0
    """keV per raw energy unit (1: the file's energies are keV already, or not yet calibrated)."""
    reorder_ms: float = DEFAULT_REORDER_MS
    """The reordering bound (ms): records come at most this much out of time order."""

    def describe(self, files: Sequence[Path], channel_map: str) -> dict[str, Any]:
        """What the start document records of the source (a replay needs nothing more):
        ``channel_map`` as :func:`keep_sources` names it."""
        named = "nearest crystal" if self.format == "gate" else channel_map
        return {"format": self.format, "files": [p.name for p in files], "map": named,
                "ns_per_sample": self.ns_per_sample, "kev_per_unit": self.kev_per_unit,
                "reorder_ms": self.reorder_ms}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImportSettings:
        """The settings a start document recorded (:meth:`describe`)."""
        return cls(str(doc["format"]), doc.get("ns_per_sample"),
                   float(doc.get("kev_per_unit") or 1.0),
                   float(doc.get("reorder_ms") or DEFAULT_REORDER_MS))


    def options(self, scanner: Scanner) -> formats.ReadOptions:
        """What the readers need: the sample period, the scanner's crystals."""
        return formats.ReadOptions(self.ns_per_sample, scanner.crystal_centres)


def keep_sources(run: Path, files: Sequence[Path], map_file: Path | None) -> tuple[list[Path], str]:
    """Keep the files a run is imported from, and its map, in ``run/source/`` (linked where the
    file system allows, else copied): the run replays from them alone. Returns the kept files
    and the map as the start document names it (``source/map.csv``, or ``wiring`` without one)."""
    folder = run / SOURCE_DIR
    folder.mkdir(exist_ok=True)
    kept = [_keep(f, folder / f.name) for f in files]
    if map_file is None:
        return kept, WIRING
    _keep(map_file, folder / MAP_FILE)
    return kept, f"{SOURCE_DIR}/{MAP_FILE}"


def keep_file(src: Path, dst: Path) -> Path:
    """``src`` at ``dst``: a hard link where the file system allows, else a copy."""
    return _keep(src, dst)


def _keep(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def channel_map_of(run: Path, named: str, scanner: Scanner, fmt: str) -> ChannelMap:
    """The channel map a start document names (:func:`keep_sources`)."""
    if fmt == "gate":
        return channelmap.identity(scanner)
    return channelmap.wiring(scanner) if named == WIRING else channelmap.load(run / named, scanner)


def check_files(files: Sequence[Path], settings: ImportSettings, scanner: Scanner) -> None:
    """Open every file as its format (header, whole records) before anything is written: a
    damaged one is one UserError."""
    for path in files:
        next(iter(formats.read(path, settings.format, settings.options(scanner), 1)), None)


def singles_of(records: formats.Records, channel_map: ChannelMap, kev_per_unit: float,
               offsets_ps: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(SINGLE_DTYPE singles in the records' order, records on no mapped channel); with
    ``offsets_ps`` (per crystal, :mod:`daq.pipeline.timing`) taken off their times."""
    crystal = channel_map.crystals_of(records.board, records.channel)
    ok = crystal >= 0
    out = np.empty(int(ok.sum()), SINGLE_DTYPE)
    out["crystal"] = crystal[ok]
    out["t"] = records.t_ps[ok]
    if offsets_ps is not None:
        out["t"] -= offsets_ps[out["crystal"]]
    out["energy"] = (records.energy[ok] * kev_per_unit).astype(np.float32)
    return out, int(records.size - out.size)


def file_records(files: Sequence[Path], settings: ImportSettings, scanner: Scanner
                 ) -> Iterable[formats.Records]:
    """The records of ``files``, one file after the other."""
    return (records for path in files
            for records in formats.read(path, settings.format, settings.options(scanner)))


def calibration_doc(settings: ImportSettings, table: TimingTable | None) -> dict[str, Any]:
    """What run.json records of an imported run's calibration: the energy unit and the timing
    table (the newest of the scanner, :func:`daq.pipeline.timing.current`)."""
    return {"method": "kev_per_unit", "kev_per_unit": settings.kev_per_unit,
            "timing": table.describe() if table is not None else None}


def sort_records(chunks: Iterable[formats.Records], settings: ImportSettings, scanner: Scanner,
                 channel_map: ChannelMap, sort: SortSettings, listmode: Path,
                 progress: Callable[[int], None] | None = None,
                 timing: TimingTable | None = None) -> dict[str, Any]:
    """Sort the records of ``chunks`` (from files, or live as they arrive) into the list-mode
    file ``listmode``, each single's channel time offset (``timing``) taken off before the time
    order; returns the counts, the losses and the sort settings used."""
    offsets = timing.offsets_ps if timing is not None else None
    resolved = sort.resolved(scanner)
    sorter = coincidence.Sorter(scanner=scanner, **resolved)
    order = Reorder(round(settings.reorder_ms * 1e9))
    writer = ListModeWriter(listmode, {"scanner": scanner.name,
                                       "scanner_digest": scanner.digest, **resolved})
    counts = {"records": 0, "singles": 0, "prompts": 0, "delayeds": 0}
    bad = 0
    last_ps = 0

    def write(coinc: np.ndarray) -> None:
        delayed = int(np.count_nonzero(coinc["delayed"]))
        counts["delayeds"] += delayed
        counts["prompts"] += int(coinc.size) - delayed
        writer.append(coinc)

    def emit(singles: np.ndarray) -> None:
        nonlocal last_ps
        if singles.size:
            counts["singles"] += int(singles.size)
            last_ps = max(last_ps, int(singles["t"][-1]))
            write(sorter.feed(singles))

    try:
        for records in chunks:
            singles, unmapped = singles_of(records, channel_map, settings.kev_per_unit, offsets)
            counts["records"] += records.size
            bad += unmapped
            emit(order.feed(singles))
            if progress is not None:
                progress(counts["records"])
        emit(order.flush())
        write(sorter.flush())  # the sorter's last windows
    finally:
        writer.close()
    return {"counts": counts, "losses": {"bad_channel": bad, "late_events": order.late_events},
            "settings": resolved, "data_end_s": round(last_ps / 1e12, 6)}


def import_into(run: RunDir, files: Sequence[Path], settings: ImportSettings, scanner: Scanner,
                channel_map: str, sort: SortSettings, progress: Callable[[int], None] | None,
                extra: dict[str, Any] | None = None,
                chunks: Iterable[formats.Records] | None = None,
                source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import into the new run ``run`` the kept ``files`` (or ``chunks``, records from elsewhere,
    ``source`` saying what else the start document records of them): its start document (the
    source's settings, ``extra``), its list-mode file and its stop document; returns the
    result."""
    cmap = channel_map_of(run.path, channel_map, scanner, settings.format)
    table = timing.current(scanner)
    run.new_start(scanner.name, scanner.digest,
                  {"source": {**settings.describe(files, channel_map), **(source or {})},
                   "sort": sort.resolved(scanner), **(extra or {})},
                  calibration_doc(settings, table))
    records = file_records(files, settings, scanner) if chunks is None else chunks
    result = sort_records(records, settings, scanner, cmap, sort, run.listmode, progress, table)
    what = f"{len(files)} {settings.format} file(s)" if chunks is None else "the journal"
    run.write_stop(StopDocument(f"imported {what}", ExitStatus.SUCCESS, result["counts"],
                                result["losses"], data_end_s=result["data_end_s"]))
    return result
