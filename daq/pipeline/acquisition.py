"""A live acquisition: receivers -> journal -> decoder -> energy gate -> time merge -> sorter -> list-mode.

Threads:

- one **receiver** per source (board link), or one for all the ZeroMQ links (a poll over their
  sockets): read bytes (ZeroMQ: up to 64 messages a link), append them to the journal (first,
  always; one block per link, copied into the journal's receive ring, where they stay until
  decoded: :mod:`daq.pipeline.links.ring`) and hand them to the processing thread over a queue
  bounded in bytes (:mod:`daq.pipeline.links.handover`).
  A full queue blocks the receiver, which is back-pressure towards the link (ZeroMQ's
  high-water mark), never a silent drop;
- the **processing** thread and its workers (``threads`` in all, :class:`infra.pool.Workers`): take
  everything queued, decode it link by link, then the energy gate (calibration, histograms,
  singles rates, energy window), time merge, coincidence sorting by time slices, list-mode
  writing (:class:`daq.pipeline.process.processor.Processor`). The output does not depend on
  the number of threads;
- the **live reconstruction** (optional, :mod:`daq.control.live`): fed through a queue that drops (and
  counts) chunks when the reconstruction cannot keep up, so it never slows the journal;
- the **monitor publisher** (optional, :mod:`daq.control.monitor`).

Every thread clocks its CPU time, split into the parts of its loop (:mod:`daq.pipeline.cpu`); the split is
in the stop document (``cpu``) and in :attr:`Acquisition.cpu_split`.

The run ends when its duration is reached, when every board sent its run-stop marker or its
stream ended, on :meth:`Acquisition.stop`, or on an error (a full disk, a lost link), whose one-line
reason goes into the stop document. Whatever the reason, the journal written so far is flushed and
stays readable.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from daq.pipeline.cpu import CpuMeter, ThreadClock
from daq.pipeline.links.handover import BATCH_BYTES, MAX_BYTES, Handover, ring_bytes
from daq.pipeline.links.journal import Held, JournalError, JournalWriter
from daq.pipeline.links.sources import Source, ZmqLinks, ZmqSource
from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.processor import Processor, SortSettings
from hw import wire
from hw.scanner import Scanner
from infra.errors import UserError
from infra.pool import Workers
from runstore.listmode import ListModeWriter
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument


@dataclass
class StreamState:
    """One receiver's link: what arrived, what the decoder made of it."""

    describe: str
    decoder: wire.Decoder
    bytes: int = 0
    ended: bool = False
    error: str | None = None
    idle_since: float | None = None
    """When the link's reads started coming back empty (None while bytes flow)."""
    drained: bool = False
    """The link has ended and the processor has taken its last events."""
    handed: int = 0
    """Messages the receiver handed over (written by the receiver only)."""
    decoded: int = 0
    """Of those, messages the processing thread has decoded (written by it only)."""

    def idle_boards(self, now: float, timeout_s: float) -> list[int]:
        """The boards of this link if it is drained, or has been silent for ``timeout_s`` with
        everything it received decoded (a link whose data still wait in the hand-over is not
        silent: its boards' watermarks are behind what they sent)."""
        silent = self.idle_since is not None and now - self.idle_since > timeout_s
        if self.drained or (silent and self.decoded == self.handed):
            return list(self.decoder.watermarks_ps)
        return []

    @property
    def boards_stopped(self) -> set[int]:
        """Boards of this link that sent their run-stop marker."""
        return {m.board for m in list(self.decoder.markers) if m.kind == "stop"}

    @property
    def all_boards_stopped(self) -> bool:
        """Every board seen on this link has sent its run-stop marker (the receiver can end)."""
        stopped = self.boards_stopped
        return bool(stopped) and stopped >= set(self.decoder.watermarks_ps)

    def report(self) -> dict[str, object]:
        """Counters of this link for the stop document and the monitor."""
        stats = self.decoder.stats
        fifo = sum(b.status.fifo_overflows for b in stats.boards.values() if b.status)
        return {"source": self.describe, "bytes": self.bytes, "ended": self.ended,
                "error": self.error, "boards_stopped": sorted(self.boards_stopped),
                "fifo_overflows": fifo, **stats.as_dict()}


