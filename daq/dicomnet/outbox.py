"""The outbox: a run's DICOM objects queued on disk for each node, sent when the node answers,
retried with backoff, kept across restarts; an instance leaves the queue only when its node
acknowledged it (C-STORE success), and is committed when the node's Storage Commitment report
says so."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from daq.dicomnet import commitment, scu
from daq.dicomnet.config import DicomConfig, Node
from infra.atomic import replacing
from infra.errors import UserError
from infra.home import data_home

#: Seconds before the first retry; each failed try doubles it, up to :data:`MAX_BACKOFF_S`.
FIRST_BACKOFF_S = 30.0
MAX_BACKOFF_S = 3600.0
QUEUED, SENT, COMMITTED, FAILED = "queued", "sent", "committed", "failed"


@dataclass
class Item:
    """One DICOM object of a run for one node."""

    file: str
    """Relative to the run directory."""
    sop_instance_uid: str
    state: str = QUEUED
    reason: str = ""
    sop_class_uid: str = ""
    transaction: str = ""
    """The Storage Commitment transaction that asked the node to commit it ("" none yet)."""


@dataclass
class Job:
    """A run's DICOM objects for one node."""

    run: str
    node: str
    created_utc: str
    items: list[Item] = field(default_factory=list)
    attempts: int = 0
    next_try_utc: str = ""
    last_error: str = ""
    commits: bool = False
    """Whether the node took a Storage Commitment request (then ``sent`` awaits its report)."""

    def count(self, state: str) -> int:
        return sum(1 for i in self.items if i.state == state)

    def awaiting(self) -> list[Item]:
        """Objects the node stored and has not yet said it committed."""
        return [i for i in self.items if i.state == SENT and self.commits]

    @classmethod
    def from_json(cls, doc: dict) -> Job:
        return cls(**{**doc, "items": [Item(**i) for i in doc["items"]]})


def outbox_dir() -> Path:
    return data_home() / "outbox"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _job_path(run: Path, node: str) -> Path:
    key = hashlib.sha256(f"{run.resolve()}\n{node}".encode()).hexdigest()[:16]
    return outbox_dir() / f"{run.name}--{node}--{key}.json"


def _save(job: Job) -> None:
    """The job written whole under its name (a full disk: one line, the last saved job kept)."""
    path = _job_path(Path(job.run), job.node)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(asdict(job), indent=1) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the outbox job {path} ({exc.strerror or exc}): the run's "
                        "objects are untouched and the job stays as last saved; free space "
                        "and send again") from None


def jobs() -> list[Job]:
    """Every job of the outbox, oldest first (a damaged job file is one line naming it)."""
    out = []
    for path in sorted(outbox_dir().glob("*.json")):
        try:
            out.append(Job.from_json(json.loads(path.read_text())))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path} is not an outbox job ({exc}): move it away") from None
    return sorted(out, key=lambda j: j.created_utc)


