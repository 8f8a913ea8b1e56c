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

from daq.pipeline.digitizers.abcdstatus import STATUS_TOPIC, AbcdStatus, parse_status
from daq.pipeline.digitizers.importer import (
    ImportSettings,
    SourceCalibration,
    channel_map_of,
    sort_records,
)
from daq.pipeline.links.journal import JournalWriter, read_journal
from daq.pipeline.process.processor import SortSettings
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


def status_endpoint_of(link: str) -> str:
    """The ZeroMQ endpoint of the link's status PUB socket: ``?status=P``, else the data port
    minus one (ABCD's defaults: 16180 beside 16181)."""
    host_port = endpoint_of(link)
    m = _LINK.match(link)
    port = int(m.group(3)[len("?status="):]) if m.group(3) else int(m.group(2)) - 1
    if not 1 <= port <= 65535:
        raise UserError(f"{link!r}: no status port {port} (give abcd://HOST:PORT?status=P)")
    return f"{host_port.rpartition(':')[0]}:{port}"


@dataclass
class LinkCounters:
    """What the links received besides the records, and what a monitor reads while they
    receive (another thread: each field is replaced or bumped whole)."""

    event_messages: int = 0
    waveform_messages: int = 0
    bad_messages: int = 0
    stopped_by: str = "duration reached"
    interrupted: bool = False
    links: list[str] = field(default_factory=list)
    state: str = "starting"
    """"starting", "running" (receiving), "stopping" (sorting the rest), "stopped"."""
    started_s: float | None = None
    """When the links started receiving (``time.monotonic()``, s)."""
    link_records: dict[int, int] = field(default_factory=dict)
    """Records received, per link (board)."""
    status_messages: int = 0
    bad_status_messages: int = 0
    statuses: dict[int, AbcdStatus] = field(default_factory=dict)
    """The latest status of each link (board) from ABCD's status socket."""
    importer: dict[str, int] = field(default_factory=dict)
    """The importer's running counts and losses (:func:`sort_records`'s ``running``)."""


def live_records(endpoints: list[str], sample_ps: int, journal: JournalWriter,
                 duration_s: float | None, stop: threading.Event, counters: LinkCounters,
                 status_endpoints: list[str] | None = None) -> Iterator[Records]:
    """Records from ABCD's PUB sockets as they arrive, each message journaled first, until
    ``duration_s`` has passed (None: until ``stop`` is set or Ctrl-C); the latest status of
    each of ``status_endpoints`` (one a link) is kept in ``counters.statuses``."""
    poller = zmq.Poller()
    links = {_subscribe(poller, ep, (abcd.EVENTS_TOPIC, abcd.WAVEFORMS_TOPIC)): board
             for board, ep in enumerate(endpoints)}
    statuses = {_subscribe(poller, ep, (STATUS_TOPIC,)): board
                for board, ep in enumerate(status_endpoints or [])}
    end = None if duration_s is None else time.monotonic() + duration_s
    batch: list[Records] = []
    handed = counters.started_s = time.monotonic()
    counters.state = "running"
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            for sock, _ in poller.poll(POLL_MS):
                if sock in statuses:
                    _status(statuses[sock], sock.recv(), counters)
                    continue
                board = links[sock]
                got = _message(sock.recv(), counters)
                if got is not None:
                    journal.append(board, got)
                    rows = np.frombuffer(got, abcd.EVENT)
                    counters.link_records[board] = counters.link_records.get(board, 0) + rows.size
                    batch.append(abcd.records(rows, sample_ps, board))
            if batch and (sum(r.size for r in batch) >= BATCH_RECORDS
                          or time.monotonic() - handed >= BATCH_S):
                yield Records.join(batch)
                batch, handed = [], time.monotonic()
    except KeyboardInterrupt:
        counters.stopped_by = "interrupted (Ctrl-C)"
        counters.interrupted = True
    finally:
        counters.state = "stopping"
        for s in [*links, *statuses]:
            s.close(0)
    if batch:
        yield Records.join(batch)


def _subscribe(poller: zmq.Poller, endpoint: str, topics: tuple[bytes, ...]) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    poller.register(sock, zmq.POLLIN)
    return sock


def _status(board: int, message: bytes, counters: LinkCounters) -> None:
    """Keep the link's latest status; one that cannot be read is a counted
    ``bad_status_messages`` (the records go on)."""
    try:
        counters.statuses[board] = parse_status(message, time.monotonic())
    except ValueError:
        counters.bad_status_messages += 1
        return
    counters.status_messages += 1


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
    """As :func:`daq.pipeline.digitizers.importer.keep_sources` names it."""
    duration_s: float | None = None


def acquire(run: RunDir, spec: AbcdRun, scanner: Scanner, sort: SortSettings,
            stop: threading.Event | None = None, progress=None,
            counters: LinkCounters | None = None) -> dict:
    """Acquire from ABCD's links into the new run ``run``: start document, journal,
    list-mode, stop document; returns the importer's result. ``counters``: where a monitor
    reads the links' counts, the latest statuses and the importer's counts as they grow."""
    sample_ps = abcd.ps_per_sample(spec.settings.ns_per_sample)
    cmap = channel_map_of(run.path, spec.channel_map, scanner, spec.settings)
    counters = counters or LinkCounters(links=list(spec.links))
    cal = SourceCalibration.of(spec.settings, scanner)
    run.new_start(scanner.name, scanner.digest,
                  {"source": {**spec.settings.describe([], spec.channel_map),
                              "links": list(spec.links), "journal": True,
                              "scanner_file": scanner.source},
                   "sort": sort.resolved(scanner), "duration_s": spec.duration_s},
                  cal.describe())
    journal = JournalWriter(run.journal)
    t0 = time.monotonic()
    try:
        chunks = live_records([endpoint_of(link) for link in spec.links], sample_ps, journal,
                              spec.duration_s, stop or threading.Event(), counters,
                              [status_endpoint_of(link) for link in spec.links])
        result = sort_records(chunks, spec.settings, scanner, cmap, sort, run.listmode, progress,
                              cal, running=counters.importer)
    finally:
        journal.close()
    counts = {**result["counts"], "messages": counters.event_messages,
              "waveform_messages": counters.waveform_messages,
              "status_messages": counters.status_messages,
              "bad_status_messages": counters.bad_status_messages,
              "journal_bytes": journal.bytes_written}
    losses = {**result["losses"], "bad_messages": counters.bad_messages}
    status = ExitStatus.ABORT if counters.interrupted else ExitStatus.SUCCESS
    run.write_stop(StopDocument(counters.stopped_by, status, counts, losses,
                                elapsed_s=round(time.monotonic() - t0, 3),
                                data_end_s=result["data_end_s"]))
    counters.state = "stopped"
    return result
