"""Other digitizers' files into a run: records -> crystals -> keV -> time order -> sorter ->
list-mode, as the live chain does for our boards.

The records of every file (:mod:`hw.formats`) reach the scanner's crystals through a channel map
(:mod:`hw.channelmap`; a channel it does not name is counted as ``bad_channel``), their raw
energies become keV (:func:`energy_scale`), a reordering bound puts them in time order (a record
older than it is a counted ``late_events``) and the coincidence sorter takes them chunk by chunk:
memory stays bounded for files of any size.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import coincidence
from daq.pipeline.digitizers import energyunits, placing, timing
from daq.pipeline.digitizers.energyunits import UnitTable
from daq.pipeline.digitizers.pairs import PairPlacer, write_pairs
from daq.pipeline.digitizers.reorder import Reorder
from daq.pipeline.digitizers.timing import TimingTable
from daq.pipeline.process.processor import SortSettings
from hw import channelmap, formats
from hw.channelmap import ChannelMap
from hw.scanner import Scanner
from infra.ahead import ahead
from infra.errors import UserError
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
#: GATE singles placed on the crystal nearest their position, or by their volume IDs.
NEAREST = "nearest crystal"
GATE_IDS = "GATE volume IDs"


@dataclass(frozen=True)
class ImportSettings:
    """How another digitizer's files are read."""

    format: str
    """A name of :func:`hw.formats.readers`."""
    ns_per_sample: float | None = None
    """The digitizer's sample period (ns), for formats whose clock counts samples (ABCD)."""
    kev_per_unit: float | None = None
    """keV per raw energy unit, as given (None: :func:`energy_scale` finds it)."""
    reorder_ms: float = DEFAULT_REORDER_MS
    """The reordering bound (ms): records come at most this much out of time order."""
    gate_repeaters: tuple[int, ...] | None = None
    """GATE: the system's repeater counts, when the volume IDs place the singles."""
    layout: str | None = None
    """PETsys: the files' layout (None: told from each file)."""
    group_rule: str = "sum"
    """How a group of hits becomes singles (:data:`hw.formats.records.GROUP_RULES`)."""
    resort: bool = False
    """Coincidence files: their singles sorted by our sorter, not their own pairs."""
    gate_pairs: bool = False
    """GATE: the files' own coincidences, even where they have singles."""

    def describe(self, files: Sequence[Path], channel_map: str) -> dict[str, Any]:
        """What the start document records of the source (a replay needs nothing more):
        ``channel_map`` as :func:`keep_sources` names it."""
        return {"format": self.format, "files": [p.name for p in files],
                "map": self.placement(channel_map), "ns_per_sample": self.ns_per_sample,
                "kev_per_unit": self.kev_per_unit, "reorder_ms": self.reorder_ms,
                "gate_repeaters": list(self.gate_repeaters) if self.gate_repeaters else None,
                "layout": self.layout, "group_rule": self.group_rule, "resort": self.resort,
                "gate_pairs": self.gate_pairs}

    def placement(self, channel_map: str) -> str:
        """How the records reach crystals, as the start document names it."""
        if self.format != "gate":
            return channel_map
        if self.gate_repeaters is None:
            return NEAREST
        return GATE_IDS if channel_map == WIRING else channel_map

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImportSettings:
        """The settings a start document recorded (:meth:`describe`)."""
        given, repeaters = doc.get("kev_per_unit"), doc.get("gate_repeaters")
        return cls(str(doc["format"]), doc.get("ns_per_sample"),
                   None if given is None else float(given),
                   float(doc.get("reorder_ms") or DEFAULT_REORDER_MS),
                   tuple(repeaters) if repeaters else None, doc.get("layout"),
                   str(doc.get("group_rule") or "sum"), bool(doc.get("resort", False)),
                   bool(doc.get("gate_pairs", False)))

    def options(self, scanner: Scanner) -> formats.ReadOptions:
        """What the readers need: the sample period, the scanner's crystals."""
        return formats.ReadOptions(self.ns_per_sample, scanner.crystal_centres,
                                   self.gate_repeaters, self.layout, self.group_rule, self.resort,
                                   self.gate_pairs)


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


def map_file_of(given: Path | None, scanner: Scanner) -> Path | None:
    """The channel map a run reads through: ``--map``, else the scanner's ``[readout] map``, else
    None (the scanner's own boards' wiring)."""
    return given if given is not None else scanner.readout_map


