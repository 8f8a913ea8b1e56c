"""A run's DICOM objects to a real PACS (Orthanc on loopback): C-ECHO, C-STORE through the
persistent outbox, a PACS that is down and comes back, and bad configuration."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomcheck import dciodvfy_errors
from inprocess import petdaq as _inprocess
from orthanc import AE_TITLE, Orthanc, needs_orthanc

from recon.grid import Grid
from recon.outputs.export import Acquisition, Radiopharmaceutical, write_dicom_pet
from runstore.rundir import RunDir

pytestmark = needs_orthanc()
STATION = "BEDSIDEPET"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("BEDSIDE_PET_HOME", str(folder))
    return folder


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc", STATION).start()
    yield server
    server.stop()


def _configure(home: Path, server: Orthanc, ae: str = AE_TITLE, extra: str = "") -> None:
    (home / "dicom.toml").write_text(
        f'[station]\nae_title = "{STATION}"\n\n[[pacs]]\nname = "pacs"\nae_title = "{ae}"\n'
        f'host = "127.0.0.1"\nport = {server.dicom_port}\n{extra}')


def _run(tmp_path: Path, name: str = "run-1") -> Path:
    """A run directory holding a PET series of 12 slices."""
    run = RunDir.create(tmp_path / "runs", name)
    (run.path / "run.json").write_text(json.dumps({"start": {"scanner": "bedside-brain"}}))
    grid = Grid((16, 16, 12), (2.0, 2.0, 3.0), (-15.0, -15.0, -16.5))
    image = grid.image(np.random.default_rng(1).uniform(100, 5000, grid.shape)
                       .astype(np.float32), "Bq/mL")
    start = dt.datetime(2026, 3, 4, 10, 30)
    write_dicom_pet(image, run.path / "images" / "dicom",
                    Radiopharmaceutical("F-18", 6586.2, 0.967, 2e8,
                                        start - dt.timedelta(minutes=45), "FDG"),
                    Acquisition(start, 600.0, scanner="bedside-brain"))
    return run.path


def petdaq(home: Path, *args: str) -> subprocess.CompletedProcess:
    return _inprocess(*args, home=home)


def _held(server: Orthanc) -> dict[str, bytes]:
    return {i["MainDicomTags"]["SOPInstanceUID"]: server.file_of(i["ID"])
            for i in server.instances()}


def _files(run: Path) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in
            (pydicom.dcmread(f) for f in sorted(run.rglob("*.dcm")))}


def test_echo_and_send_a_run(tmp_path, home, orthanc):
    """Orthanc then holds every instance the run directory holds, each the same dataset."""
    _configure(home, orthanc)
    run = _run(tmp_path)
    r = petdaq(home, "send", "--echo")
    assert r.returncode == 0 and "C-ECHO ok" in r.stdout, r.stdout + r.stderr
    r = petdaq(home, "send", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "12 sent, 0 queued, 0 failed" in r.stdout
    held, files = _held(orthanc), _files(run)
    assert set(held) == set(files) and len(held) == 12
    for uid, raw in held.items():
        stored = pydicom.dcmread(__import__("io").BytesIO(raw))
        assert stored.PixelData == files[uid].PixelData
        assert stored.PatientID == files[uid].PatientID
    r = petdaq(home, "send", "--status")
    assert r.returncode == 0 and "   12         -      0      0" in r.stdout, r.stdout


def test_a_refused_association_keeps_the_queue(tmp_path, home, orthanc):
    """A called AE title Orthanc is not: refused, queued with the reason, nothing lost."""
    _configure(home, orthanc, ae="NOTORTHANC")
    run = _run(tmp_path)
    r = petdaq(home, "send", str(run))
    assert r.returncode == 1 and "refused the association" in r.stdout, r.stdout + r.stderr
    assert orthanc.get("/instances") == []
    _configure(home, orthanc)
    r = petdaq(home, "send", "--flush")
    assert r.returncode == 0 and len(_held(orthanc)) == 12


@pytest.mark.parametrize(("toml", "said"), [
    ('[[pacs]]\nname = "p"\nae_title = "A_TITLE_LONGER_THAN_16"\nhost = "h"\nport = 104\n',
     "pacs[0].ae_title: an AE title is 1 to 16 characters"),
    ('[[pacs]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 70000\n',
     "pacs[0].port must be a TCP port"),
    ('[send]\nat_stop = "sometimes"\n', "send.at_stop must be one of never, on-success, always"),
    ('[[pacs]]\nname = "p"\nae_title = "P"\nport = 104\n', "pacs[0].host is missing"),
    ("[pacs\n", "is not valid TOML"),
])
def test_bad_configuration_is_one_line_naming_the_key(tmp_path, home, capsys, toml, said):
    from petdaq.cli import main

    (home / "dicom.toml").write_text(toml)
    assert main(["send", "--echo"]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err


def test_an_unreachable_node_and_an_unknown_name(tmp_path, home):
    from infra.ports import free_port_block

    (home / "dicom.toml").write_text(
        f'[[pacs]]\nname = "far"\nae_title = "FAR"\nhost = "127.0.0.1"\n'
        f'port = {free_port_block(1)}\n')
    r = petdaq(home, "send", "--echo")
    assert r.returncode == 1 and "no DICOM answer from 127.0.0.1" in r.stdout
    r = petdaq(home, "send", str(tmp_path), "--to", "near")
    assert r.returncode == 2 and "unknown PACS node 'near'" in r.stderr


def test_a_pacs_down_at_the_stop_gets_every_instance_once_it_is_back(tmp_path, home,
                                                                     orthanc):
    """[send] at_stop = "on-success" with Orthanc stopped: the emulated run still succeeds and
    writes its PET series; the status shows the queue and why; Orthanc started again, --flush
    delivers every instance of the run directory, once, and a second flush sends nothing."""
    _configure(home, orthanc, extra='\n[send]\nat_stop = "on-success"\n')
    orthanc.stop()
    r = petdaq(home, "run", "--duration", "1", "--activity-mbq", "2", "--fast", "--out",
               str(tmp_path / "runs"),
               "--name", "scan")
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "runs" / "scan"
    files = _files(run)
    assert len(files) > 20 and "queued in the outbox" in r.stdout
    r = petdaq(home, "send", "--status")
    assert f"    0         - {len(files):6d}      0" in r.stdout, r.stdout
    assert "no DICOM answer from 127.0.0.1" in r.stdout
    job = json.loads(next((home / "outbox").glob("*.json")).read_text())
    assert job["attempts"] == 1 and job["next_try_utc"]
    orthanc.start()
    r = petdaq(home, "send", "--flush")
    assert r.returncode == 0 and f"{len(files)} sent, 0 queued" in r.stdout, r.stdout + r.stderr
    assert set(_held(orthanc)) == set(files)
    r = petdaq(home, "send", "--flush")  # nothing left: nothing sent again
    assert r.returncode == 0 and "sent" not in r.stdout
    assert int(orthanc.get("/statistics")["CountInstances"]) == len(files)


def _worklist_entry(folder: Path, accession: str, patient: str, date: str) -> Path:
    """A worklist file as Orthanc's ModalityWorklists plugin serves them."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = "Doe^Jane", patient
    ds.PatientBirthDate, ds.PatientSex, ds.PatientWeight = "19700101", "F", "68"
    ds.AccessionNumber = accession
    ds.RequestedProcedureDescription = "FDG brain PET"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1." + accession[-2:]
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = "PT", STATION
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, "093000"
    step.ScheduledProcedureStepDescription = "FDG brain"
    ds.ScheduledProcedureStepSequence = [step]
    path = folder / f"{accession}.wl"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_run_from_the_worklist_sends_its_series_with_the_worklists_study(tmp_path, home,
                                                                           orthanc):
    """petdaq worklist lists the scheduled procedure; a run started with --worklist records its
    study and sends its series at the stop; Orthanc holds every instance with the worklist's
    patient id, accession number and Study Instance UID."""
    today = dt.date.today().strftime("%Y%m%d")
    _worklist_entry(orthanc.worklists, "ACC0042", "P0042", today)
    _worklist_entry(orthanc.worklists, "ACC0043", "P0043", "20200101")
    _configure(home, orthanc, extra=(
        f'\n[worklist]\nae_title = "{AE_TITLE}"\nhost = "127.0.0.1"\n'
        f'port = {orthanc.dicom_port}\n\n[send]\nat_stop = "on-success"\n'))
    r = petdaq(home, "worklist")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ACC0042" in r.stdout and "Doe^Jane" in r.stdout and "FDG brain PET" in r.stdout
    assert "ACC0043" not in r.stdout  # another day
    r = petdaq(home, "worklist", "--date", "any", "--patient", "P0043")
    assert "ACC0043" in r.stdout and "ACC0042" not in r.stdout
    r = petdaq(home, "run", "--worklist", "ACC0042", "--duration", "1", "--activity-mbq", "2",
               "--fast",
               "--out", str(tmp_path / "runs"), "--name", "scan")
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "runs" / "scan"
    study = json.loads((run / "run.json").read_text())["start"]["settings"]["study"]
    assert study["accession_number"] == "ACC0042" and study["patient_id"] == "P0042"
    files = _files(run)
    held = orthanc.instances()
    assert len(held) == len(files) > 20
    if shutil.which("dciodvfy"):  # the worklist's fields keep the objects valid
        assert dciodvfy_errors(sorted(run.rglob("*.dcm"))[0]) == []
    for i in held:
        tags = orthanc.get(f"/instances/{i['ID']}/simplified-tags")
        assert tags["PatientID"] == "P0042" and tags["AccessionNumber"] == "ACC0042"
        assert tags["StudyInstanceUID"] == "1.2.826.0.1.3680043.10.1.42"
        assert tags["PatientSex"] == "F" and tags["PatientBirthDate"] == "19700101"
    r = petdaq(home, "run", "--worklist", "ACC9999", "--duration", "1", "--out",
               str(tmp_path / "runs"))
    assert r.returncode == 2 and "has 0 procedures of accession number 'ACC9999'" in r.stderr


