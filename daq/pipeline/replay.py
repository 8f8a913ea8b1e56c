"""Offline runs from a journal: ``replay`` (re-sort with other settings) and ``recover``.

Both read the journal block by block, decode each stream with its own decoder exactly as the live
receivers did, and run the same :class:`daq.pipeline.process.processor.Processor`, so the same
bytes always give the same coincidences. Nothing is held back for a quiet board: a journal is
complete, so the merge waits for every board's data (``quiet_timeout_s`` is infinite).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from daq.pipeline.links.journal import JournalStats, read_journal
from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.processor import Processor, SortSettings
from hw import wire
from hw.dtypes import RAW_DTYPE
from hw.scanner import Scanner
from infra.errors import UserError
from infra.pool import Workers
from runstore.listmode import ListModeWriter, read_listmode
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument

BATCH_BYTES = 32 << 20
"""Journal bytes decoded and processed together (on the workers)."""


def replay_journal(journal: Path, scanner: Scanner, calibration: Calibration, sort: SortSettings,
                   listmode: Path, progress: Callable[[int, int], None] | None = None,
                   scan_duration_s: float | None = None, threads: int | None = None
                   ) -> dict[str, Any]:
    """Decode, merge and sort every event of ``journal`` into ``listmode`` (SPECT: bin them
    into projections beside it; ``scan_duration_s``, the scan time that the gantry's views
    share) on ``threads`` threads (None: every core; the same output for any number); returns
    the counts, losses and the settings used."""
    stats = JournalStats()
    decoders: dict[int, wire.Decoder] = {}
    workers = Workers(threads, "replay")
    processor = Processor(scanner, calibration, sort, None, quiet_timeout_s=float("inf"),
                          scan_duration_s=scan_duration_s, workers=workers)
    header = {"scanner": scanner.name, "scanner_digest": scanner.digest, **processor.settings}
    writer = ListModeWriter(listmode, header, rate_units=processor.rates.n_units
                            if processor.rates is not None else 0)
    processor.writer = writer
    size = journal.stat().st_size
    done = 0
    batch: dict[int, list[bytes]] = {}
    pending = 0

    def process() -> None:
        links = [(decoders.setdefault(stream, wire.Decoder(scanner)), parts)
                 for stream, parts in sorted(batch.items())]
        processor.consume_links(links)
        batch.clear()
        if progress is not None:
            progress(done, size)

    try:
        for stream, _t_ns, payload in read_journal(journal, stats):
            batch.setdefault(stream, []).append(payload)
            done += len(payload)
            pending += len(payload)
            if pending >= BATCH_BYTES:
                process()
                pending = 0
        process()
        processor.finish()
        processor.save_projections(listmode.parent)
    finally:
        writer.close()
        workers.close()
    decoded = [d.stats.as_dict() for d in decoders.values()]
    c = processor.counters
    counts = {"journal_blocks": stats.blocks, "bytes": stats.bytes,
              "frames": sum(d["frames_ok"] for d in decoded),
              "events_decoded": sum(d["events"] for d in decoded),
              "singles": c.singles, "prompts": c.prompts, "delayeds": c.delayeds}
    losses = {"journal_corrupt_blocks": stats.corrupt_blocks,
              "journal_bytes_skipped": stats.bytes_skipped,
              "journal_truncated_tail_bytes": stats.truncated_tail_bytes,
              "frames_bad": sum(d["frames_bad"] for d in decoded),
              "frames_lost": sum(d["seq_gaps"] for d in decoded),
              "events_lost": sum(d["events_lost"] for d in decoded),
              "frames_out_of_sequence": sum(d["out_of_sequence"] for d in decoded),
              "duplicate_frames": sum(d["duplicates"] for d in decoded),
              "late_events": processor.late_events}
    return {"counts": counts, "losses": losses, "problems": stats.problems,
            "settings": processor.settings,
            "data_end_s": round(processor.last_single_ps / 1e12, 6),
            "singles_per_board": np.asarray(c.singles_per_board).tolist()}


def sort_journal(journal: Path, scanner: Scanner, calibration: Calibration, sort: SortSettings,
                 threads: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Every coincidence (COINC_DTYPE) of ``journal`` sorted with ``sort``: the journal
    streamed through :func:`replay_journal` (memory holds a batch of singles at a time, and
    the coincidences) into a list-mode file in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="petdaq-sort-") as tmp:
        listmode = Path(tmp) / "coincidences.h5"
        try:
            replay_journal(journal, scanner, calibration, sort, listmode, progress=progress,
                           threads=threads)
        except OSError as exc:      # a full or unwritable temporary folder
            raise UserError(f"cannot sort {journal} into {tmp}: {exc.strerror or exc} (set "
                            "TMPDIR to a folder with room)") from None
        return read_listmode(listmode)[0]


def journal_singles(journal: Path, scanner: Scanner, calibration: Calibration,
                    batch_events: int = 1 << 22) -> Iterator[np.ndarray]:
    """The calibrated singles (SINGLE_DTYPE) of ``journal`` in batches of about
    ``batch_events``, each stream's in its order (not merged in time): for tallies that do
    not need the time order, without holding the journal's singles in memory."""
    for raw in _raw_batches(journal, scanner, batch_events):
        yield calibration.apply(raw)


def decode_journal(journal: Path, scanner: Scanner) -> np.ndarray:
    """Every event of a journal (RAW_DTYPE), in time order: e.g. for a calibration."""
    raw = next(_raw_batches(journal, scanner, None), np.empty(0, RAW_DTYPE))
    return raw[np.argsort(raw["t"], kind="stable")]


def _raw_batches(journal: Path, scanner: Scanner, batch_events: int | None
                 ) -> Iterator[np.ndarray]:
    """The journal's decoded events (RAW_DTYPE), each stream's in its order, in batches of
    ``batch_events`` or more (None: one batch); nothing for an empty journal."""
    decoders: dict[int, wire.Decoder] = {}
    held: list[np.ndarray] = []
    n = 0
    for stream, _t_ns, payload in read_journal(journal):
        held.append(decoders.setdefault(stream, wire.Decoder(scanner)).feed(payload))
        n += held[-1].size
        if batch_events is not None and n >= batch_events:
            yield np.concatenate(held)
            held, n = [], 0
    if held:
        yield np.concatenate(held)


def recover(run: RunDir, scanner: Scanner, calibration: Calibration, sort: SortSettings,
            progress: Callable[[int, int], None] | None = None,
            scan_duration_s: float | None = None, threads: int | None = None) -> dict[str, Any]:
    """Rebuild a killed run's coincidences (SPECT: projections) and stop document from its
    journal."""
    result = replay_journal(run.journal, scanner, calibration, sort, run.listmode, progress,
                            scan_duration_s, threads)
    if run.start is None:
        run.new_start(scanner.name, scanner.digest, {"sort": result["settings"]},
                      calibration.describe())
    previous = run.stop  # a run that ended in an error and was rebuilt keeps its status
    run.write_stop(StopDocument(
        "recovered from journal", previous.exit_status if previous else ExitStatus.ABORT,
        result["counts"], result["losses"], data_end_s=result["data_end_s"],
        details={"previous_stop": previous.to_json() if previous else None,
                 "problems": result["problems"]}))
    return result