def _read(source: Source, timeout_s: float) -> list | None:
    """What a source has (as buffers, :func:`daq.pipeline.links.sources` ``read_parts`` where it has it);
    ``[]`` for nothing yet, None at the end of the stream."""
    read_parts = getattr(source, "read_parts", None)
    if read_parts is not None:
        return read_parts(timeout_s)
    data = source.read(timeout_s)
    return None if data is None else [data] if data else []


#: Free bytes on the run's disk below which a run stops (an error): the journal, the list-mode
#: file and the stop document are closed whole before the disk refuses a write.
MIN_FREE_BYTES = 32 << 20


class Acquisition:
    """Acquire from ``sources`` into ``run`` until stopped; see the module docstring."""

    def __init__(self, run: RunDir, scanner: Scanner, sources: list[Source],
                 sort: SortSettings, calibration: Calibration, duration_s: float | None = None,
                 settings: dict[str, Any] | None = None, no_data_timeout_s: float = 15.0,
                 quiet_timeout_s: float = 3.0, queue_bytes: int | None = None,
                 on_coincidences: Callable[[np.ndarray], None] | None = None,
                 cpu: CpuMeter | None = None, scan_duration_s: float | None = None,
                 threads: int | None = None,
                 on_end: Callable[[], dict[str, int]] | None = None,
                 end_details: Callable[[], dict[str, Any]] | None = None) -> None:
        """``cpu``: the meter this run's threads clock themselves on (a new one by default;
        a session passes its own so that the live image and the monitor are in the split).
        ``scan_duration_s``: the planned scan time (s) that a SPECT gantry's views share
        (``duration_s`` by default, for a run that ends at the end of its stream).
        ``threads``: the processing threads (None: every core). ``on_end``: called once the
        last coincidences are out, before the stop document is written (a session closes its
        live image there); the losses it returns are recorded with the acquisition's.
        ``end_details``: called after it; what it returns goes into the stop document (a
        session's motion episodes)."""
        self.run, self.scanner, self.sources = run, scanner, sources
        self.cpu = cpu or CpuMeter()
        self.duration_s, self.no_data_timeout_s = duration_s, no_data_timeout_s
        self.calibration = calibration
        self.workers = Workers(threads, "worker", clock=self.cpu.clock)
        queue_bytes = queue_bytes or MAX_BYTES
        self.journal = JournalWriter(run.journal, cpu=self.cpu, min_free_bytes=MIN_FREE_BYTES,
                                     ring_bytes=ring_bytes(queue_bytes))
        self.processor = Processor(scanner, calibration, sort, None, quiet_timeout_s,
                                   on_coincidences, scan_duration_s or duration_s,
                                   self.workers)
        header = {"scanner": scanner.name, "scanner_digest": scanner.digest,
                  **{k: v for k, v in self.processor.settings.items()}}
        rates = self.processor.rates
        self.listmode = ListModeWriter(run.listmode, header,
                                       rate_units=rates.n_units if rates is not None else 0)
        self.processor.writer = self.listmode
        self.streams = [StreamState(s.describe, wire.Decoder(scanner)) for s in sources]
        self.processor.preallocate(BATCH_BYTES, len(sources))
        self.quiet_timeout_s = quiet_timeout_s
        self._queue = Handover(queue_bytes)
        self._stop = threading.Event()
        self._done = threading.Event()
        self.reason = ""
        self.exit_status = ExitStatus.SUCCESS
        self._on_end = on_end
        self._end_details = end_details
        self.stop_doc: StopDocument | None = None
        """The stop document, once the run has ended."""
        self.started_at = 0.0
        self.stopped_at: float | None = None
        self.processed_at: float | None = None
        """When the last event was through the merge and the sorter (after the threads ended,
        the events still held for a slower board are released then)."""
        self._first_data_at: float | None = None
        self._threads: list[threading.Thread] = []
        self.cpu_split: dict[str, Any] | None = None
        """The run's CPU split (:meth:`daq.pipeline.cpu.CpuMeter.report`) once it has ended."""
        run.new_start(scanner.name, scanner.digest, {
            **(settings or {}), "sources": [s.describe for s in sources],
            "duration_s": duration_s, "threads": self.workers.threads,
            "sort": self.processor.settings,
        }, calibration.describe())

    # ------------------------------------------------------------------ control

    def start(self) -> Acquisition:
        """Start the receiver and processor threads."""
        self.started_at = time.monotonic()
        polled = [i for i, s in enumerate(self.sources) if isinstance(s, ZmqSource)]
        if len(polled) > 1:
            self._threads.append(threading.Thread(target=self._receive_polled, args=(polled,),
                                                  name="rx-zmq", daemon=True))
        for i, source in enumerate(self.sources):
            if len(polled) > 1 and i in polled:
                continue
            t = threading.Thread(target=self._receive, args=(i, source), name=f"rx-{i}",
                                 daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._process, name="processing",
                                              daemon=True))
        for t in self._threads:
            t.start()
        threading.Thread(target=self._watch, name="run-watch", daemon=True).start()
        return self

    def stop(self, reason: str = "stop command", status: ExitStatus = ExitStatus.ABORT) -> None:
        """Ask the run to end (idempotent: the first reason stays); :meth:`wait` returns once it
        has. ``status``: how it ends (an operator's stop aborts the run)."""
        if not self._stop.is_set():
            self.reason, self.exit_status = reason, status
            self._stop.set()

    def fail(self, reason: str) -> None:
        """End the run in an error (``reason``, one line for the operator)."""
        self.stop(f"error: {reason}", ExitStatus.FAIL)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the run to end and its files to be closed; True if it has."""
        return self._done.wait(timeout_s)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def elapsed_s(self) -> float:
        end = self.stopped_at or time.monotonic()
        return end - self.started_at if self.started_at else 0.0

    @property
    def acquiring_s(self) -> float:
        """Seconds from the first byte received to the end of the run (or now)."""
        if self._first_data_at is None:
            return 0.0
        return (self.stopped_at or time.monotonic()) - self._first_data_at

    @property
    def processing_s(self) -> float:
        """Seconds from the first byte received until every event had been merged and sorted
        (the end-to-end throughput's time; or now)."""
        if self._first_data_at is None:
            return 0.0
        return (self.processed_at or time.monotonic()) - self._first_data_at

    # ------------------------------------------------------------------ threads

    def _receive(self, index: int, source: Source) -> None:
        state = self.streams[index]
        clock = self.cpu.clock(f"receiver {index}")
        try:
            while not self._stop.is_set():
                parts = _read(source, 0.05)
                clock.lap("read")
                if parts is None:
                    break
                if not parts:
                    state.idle_since = state.idle_since or time.monotonic()
                    if state.all_boards_stopped:
                        break
                    continue
                self._accept(index, parts, clock)
                if state.all_boards_stopped:
                    break
        except JournalError as exc:  # the run's journal, not this link
            self.fail(str(exc))
        except UserError as exc:
            state.error = str(exc)
            self.fail(str(exc))
        finally:
            source.close()
            self._end_link(index)
            clock.close()

    def _receive_polled(self, indices: list[int]) -> None:
        """One thread for several ZeroMQ links (:class:`ZmqLinks`): the same journal blocks
        and hand-over items, per link, as a thread per link would make."""
        clock = self.cpu.clock("receiver")
        links = ZmqLinks([self.sources[i] for i in indices])
        index = indices[0]
        try:
            while links.open_links and not self._stop.is_set():
                ready = links.read(0.05)
                clock.lap("read")
                now = time.monotonic()
                for k in links.open_links:
                    index, state = indices[k], self.streams[indices[k]]
                    if k in ready:
                        self._accept(index, ready[k], clock)
                    else:
                        state.idle_since = state.idle_since or now
                    if state.all_boards_stopped:
                        links.close(k)
                        self._end_link(index)
        except JournalError as exc:  # the run's journal, not the link served last
            self.fail(str(exc))
        except UserError as exc:
            self.streams[index].error = str(exc)
            self.fail(str(exc))
        finally:
            for k in links.open_links:
                links.close(k)
                self._end_link(indices[k])
            clock.close()

    def _accept(self, index: int, parts: list, clock: ThreadClock) -> None:
        """What link ``index`` delivered: into the journal (first), then to the processing
        thread (waiting while its queue is full: back-pressure)."""
        state = self.streams[index]
        state.idle_since = None
        if self._first_data_at is None:
            self._first_data_at = time.monotonic()
        held = self.journal.append(index, parts, hold=True)
        clock.lap("journal")
        n = sum(len(p) for p in held.views)
        state.bytes += n
        state.handed += 1
        self._queue.put((index, held), n, self._stop.is_set)
        clock.lap("hand-over")

    def _end_link(self, index: int) -> None:
        """Link ``index`` has ended: after this item, its boards are done."""
        self.streams[index].ended = True
        self._queue.put((index, None), 0, flush=True)

    def _process(self) -> None:
        receivers = self._threads[:-1]
        failed = False
        clock = self.cpu.clock("processing")
        while True:
            receivers_done = all(not t.is_alive() for t in receivers)
            items = self._queue.take(0.1)
            # waiting before the first byte is the run starting, not a starved processor
            clock.lap("wait" if self._first_data_at is not None else "before the first data")
            if not items and receivers_done:  # checked before the take: nothing can follow
                break
            parts: dict[int, list] = {}
            taken = [0] * len(self.streams)
            ended: list[StreamState] = []
            held: list[Held] = []
            for index, data in items:
                if data is None:
                    ended.append(self.streams[index])
                else:
                    parts.setdefault(index, []).extend(data.views)
                    held.append(data)
                    taken[index] += 1
            if not failed:
                links = [(self.streams[i].decoder, p) for i, p in sorted(parts.items())]
                try:
                    self.processor.consume_links(links, self._idle_boards(), clock)
                except OSError as exc:
                    failed = True
                    self.fail(f"cannot write {self.run.listmode}: {exc}; the journal has "
                              "every event (petdaq recover)")
                except Exception as exc:  # a bug must end the run with its reason, not hang it
                    failed = True
                    self.fail(f"processing failed ({type(exc).__name__}: {exc}); the journal "
                              "has every event (petdaq recover)")
            for h in held:  # decoded: their room in the ring goes back to the receivers
                self.journal.release(h)
            for state, n in zip(self.streams, taken, strict=True):
                state.decoded += n
            for state in ended:
                state.drained = True
            # failed: keep draining so the receivers finish journaling
        clock.close()

    def _idle_boards(self) -> list[int]:
        """Boards whose link has been silent for the quiet timeout while another link was not:
        when every link is silent (the sender stalled, or the machine is busy), nobody is."""
        now = time.monotonic()
        idle = [s.idle_boards(now, self.quiet_timeout_s) for s in self.streams]
        if all(idle):
            return []
        return [b for boards in idle for b in boards]

    def _watch(self) -> None:
        """End the run on duration, end of every stream, no data at all, or a disk that has
        filled up."""
        clock = self.cpu.clock("run watch")
        while not self._stop.wait(0.05):
            now = time.monotonic()
            free = self.disk_free_bytes()
            if free < MIN_FREE_BYTES:
                self.fail(f"the disk of {self.run.path} is full ({free >> 20} MiB free, a run "
                          f"stops below {MIN_FREE_BYTES >> 20} MiB); the journal has every event "
                          "received so far")
            elif self.duration_s is not None and self._first_data_at is not None \
                    and now - self._first_data_at >= self.duration_s:
                self.stop("duration reached", ExitStatus.SUCCESS)
            elif all(s.ended for s in self.streams):
                self.stop("end of stream", ExitStatus.SUCCESS)
            elif self._first_data_at is None and now - self.started_at > self.no_data_timeout_s:
                names = ", ".join(s.describe for s in self.streams)
                self.fail(f"no data from {names} within {self.no_data_timeout_s:g} s: is the "
                          "digitizer (or petdaq emulate) running and the address right?")
        for t in self._threads:
            t.join()
        self.stopped_at = time.monotonic()
        clock.lap("watch")
        try:
            self._close(clock)
            clock.close("close")
        finally:
            self._done.set()

    def _close(self, clock: ThreadClock) -> None:
        try:
            try:
                self.processor.finish(clock)  # the last merge and sort, lapped by their names
            finally:
                self.workers.close()
            self.processed_at = time.monotonic()
            self.processor.save_projections(self.run.path)
            clock.lap("close: list-mode flush, projections")
            self.listmode.close()
            clock.lap("close: list-mode file")
        except (OSError, RuntimeError) as exc:  # h5py reports a full disk as RuntimeError
            self._failed_at_close(f"cannot write {self.run.listmode}: {exc}")
        try:
            self.journal.close()
            clock.lap("close: journal fsync")
        except JournalError as exc:
            self._failed_at_close(str(exc), replace=True)
        details: dict[str, Any] = {}
        losses = self.losses()
        if self._on_end is not None:
            try:
                losses |= self._on_end()
            except Exception as exc:  # the live image's failure must not lose the stop document
                details["live_image_error"] = f"{type(exc).__name__}: {exc}"
        if self._end_details is not None:
            details |= self._end_details()
        self.cpu_split = self.cpu.report()
        for thread in self.cpu_split["threads"].values():   # worker 0's share of the parallel
            thread["shared_s"] = round(self.workers.shared_s.get(thread["tid"], 0.0), 3)
        self.stop_doc = StopDocument(
            self.reason, self.exit_status, self.counts(), losses,
            elapsed_s=round(self.elapsed_s, 3),
            data_end_s=round(self.processor.last_single_ps / 1e12, 6),
            details={"streams": [s.report() for s in self.streams], "cpu": self.cpu_split,
                     **details})
        self.run.write_stop(self.stop_doc)

    def _failed_at_close(self, reason: str, replace: bool = False) -> None:
        """A file that could not be closed fails the run (keeping an earlier error's reason
        unless ``replace``)."""
        if replace or self.exit_status is not ExitStatus.FAIL:
            self.reason, self.exit_status = f"error: {reason}", ExitStatus.FAIL

    # ------------------------------------------------------------------ reporting

    def counts(self) -> dict[str, int]:
        """Totals so far: bytes, frames, events, singles, prompts, delayeds."""
        c = self.processor.counters
        reports = [s.report() for s in self.streams]
        return {"bytes": sum(s.bytes for s in self.streams),
                "frames": sum(r["frames_ok"] for r in reports),
                "events_decoded": sum(r["events"] for r in reports),
                "singles": c.singles, "prompts": c.prompts, "delayeds": c.delayeds,
                "journal_bytes": self.journal.bytes_written}

    def losses(self) -> dict[str, int]:
        """Every loss anywhere, by name (zero when none)."""
        reports = [s.report() for s in self.streams]
        total = lambda k: sum(r[k] for r in reports)  # noqa: E731
        return {"frames_lost": total("seq_gaps"), "events_lost": total("events_lost"),
                "frames_bad": total("frames_bad"),
                "frames_out_of_sequence": total("out_of_sequence"),
                "duplicate_frames": total("duplicates"),
                "bytes_skipped": total("bytes_skipped"), "bad_channel": total("bad_channel"),
                "late_events": self.processor.late_events,
                "journal_bytes_lost": self.journal.payload_bytes_lost,
                "firmware_fifo_overflows": total("fifo_overflows")}

    def queue_fill(self) -> float:
        """How full the receivers -> processing queue is (0..1)."""
        return self._queue.fill()

    def disk_free_bytes(self) -> int:
        return shutil.disk_usage(self.run.path).free