def test_the_service_answers_the_consoles_worklist_query_and_says_how_the_outbox_stands(
        tmp_path, home, orthanc):
    """The DAQ service: ``worklist`` gives today's procedures; its status says what the outbox
    holds and why a queue waits."""
    import zmq
    from sockets import timed_socket

    from daq import messages
    from daq.control.service import DaqService
    from infra.ports import free_port_block

    today = dt.date.today().strftime("%Y%m%d")
    _worklist_entry(orthanc.worklists, "ACC0042", "P0042", today)
    _configure(home, orthanc, extra=(f'\n[worklist]\nae_title = "{AE_TITLE}"\n'
                                     f'host = "127.0.0.1"\nport = {orthanc.dicom_port}\n'))
    run = _run(tmp_path)
    orthanc.stop()
    assert petdaq(home, "send", str(run)).returncode == 1  # queued: the PACS is down
    base = free_port_block(2)
    svc = DaqService(tmp_path / "runs", monitor_port=base, control_port=base + 1).start()
    sock = timed_socket(zmq.REQ, zmq.Context.instance())
    sock.connect(f"tcp://127.0.0.1:{base + 1}")

    def ask(request: dict) -> dict:
        sock.send(messages.pack(request))
        return messages.unpack(sock.recv())

    try:
        status = ask({"cmd": "status"})
        assert status["outbox"]["queued"] == 12 and "connection refused" in status["outbox"]["why"]
        reply = ask({"cmd": "worklist"})
        assert not reply["ok"] and "worklist: no DICOM answer" in reply["error"]
        orthanc.start()
        reply = ask({"cmd": "worklist"})
        assert reply["ok"], reply
        (p,) = reply["procedures"]
        assert (p["accession_number"], p["patient_id"], p["sex"]) == ("ACC0042", "P0042", "F")
    finally:
        sock.close()
        svc.close()


def test_a_run_sorted_from_another_digitizer_sends_at_its_stop(tmp_path, home, orthanc):
    """The end of a live ABCD acquisition (``finish_records_run(..., at_stop=True)``) sends the
    run's objects as ``[send] at_stop`` says; an import (no ``at_stop``) sends nothing."""
    from hw.scanner import load_scanner
    from petdaq.summary import finish_records_run

    _configure(home, orthanc, extra='\n[send]\nat_stop = "always"\n')
    brain = load_scanner("bedside-brain")
    counts = {"counts": {"prompts": 0}}
    finish_records_run(RunDir(_run(tmp_path, "imported")), brain, counts, recon=False)
    assert orthanc.get("/instances") == []
    run = _run(tmp_path, "live")
    finish_records_run(RunDir(run), brain, counts, recon=False, at_stop=True)
    assert set(_held(orthanc)) == set(_files(run))