def keep_file(src: Path, dst: Path) -> Path:
    """``src`` at ``dst``: a hard link where the file system allows, else a copy."""
    return _keep(src, dst)


def _keep(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def channel_map_of(run: Path, named: str, scanner: Scanner, settings: ImportSettings
                   ) -> ChannelMap:
    """The channel map a start document names (:meth:`ImportSettings.describe`)."""
    if named == NEAREST:
        return channelmap.identity(scanner)
    if named == GATE_IDS:
        return channelmap.gate_ids(scanner, settings.gate_repeaters)
    return channelmap.wiring(scanner) if named == WIRING else channelmap.load(run / named, scanner)


def check_files(files: Sequence[Path], settings: ImportSettings, scanner: Scanner) -> None:
    """Open every file as its format (header, whole records) before anything is written: a
    damaged one is one UserError."""
    for path in files:
        next(iter(formats.read(path, settings.format, settings.options(scanner), 1)), None)


def singles_of(records: formats.Records, channel_map: ChannelMap,
               kev_per_unit: float | np.ndarray, offsets_ps: np.ndarray | None = None
               ) -> tuple[np.ndarray, int]:
    """(SINGLE_DTYPE singles in the records' order, records on no mapped channel): energies
    times ``kev_per_unit`` (one value, or one a crystal); with ``offsets_ps`` (per crystal,
    :mod:`daq.pipeline.digitizers.timing`) taken off their times."""
    aligned = placing.by_keys(records, channel_map, kev_per_unit, offsets_ps)
    out = aligned[aligned["crystal"] >= 0]
    return out, int(records.size - out.size)


def file_records(files: Sequence[Path], settings: ImportSettings, scanner: Scanner
                 ) -> Iterable[formats.Records]:
    """The records of ``files``, one file after the other."""
    return (records for path in files
            for records in formats.read(path, settings.format, settings.options(scanner)))


def _placer(channel_map: ChannelMap, scanner: Scanner, cal: SourceCalibration
            ) -> Callable[[formats.Records], tuple[np.ndarray, int]]:
    """Records -> (singles, unmapped): in one compiled pass through the map's dense table, or
    by :func:`singles_of` for a map too sparse for one."""
    table = placing.fast_table(channel_map, scanner.n_crystals)
    if table is None:
        return lambda records: singles_of(records, channel_map, cal.kev_per_unit, cal.offsets_ps)
    kev = placing.per_crystal(cal.kev_per_unit, scanner.n_crystals, np.float64)
    offsets = placing.per_crystal(cal.offsets_ps, scanner.n_crystals, np.int64)
    return lambda records: placing.place(records, table, kev, offsets)


@dataclass(frozen=True)
class SourceCalibration:
    """How an imported run's records become keV and lose their channels' time offsets."""

    kev_per_unit: float | np.ndarray
    """One value, or one a crystal."""
    units: UnitTable | None
    timing: TimingTable | None

    @classmethod
    def of(cls, settings: ImportSettings, scanner: Scanner) -> SourceCalibration:
        """One rule: ``--kev-per-unit`` as given; else the newest photopeak table of the scanner
        for this format (``petdaq calibrate RUN``); else 1 (the energies are keV). The time
        offsets: the newest timing table of the scanner."""
        units = None if settings.kev_per_unit is not None else energyunits.current(
            scanner, settings.format)
        scale = (settings.kev_per_unit if settings.kev_per_unit is not None
                 else units.kev_per_unit if units is not None else 1.0)
        return cls(scale, units, timing.current(scanner))

    def describe(self) -> dict[str, Any]:
        """What run.json records of it."""
        energy = (self.units.describe() if self.units is not None else
                  {"method": "kev_per_unit", "kev_per_unit": float(self.kev_per_unit)})
        return {**energy, "timing": self.timing.describe() if self.timing is not None else None}

    @property
    def offsets_ps(self) -> np.ndarray | None:
        return self.timing.offsets_ps if self.timing is not None else None


def sort_records(chunks: Iterable[formats.Records], settings: ImportSettings, scanner: Scanner,
                 channel_map: ChannelMap, sort: SortSettings, listmode: Path,
                 progress: Callable[[int], None] | None = None,
                 calibration: SourceCalibration | None = None,
                 running: dict[str, int] | None = None, read_ahead: bool = False
                 ) -> dict[str, Any]:
    """Sort the records of ``chunks`` (from files, or live as they arrive) into the list-mode
    file ``listmode``, their energies in keV and each single's channel time offset taken off
    before the time order (``calibration``, default :meth:`SourceCalibration.of`); returns the
    counts, the losses and the sort settings used. ``running``: a dict given the counts and
    losses so far after each chunk (for a live monitor). ``read_ahead``: the next chunk read and
    placed on crystals in a thread while this one is ordered and sorted (files: the same
    output)."""
    cal = calibration or SourceCalibration.of(settings, scanner)
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

    place = _placer(channel_map, scanner, cal)

    def placed(records: formats.Records) -> tuple[np.ndarray, int]:
        if not isinstance(records, formats.Records):
            raise UserError("a coincidence file cannot be imported with files of singles "
                            "into one run: import them apart")
        return place(records)

    steps = (ahead(chunks, placed) if read_ahead else
             ((records, placed(records)) for records in chunks))
    try:
        for records, (singles, unmapped) in steps:
            counts["records"] += records.size
            bad += unmapped
            emit(order.feed(singles))
            if running is not None:
                running.update(counts, bad_channel=bad, late_events=order.late_events)
            if progress is not None:
                progress(counts["records"])
        emit(order.flush())
        write(sorter.flush())  # the sorter's last windows
    finally:
        writer.close()
    return {"counts": counts, "losses": {"bad_channel": bad, "late_events": order.late_events},
            "settings": resolved, "data_end_s": round(last_ps / 1e12, 6)}


def source_chunks(files: Sequence[Path], settings: ImportSettings, scanner: Scanner
                  ) -> Iterable[formats.Records | formats.Pairs]:
    """The chunks of ``files``: one file after the other, or, for files of pairs (a prompts and a
    delayed file), merged by time."""
    streams = [iter(formats.read(p, settings.format, settings.options(scanner))) for p in files]
    first = next(streams[0], None)
    streams[0] = itertools.chain([] if first is None else [first], streams[0])
    if isinstance(first, formats.Pairs):
        return formats.merge_by_time(streams)
    return itertools.chain.from_iterable(streams)


def sort_any(chunks: Iterable[formats.Records | formats.Pairs], settings: ImportSettings,
             scanner: Scanner, channel_map: ChannelMap, sort: SortSettings, listmode: Path,
             progress: Callable[[int], None] | None = None,
             calibration: SourceCalibration | None = None, read_ahead: bool = True
             ) -> dict[str, Any]:
    """Records sorted by our sorter (:func:`sort_records`, reading ahead), or pairs another
    system sorted written as they are (:func:`daq.pipeline.digitizers.pairs.write_pairs`), as
    the first chunk is."""
    it = iter(chunks)
    first = next(it, None)
    chunks = itertools.chain([] if first is None else [first], it)
    if not isinstance(first, formats.Pairs):
        return sort_records(chunks, settings, scanner, channel_map, sort, listmode, progress,
                            calibration, read_ahead=read_ahead)
    cal = calibration or SourceCalibration.of(settings, scanner)
    placer = PairPlacer(channel_map, scanner, cal.kev_per_unit, cal.offsets_ps)
    return write_pairs(chunks, scanner, placer, sort.resolved(scanner),
                       round(settings.reorder_ms * 1e9), listmode, progress,
                       windowed=sort.energy_window_kev is not None)


def import_into(run: RunDir, files: Sequence[Path], settings: ImportSettings, scanner: Scanner,
                channel_map: str, sort: SortSettings, progress: Callable[[int], None] | None,
                extra: dict[str, Any] | None = None,
                chunks: Iterable[formats.Records] | None = None,
                source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import into the new run ``run`` the kept ``files`` (or ``chunks``, records from elsewhere,
    ``source`` saying what else the start document records of them): its start document (the
    source's settings, ``extra``), its list-mode file and its stop document; returns the
    result."""
    cmap = channel_map_of(run.path, settings.placement(channel_map), scanner, settings)
    cal = SourceCalibration.of(settings, scanner)
    run.new_start(scanner.name, scanner.digest,
                  {"source": {**settings.describe(files, channel_map),
                              "scanner_file": scanner.source, **(source or {})},
                   "sort": sort.resolved(scanner), **(extra or {})}, cal.describe())
    records = source_chunks(files, settings, scanner) if chunks is None else chunks
    result = sort_any(records, settings, scanner, cmap, sort, run.listmode, progress, cal)
    what = f"{len(files)} {settings.format} file(s)" if chunks is None else "the journal"
    run.write_stop(StopDocument(f"imported {what}", ExitStatus.SUCCESS, result["counts"],
                                result["losses"], data_end_s=result["data_end_s"]))
    return result
