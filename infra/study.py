"""Study information: who is scanned with what, as the run's start document records it.

SUV and every DICOM and BIDS output need it; nothing here is guessed: what was not given stays
None, and :meth:`Study.require` names what a quantity needs and the run lacks.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from infra.errors import UserError

#: Allowed in a patient id: letters, digits and ``-_.`` (it becomes part of file names).
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: A body part: DICOM Body Part Examined's characters (upper case, digits, ``_``).
_BODY_PART = re.compile(r"^[A-Z0-9_]{1,16}$")


@dataclass(frozen=True)
class Study:
    """The patient and the injection (units in the names; None: not given)."""

    patient_id: str | None = None
    """An id or an anonymised id (letters, digits, ``-_.``)."""
    weight_kg: float | None = None
    height_m: float | None = None
    injected_mbq: float | None = None
    """Activity injected, at ``injection_time_utc``."""
    injection_time_utc: str | None = None
    """ISO 8601 UTC time of the injection."""
    radiopharmaceutical: str | None = None
    """The tracer, e.g. ``FDG``; its nuclide is the scan's."""
    body_part: str | None = None
    """What is scanned (DICOM Body Part Examined, e.g. ``HEAD``): a head's calculated mu-map
    gets a skull (:mod:`recon.corrections.attenuation`)."""
    patient_name: str | None = None
    """DICOM Person Name (``Family^Given``), as the worklist gives it."""
    birth_date: str | None = None
    """YYYYMMDD."""
    sex: str | None = None
    """M, F or O."""
    accession_number: str | None = None
    """The hospital's order of the scan (the worklist's; at most 16 characters)."""
    requested_procedure: str | None = None
    """What was ordered, in words (the worklist's Requested Procedure Description)."""
    study_instance_uid: str | None = None
    """The study the worklist scheduled: every DICOM object of the run carries it."""

    def __post_init__(self) -> None:
        if self.patient_id is not None and not _ID.match(str(self.patient_id)):
            raise UserError(f"patient id must be 1 to 64 letters, digits, '-', '_' or '.', got "
                            f"{self.patient_id!r}")
        for name, low, high in (("weight_kg", 0.1, 500.0), ("height_m", 0.2, 3.0),
                                ("injected_mbq", 1e-6, 1e5)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and low <= value <= high):
                raise UserError(f"{name} must be a number from {low:g} to {high:g}, got "
                                f"{value!r}")
            object.__setattr__(self, name, float(value))
        if self.injection_time_utc is not None:
            utc = parse_utc(self.injection_time_utc).astimezone(dt.UTC)
            object.__setattr__(self, "injection_time_utc", utc.isoformat(timespec="milliseconds"))
        if self.radiopharmaceutical is not None and not str(self.radiopharmaceutical).strip():
            raise UserError("radiopharmaceutical must not be empty")
        _check_worklist_fields(self)
        if self.body_part is not None:
            part = str(self.body_part).strip().upper()
            if not _BODY_PART.match(part):
                raise UserError(f"body part must be 1 to 16 letters, digits or '_' (DICOM Body "
                                f"Part Examined, e.g. HEAD), got {self.body_part!r}")
            object.__setattr__(self, "body_part", part)

    @classmethod
    def from_json(cls, doc: Any) -> Study:
        """The study of a start document or a request (unknown keys refused by name)."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise UserError(f"study must be a map, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise UserError(f"unknown study field {unknown[0]!r}: use {', '.join(sorted(known))}")
        return cls(**doc)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def require(self, quantity: str, *names: str) -> None:
        """A clear error naming the fields ``quantity`` needs that this study lacks."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            options = ", ".join("--" + n.replace("_utc", "").replace("_", "-") for n in missing)
            raise UserError(f"{quantity} needs the study's {', '.join(missing)}: the run has "
                            f"none (give {options} when acquiring, or to this command)")

    def injection_before_s(self, scan_start_utc: str) -> float | None:
        """Seconds from the injection to the scan's start (None when not known)."""
        if self.injection_time_utc is None:
            return None
        return (parse_utc(scan_start_utc) - parse_utc(self.injection_time_utc)).total_seconds()


_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _check_worklist_fields(study: Study) -> None:
    """The fields a worklist fills, checked as DICOM holds them."""
    checks = (("birth_date", lambda v: bool(_DATE.match(v)), "YYYYMMDD"),
              ("sex", lambda v: v in ("M", "F", "O"), "M, F or O"),
              ("accession_number", lambda v: 0 < len(v) <= 16 and "\\" not in v,
               "1 to 16 characters"),
              ("study_instance_uid", lambda v: len(v) <= 64 and bool(_UID.match(v)),
               "a DICOM UID (numbers without leading zeros, dots between, at most 64)"),
              ("patient_name", lambda v: 0 < len(v) <= 64 and "\\" not in v,
               "1 to 64 characters"),
              ("requested_procedure", lambda v: 0 < len(v) <= 64, "1 to 64 characters"))
    for name, ok, what in checks:
        value = getattr(study, name)
        if value is not None and not (isinstance(value, str) and ok(value)):
            raise UserError(f"{name.replace('_', ' ')} must be {what}, got {value!r}")


def parse_utc(value: str) -> dt.datetime:
    """An ISO 8601 time (a time without zone is UTC) as an aware datetime."""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"not an ISO 8601 time: {value!r} (e.g. 2026-11-24T09:30:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
