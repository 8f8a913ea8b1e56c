"""The run's start and stop documents as typed records (written once into ``run.json``, read back
from runs of any version of the product)."""

from __future__ import annotations

import platform
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from typing import Any


def software_version() -> str:
    """The installed version of bedside-pet."""
    try:
        return metadata.version("bedside-pet")
    except metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ExitStatus(StrEnum):
    """How a run ended, next to the free-text reason of its stop document."""

    SUCCESS = "success"
    """As planned: its duration was reached or its stream ended."""
    ABORT = "abort"
    """Stopped early by the operator (stop command, Ctrl-C) or by the service closing, or
    recovered after the process was killed; what was acquired is intact."""
    FAIL = "fail"
    """Ended by an error (the reason says which): a run the operator must look at."""


#: Stop reasons of runs written before ``exit_status`` existed that were not failures, and how
#: they ended (every other reason that starts with "error" failed; the rest were aborted).
_LEGACY_SUCCESS = ("duration reached", "end of stream", "replayed from journal")


@dataclass(frozen=True)
class StartDocument:
    """What was asked for, with what, when: written when the run starts."""

    uid: str
    """A random UUID (hex) of this run; DICOM and PETSIRD UIDs derive from it."""
    run: str
    """The run directory's name."""
    time_utc: str
    """ISO 8601 UTC time the run started."""
    scanner: str
    scanner_digest: str
    """The scanner description's digest (:attr:`hw.scanner.Scanner.digest`)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The run's settings: ``sort`` (resolved sorter settings), ``sources``, ``duration_s``,
    ``threads``, and ``emulator`` (an emulated scan's) or ``replay_of`` (a replay's source run)."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """The crystal calibration in use (:meth:`daq.pipeline.process.calibration.Calibration.describe`)."""
    software: dict[str, str] = field(default_factory=dict)
    host: str = ""

    @classmethod
    def new(cls, run: str, scanner: str, scanner_digest: str, settings: dict[str, Any],
            calibration: dict[str, Any]) -> StartDocument:
        """The start document of a run starting now on this host."""
        return cls(uuid.uuid4().hex, run, utc_now(), scanner, scanner_digest, settings,
                   calibration, {"bedside-pet": software_version(),
                                 "python": platform.python_version()}, platform.node())

    def setting(self, key: str) -> Any:
        """A setting by name, at the top of ``settings`` or one section down (``nuclide`` is in
        ``emulator``, ``window_ps`` in ``sort``); the first that is not None, else None."""
        if self.settings.get(key) is not None:
            return self.settings[key]
        for value in self.settings.values():
            if isinstance(value, dict) and value.get(key) is not None:
                return value[key]
        return None

    @property
    def sort(self) -> dict[str, Any]:
        """The sorter's settings (keyword arguments of :func:`coincidence.sort`)."""
        return dict(self.settings.get("sort") or {})

    @property
    def scan_duration_s(self) -> float | None:
        """The planned scan time (s): ``--duration``, or the emulated scan's; None if none."""
        emulated = self.settings.get("emulator") or {}
        return self.settings.get("duration_s") or emulated.get("duration_s")

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "run": self.run, "time_utc": self.time_utc,
                "scanner": self.scanner, "scanner_digest": self.scanner_digest,
                "settings": self.settings, "calibration": self.calibration,
                "software": self.software, "host": self.host}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StartDocument:
        return cls(uid=str(doc.get("uid") or ""), run=str(doc.get("run") or ""),
                   time_utc=str(doc.get("time_utc") or ""),
                   scanner=str(doc.get("scanner") or ""),
                   scanner_digest=str(doc.get("scanner_digest") or ""),
                   settings=dict(doc.get("settings") or {}),
                   calibration=dict(doc.get("calibration") or {}),
                   software=dict(doc.get("software") or {}), host=str(doc.get("host") or ""))


@dataclass(frozen=True)
class StopDocument:
    """Why the run ended, what was counted and what was lost: written once when it has ended."""

    reason: str
    """Why it ended, for a person ("duration reached", "error: ...")."""
    exit_status: ExitStatus
    counts: dict[str, int] = field(default_factory=dict)
    """Totals: ``bytes``, ``frames``, ``events``, ``singles``, ``prompts``, ``delayeds``,
    ``journal_bytes``, ..."""
    losses: dict[str, int] = field(default_factory=dict)
    """Every loss anywhere by name (events, frames or bytes as the name says), zero when none."""
    time_utc: str = field(default_factory=utc_now)
    """ISO 8601 UTC time the run ended."""
    elapsed_s: float | None = None
    """Seconds from start to stop (None for a replay or a recovery)."""
    data_end_s: float | None = None
    """The detector clock's time of the last single (s since the run start): how far the data
    reach, however fast they were read (a frames file, a replay); None in older runs."""
    details: dict[str, Any] = field(default_factory=dict)
    """What else was recorded: ``streams`` (per board link), ``cpu`` (the CPU split),
    ``problems`` and ``previous_stop`` (a recovery)."""

    @property
    def failed(self) -> bool:
        return self.exit_status is ExitStatus.FAIL

    @property
    def lost(self) -> dict[str, int]:
        """The losses that are not zero."""
        return {k: v for k, v in self.losses.items() if v}

    def to_json(self) -> dict[str, Any]:
        return {"time_utc": self.time_utc, "reason": self.reason,
                "exit_status": self.exit_status.value, "counts": self.counts,
                "losses": self.losses, "elapsed_s": self.elapsed_s, "data_end_s": self.data_end_s,
                **self.details}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StopDocument:
        reason = str(doc.get("reason") or "")
        known = {"time_utc", "reason", "exit_status", "counts", "losses", "elapsed_s",
                 "data_end_s"}
        return cls(reason=reason, exit_status=_exit_status(doc.get("exit_status"), reason),
                   counts=dict(doc.get("counts") or {}), losses=dict(doc.get("losses") or {}),
                   time_utc=str(doc.get("time_utc") or ""), elapsed_s=doc.get("elapsed_s"),
                   data_end_s=doc.get("data_end_s"),
                   details={k: v for k, v in doc.items() if k not in known})


def _exit_status(value: Any, reason: str) -> ExitStatus:
    """The recorded status, or for a run written before there was one, that of its reason."""
    if value in ExitStatus._value2member_map_:
        return ExitStatus(value)
    if reason.startswith("error"):
        return ExitStatus.FAIL
    return ExitStatus.SUCCESS if reason in _LEGACY_SUCCESS else ExitStatus.ABORT
