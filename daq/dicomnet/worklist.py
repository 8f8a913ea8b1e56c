"""The Modality Worklist (C-FIND): the procedures the hospital scheduled, each as the study a run
records (patient, accession number, Study Instance UID)."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from daq.dicomnet import scu
from daq.dicomnet.config import DicomConfig
from infra.errors import UserError
from infra.study import Study

#: C-FIND statuses that carry a match.
PENDING = {0xFF00, 0xFF01}


@dataclass(frozen=True)
class Filters:
    """What the query asks for (None: any)."""

    date: str | None = None
    """YYYYMMDD, or a range YYYYMMDD-YYYYMMDD."""
    modality: str | None = None
    station_ae: str | None = None
    patient_id: str | None = None
    accession_number: str | None = None


@dataclass(frozen=True)
class Procedure:
    """A scheduled procedure step and its patient."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    weight_kg: float | None
    accession_number: str
    requested_procedure: str
    study_instance_uid: str
    modality: str
    station_ae: str
    date: str
    time: str

    def study(self) -> Study:
        """The study a run started from this procedure records."""
        def given(value: str) -> str | None:
            return value or None

        return Study(patient_id=given(self.patient_id), patient_name=given(self.patient_name),
                     birth_date=given(self.birth_date), sex=given(self.sex),
                     weight_kg=self.weight_kg, accession_number=given(self.accession_number),
                     requested_procedure=given(self.requested_procedure),
                     study_instance_uid=given(self.study_instance_uid))


def _identifier(f: Filters) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "", f.patient_id or ""
    ds.PatientBirthDate, ds.PatientSex, ds.PatientWeight = "", "", ""
    ds.AccessionNumber = f.accession_number or ""
    ds.RequestedProcedureDescription, ds.StudyInstanceUID = "", ""
    step = Dataset()
    step.Modality = f.modality or ""
    step.ScheduledStationAETitle = f.station_ae or ""
    step.ScheduledProcedureStepStartDate = f.date or ""
    step.ScheduledProcedureStepStartTime = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value).strip() if value is not None else ""


def _procedure(ds: Dataset) -> Procedure:
    steps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    step = steps[0]
    weight = ds.get("PatientWeight", None)
    return Procedure(_text(ds, "PatientID"), _text(ds, "PatientName"),
                     _text(ds, "PatientBirthDate"), _text(ds, "PatientSex"),
                     float(weight) if weight not in (None, "") else None,
                     _text(ds, "AccessionNumber"), _text(ds, "RequestedProcedureDescription"),
                     _text(ds, "StudyInstanceUID"), _text(step, "Modality"),
                     _text(step, "ScheduledStationAETitle"),
                     _text(step, "ScheduledProcedureStepStartDate"),
                     _text(step, "ScheduledProcedureStepStartTime"))


def query(config: DicomConfig, filters: Filters, timeout_s: float = scu.TIMEOUT_S
          ) -> list[Procedure]:
    """The scheduled procedures the worklist server has for ``filters``, by date and time."""
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    if config.worklist is None:
        raise UserError("no worklist server configured: add a [worklist] table (ae_title, host, "
                        "port) to dicom.toml (docs/dicom.md)")
    ae = scu.new_ae(config.station_ae, timeout_s)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = scu.associate(ae, config.worklist, config)
    found = []
    try:
        for status, identifier in assoc.send_c_find(_identifier(filters),
                                                    ModalityWorklistInformationFind):
            if not status:
                raise scu.Unreachable(f"{config.worklist.describe()} did not answer the query "
                                      f"within {timeout_s:g} s")
            if int(status.Status) in PENDING and identifier is not None:
                found.append(_procedure(identifier))
            elif int(status.Status) not in (0x0000, *PENDING):
                raise scu.Unreachable(f"{config.worklist.describe()} answered the query with "
                                      f"status 0x{int(status.Status):04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    return sorted(found, key=lambda p: (p.date, p.time, p.accession_number))


def by_accession(config: DicomConfig, accession: str) -> Procedure:
    """The one scheduled procedure of ``accession`` (none or several: one line)."""
    try:
        found = query(config, Filters(accession_number=accession))
    except scu.Unreachable as exc:
        raise UserError(f"worklist: {exc}") from None
    if len(found) != 1:
        raise UserError(f"the worklist has {len(found)} procedures of accession number "
                        f"{accession!r}" + (": petdaq worklist lists them" if found else ""))
    return found[0]
