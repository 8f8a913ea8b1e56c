"""ABCD digitizers live: their PUB sockets -> the journal (the records as they came) -> the
importer's time order, map and sorter -> list-mode.

ABCD (the open ZeroMQ DAQ for CAEN digitizers) publishes its events on a PUB socket (port 16181 by
default), each message a topic and 16-byte records (:mod:`hw.formats.abcd`), not time-ordered
within a message, without heartbeats: the reordering bound stands in for the boards' watermarks
and a record older than it is a counted ``late_events``. Waveform messages are skipped and
counted. The journal keeps each link's records as they came (stream = the link's position), so
``petdaq replay`` sorts them again. Several links merge in time like boards do: board = the
link's position in ``--from``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from daq.pipeline import timing
from daq.pipeline.importer import (
    ImportSettings,
    calibration_doc,
    channel_map_of,
    sort_records,
)
from daq.pipeline.journal import JournalWriter, read_journal
from daq.pipeline.processor import SortSettings
from hw.formats import Records, abcd
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument

#: How long the receiving loop waits for a message before it looks at the clock again (ms).
POLL_MS = 100
#: Records handed to the time order at once: at least this many, or what came in this time (s).
BATCH_RECORDS = 1 << 16
BATCH_S = 0.2
_LINK = re.compile(r"^abcd://([^:/?\s]+):(\d{1,5})(\?status=\d{1,5})?$")


def endpoint_of(link: str) -> str:
    """``abcd://HOST:PORT`` (ABCD's data PUB port; ``?status=P`` names its status port) as the
    ZeroMQ endpoint to subscribe to."""
    m = _LINK.match(link)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise UserError(f"{link!r} is not abcd://HOST:PORT (ABCD's data port, 16181 by default)")
    return f"tcp://{m.group(1)}:{m.group(2)}"


@dataclass
class LinkCounters:
    """What the links received besides the records."""

    event_messages: int = 0
    waveform_messages: int = 0
    bad_messages: int = 0
    stopped_by: str = "duration reached"
    interrupted: bool = False
    links: list[str] = field(default_factory=list)


def live_records(endpoints: list[str], sample_ps: int, journal: JournalWriter,
                 duration_s: float | None, stop: threading.Event, counters: LinkCounters
                 ) -> Iterator[Records]:
    """Records from ABCD's PUB sockets as they arrive, each message journaled first, until
    ``duration_s`` has passed (None: until ``stop`` is set or Ctrl-C)."""
    ctx = zmq.Context.instance()
    socks = []
    poller = zmq.Poller()
    for ep in endpoints:
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, abcd.EVENTS_TOPIC)
        s.setsockopt(zmq.SUBSCRIBE, abcd.WAVEFORMS_TOPIC)
        s.connect(ep)
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    end = None if duration_s is None else time.monotonic() + duration_s
    batch: list[Records] = []
    handed = time.monotonic()
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            for sock, _ in poller.poll(POLL_MS):
                board = socks.index(sock)
                got = _message(sock.recv(), counters)
                if got is not None:
                    journal.append(board, got)
                    batch.append(abcd.records(np.frombuffer(got, abcd.EVENT), sample_ps, board))
            if batch and (sum(r.size for r in batch) >= BATCH_RECORDS
                          or time.monotonic() - handed >= BATCH_S):
                yield Records.join(batch)
                batch, handed = [], time.monotonic()
    except KeyboardInterrupt:
        counters.stopped_by = "interrupted (Ctrl-C)"
        counters.interrupted = True
    finally:
        for s in socks:
            s.close(0)
    if batch:
        yield Records.join(batch)


def _message(message: bytes, counters: LinkCounters) -> bytes | None:
    try:
        kind = abcd.payload(message)
    except UserError:
        counters.bad_messages += 1
        return None
    if kind is None:
        return None
    if kind[0] == "waveforms":
        counters.waveform_messages += 1
        return None
    counters.event_messages += 1
    return kind[1]


def journal_records(path: Path, sample_ps: int) -> Iterator[Records]:
    """The records an ABCD run journaled, link by link as they came (its blocks may cut a
    record; each link's bytes are joined again)."""
    rest: dict[int, bytes] = {}
    size = abcd.EVENT.itemsize
    for stream, _t, payload in read_journal(path):
        data = rest.pop(stream, b"") + bytes(payload)
        whole = len(data) - len(data) % size
        rest[stream] = data[whole:]
        if whole:
            yield abcd.records(np.frombuffer(data[:whole], abcd.EVENT), sample_ps, stream)


@dataclass(frozen=True)
class AbcdRun:
    """An ABCD acquisition's settings: its links, how its records are read, and for how long."""

    links: list[str]
    settings: ImportSettings
    channel_map: str
    """As :func:`daq.pipeline.importer.keep_sources` names it."""
    duration_s: float | None = None


def acquire(run: RunDir, spec: AbcdRun, scanner: Scanner, sort: SortSettings,
            stop: threading.Event | None = None, progress=None) -> dict:
    """Acquire from ABCD's links into the new run ``run``: start document, journal,
    list-mode, stop document; returns the importer's result."""
    sample_ps = abcd.ps_per_sample(spec.settings.ns_per_sample)
    cmap = channel_map_of(run.path, spec.channel_map, scanner, "abcd")
    counters = LinkCounters(links=list(spec.links))
    table = timing.current(scanner)
    run.new_start(scanner.name, scanner.digest,
                  {"source": {**spec.settings.describe([], spec.channel_map),
                              "links": list(spec.links), "journal": True},
                   "sort": sort.resolved(scanner), "duration_s": spec.duration_s},
                  calibration_doc(spec.settings, table))
    journal = JournalWriter(run.journal)
    t0 = time.monotonic()
    try:
        chunks = live_records([endpoint_of(link) for link in spec.links], sample_ps, journal,
                              spec.duration_s, stop or threading.Event(), counters)
        result = sort_records(chunks, spec.settings, scanner, cmap, sort, run.listmode, progress,
                              table)
    finally:
        journal.close()
    counts = {**result["counts"], "messages": counters.event_messages,
              "waveform_messages": counters.waveform_messages,
              "journal_bytes": journal.bytes_written}
    losses = {**result["losses"], "bad_messages": counters.bad_messages}
    status = ExitStatus.ABORT if counters.interrupted else ExitStatus.SUCCESS
    run.write_stop(StopDocument(counters.stopped_by, status, counts, losses,
                                elapsed_s=round(time.monotonic() - t0, 3),
                                data_end_s=result["data_end_s"]))
    return result