@contextmanager
def locked() -> Iterator[None]:
    """The outbox to this process alone (the service and a command may flush at once)."""
    outbox_dir().mkdir(parents=True, exist_ok=True)
    with (outbox_dir() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def dicom_files(run: Path) -> list[Path]:
    """The run's DICOM objects (every ``*.dcm`` below it)."""
    return sorted(p for p in run.rglob("*.dcm") if p.is_file())


def enqueue(run: Path, nodes: list[Node]) -> list[Job]:
    """Queue every DICOM object of ``run`` for each of ``nodes`` (objects already queued or sent
    to a node are not queued again)."""
    if not (run / "run.json").is_file():
        raise UserError(f"{run} is not a run directory (no run.json)")
    files = dicom_files(run)
    if not files:
        raise UserError(f"{run} holds no DICOM object: reconstruct it first (petdaq recon)")
    uids = {f: _uid(f) for f in files}
    out = []
    with locked():
        for node in nodes:
            path = _job_path(run, node.name)
            job = (Job.from_json(json.loads(path.read_text())) if path.is_file() else
                   Job(str(run.resolve()), node.name, _now().isoformat(timespec="seconds")))
            known = {i.sop_instance_uid for i in job.items}
            for f in files:
                if uids[f] not in known:
                    job.items.append(Item(str(f.relative_to(run)), uids[f]))
            job.next_try_utc = ""
            _save(job)
            out.append(job)
    return out


def _uid(path: Path) -> str:
    """The file's SOP Instance UID, its header alone read."""
    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    except (InvalidDicomError, OSError, AttributeError):
        return f"unreadable:{path.name}"


def flush(config: DicomConfig, force: bool = False, only: list[Job] | None = None,
          say: Callable[[str], None] = lambda s: None,
          timeout_s: float = scu.TIMEOUT_S) -> list[Job]:
    """Try every job with queued objects, or objects awaiting commitment, whose retry is due
    (``force``: every one now; ``only``: these jobs); returns the jobs tried, as they stand
    after."""
    with locked():
        due = _due(config, force, only)
        if not due:
            return []
        with commitment.listening(config, say) as reports:
            asked = set()
            for job in due:
                asked.add(_try(job, config, reports, timeout_s))
                _save(job)
            if reports is not None:
                _committed(due, reports, asked - {""}, config.commit_wait_s)
                for job in due:
                    _save(job)
    for job in due:
        say(f"{Path(job.run).name} -> {job.node}: {_tally(job)}")
    return due


def _due(config: DicomConfig, force: bool, only: list[Job] | None) -> list[Job]:
    """The jobs to try now: queued objects, or objects that await a commitment the station
    can hear, with their retry due (``force``: now) and among ``only``."""
    wanted = None if only is None else {(j.run, j.node) for j in only}
    listens = config.commitment is not None
    return [job for job in jobs()
            if (job.count(QUEUED) or (listens and job.awaiting()))
            and (wanted is None or (job.run, job.node) in wanted)
            and (force or not job.next_try_utc
                 or dt.datetime.fromisoformat(job.next_try_utc) <= _now())]


def _tally(job: Job) -> str:
    said = f"{job.count(SENT) + job.count(COMMITTED)} sent"
    if job.commits:
        said += f" ({job.count(COMMITTED)} committed)"
    said += f", {job.count(QUEUED)} queued, {job.count(FAILED)} failed"
    return said + (f": {job.last_error}" if job.last_error else "")


def _try(job: Job, config: DicomConfig, reports: commitment.Reports | None,
         timeout_s: float) -> str:
    """Send the job's queued objects, and ask for the commitment of what waits for it; the
    transaction UID asked ("" none)."""
    run = Path(job.run)
    for item in job.items:
        if item.state == QUEUED and not (run / item.file).is_file():
            item.state, item.reason = FAILED, "the file is gone"
    queued = [i for i in job.items if i.state == QUEUED]
    awaiting = job.awaiting() if reports is not None else []
    if not queued and not awaiting:
        return ""  # what awaits commitment waits for a listener that could be had
    nodes = [n for n in config.pacs if n.name == job.node]
    if not nodes:
        _retry_later(job, f"node {job.node!r} is no longer in {config.path or 'dicom.toml'}")
        return ""
    commit = [(i.sop_class_uid, i.sop_instance_uid) for i in awaiting if i.sop_class_uid]
    try:
        delivery = scu.store(nodes[0], config, [run / i.file for i in queued], timeout_s,
                             commit=commit if reports is not None else None)
    except scu.Unreachable as exc:
        _retry_later(job, str(exc))
        return ""
    refused = _answered(queued, delivery.stored)
    if delivery.transaction:
        job.commits = True
        for item in [*awaiting, *(i for i in queued if i.state == SENT)]:
            item.transaction = delivery.transaction
    if refused:
        _retry_later(job, f"{len(refused)} instance(s) not stored: {refused[0]}")
    else:
        job.attempts, job.next_try_utc, job.last_error = 0, "", ""
    return delivery.transaction


def _answered(queued: list[Item], stored: list[scu.Stored]) -> list[str]:
    """Each queued item's state from the node's answer; the reasons of those to send again."""
    refused = []
    for item, answer in zip(queued, stored, strict=True):
        if answer.ok:
            item.state, item.reason, item.sop_class_uid = SENT, "", answer.sop_class_uid
        elif not answer.again:
            item.state, item.reason = FAILED, answer.reason
        else:
            item.reason = answer.reason
            refused.append(answer.reason)
    return refused


def _committed(tried: list[Job], reports: commitment.Reports, asked: set[str],
               wait_s: float) -> None:
    """Wait up to ``wait_s`` for the reports of the transactions ``asked`` (this flush's), and
    apply them: a committed object is done; one the node did not commit is queued to be sent
    again."""
    got = reports.wait(asked, wait_s) if asked else {}
    for job in tried:
        for item in job.awaiting():
            report = got.get(item.transaction)
            if report is None:
                continue
            if item.sop_instance_uid in report.committed:
                item.state, item.reason = COMMITTED, ""
            elif item.sop_instance_uid in report.failed:
                item.state = QUEUED
                item.reason = (f"not committed by the node (failure reason "
                               f"0x{report.failed[item.sop_instance_uid]:04X}): sent again")
        left = [i for i in job.awaiting() if i.transaction in asked]
        if left and not job.last_error:
            _retry_later(job, f"{len(left)} object(s) stored, no Storage Commitment report within "
                              f"{wait_s:g} s (asked again at the next try)")
        elif job.count(QUEUED) and not job.last_error:
            _retry_later(job, next(i.reason for i in job.items if i.state == QUEUED))


def _retry_later(job: Job, why: str) -> None:
    job.attempts += 1
    wait_s = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (job.attempts - 1))
    job.next_try_utc = (_now() + dt.timedelta(seconds=wait_s)).isoformat(timespec="seconds")
    job.last_error = why
