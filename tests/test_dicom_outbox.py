"""The outbox without a server: what cannot be sent stays queued with its reason and a retry
that backs off; a file that is gone or is no DICOM file is failed, never retried."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from tinydisk import tiny_tmpfs

from daq.dicomnet import config as dicomconfig
from daq.dicomnet import outbox
from infra.errors import UserError
from infra.ports import free_port_block


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("BEDSIDE_PET_HOME", str(folder))
    (folder / "dicom.toml").write_text(
        f'[[pacs]]\nname = "down"\nae_title = "PACS"\nhost = "127.0.0.1"\n'
        f'port = {free_port_block(1)}\n')
    return folder


def _run(tmp_path: Path, files: dict[str, bytes]) -> Path:
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    for name, data in files.items():
        (run / "images" / name).write_bytes(data)
    return run


def test_a_node_down_backs_off_and_bad_files_fail(tmp_path, home):
    run = _run(tmp_path, {"junk.dcm": b"not dicom at all" * 10})
    config = dicomconfig.load()
    (job,) = outbox.enqueue(run, list(config.pacs))
    assert job.count(outbox.QUEUED) == 1
    (tried,) = outbox.flush(config)
    assert tried.count(outbox.FAILED) == 1 and tried.count(outbox.QUEUED) == 0
    assert "no DICOM file" in tried.items[0].reason


def test_the_backoff_doubles_to_an_hour(tmp_path, home):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    run = _run(tmp_path, {})
    ds.save_as(run / "images" / "one.dcm", enforce_file_format=True)
    config = dicomconfig.load()
    outbox.enqueue(run, list(config.pacs))
    waits = []
    for _ in range(9):
        (job,) = outbox.flush(config, force=True)
        assert job.count(outbox.QUEUED) == 1 and "connection refused" in job.last_error
        waits.append((dt.datetime.fromisoformat(job.next_try_utc)
                      - dt.datetime.now(dt.UTC)).total_seconds())
    assert waits[0] == pytest.approx(30, abs=3) and waits[1] == pytest.approx(60, abs=3)
    assert waits[-1] == pytest.approx(3600, abs=3)
    assert outbox.flush(config) == []  # not due yet: nothing tried
    saved = json.loads(next((home / "outbox").glob("*.json")).read_text())
    assert saved["attempts"] == 9 and saved["items"][0]["state"] == "queued"


def test_a_folder_that_is_no_run_and_a_run_without_dicom(tmp_path, home):
    config = dicomconfig.load()
    with pytest.raises(UserError, match="is not a run directory"):
        outbox.enqueue(tmp_path, list(config.pacs))
    with pytest.raises(UserError, match="holds no DICOM object: reconstruct it first"):
        outbox.enqueue(_run(tmp_path, {}), list(config.pacs))


def test_a_full_disk_under_the_outbox_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
    """The outbox on a 256 KiB tmpfs that is full: queuing a run is one line, the job already
    saved stays as it was; with room again, the run is queued whole."""
    from inprocess import petdaq

    with tiny_tmpfs(tmp_path) as home:
        monkeypatch.setenv("BEDSIDE_PET_HOME", str(home))
        (home / "dicom.toml").write_text(
            f'[[pacs]]\nname = "down"\nae_title = "PACS"\nhost = "127.0.0.1"\n'
            f'port = {free_port_block(1)}\n')
        run = _run(tmp_path, {"a.dcm": b"x" * 200})
        config = dicomconfig.load()
        outbox.enqueue(run, list(config.pacs))
        saved = next((home / "outbox").glob("*.json")).read_text()
        filler = home / "filler"
        with pytest.raises(OSError), filler.open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        (run / "images" / "b.dcm").write_bytes(b"y" * 200)
        r = petdaq("send", str(run))
        assert r.returncode == 2 and "No space left on device" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert next((home / "outbox").glob("*.json")).read_text() == saved
        filler.unlink()
        (job,) = outbox.enqueue(run, list(config.pacs))
        assert [i.file for i in job.items] == ["images/a.dcm", "images/b.dcm"]
