"""A real DICOM server for tests: Orthanc (Debian's ``orthanc``) on loopback ports, with its own
configuration, storage and worklist folder in a temporary directory; DICOM TLS and the station's
Storage Commitment listener where a test asks for them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.ports import free_port_block

WORKLIST_PLUGIN = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")
AE_TITLE = "ORTHANC"


def needs_orthanc():
    return pytest.mark.skipif(shutil.which("Orthanc") is None,
                              reason="Orthanc is not installed (.ci/run installs it: apt-get "
                                     "install orthanc)")


@dataclass(frozen=True)
class Tls:
    """Orthanc's certificate and key, and the CA whose peers it lets in (TLS only, then)."""

    cert: Path
    key: Path
    ca: Path


class Orthanc:
    """One Orthanc process; :meth:`stop` and :meth:`start` keep its storage. The station
    (``calling_ae``) gets its Storage Commitment reports at ``commitment_port``."""

    def __init__(self, folder: Path, calling_ae: str, tls: Tls | None = None,
                 commitment_port: int = 104) -> None:
        self.folder = folder
        base = free_port_block(2)
        self.dicom_port, self.http_port = base, base + 1
        self.worklists = folder / "worklists"
        self.worklists.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "bedside-pet-tests", "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"), "DicomAet": AE_TITLE,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowFind": True,
            "DicomModalities": {"scanner": {"AET": calling_ae, "Host": "127.0.0.1",
                                            "Port": commitment_port,
                                            "UseDicomTls": tls is not None}},
            "Plugins": [str(WORKLIST_PLUGIN)] if WORKLIST_PLUGIN.is_file() else [],
            "Worklists": {"Enable": True, "Database": str(self.worklists)},
        }
        if tls is not None:
            config.update({"DicomTlsEnabled": True, "DicomTlsCertificate": str(tls.cert),
                           "DicomTlsPrivateKey": str(tls.key),
                           "DicomTlsTrustedCertificates": str(tls.ca),
                           "DicomTlsRemoteCertificateRequired": True})
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.log = folder / "orthanc.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> Orthanc:
        self.process = subprocess.Popen(["Orthanc", str(self.config)],
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc ended: {self.log.read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer in {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=5) as r:
            return json.loads(r.read())

    def instances(self) -> list[dict]:
        """Every instance Orthanc holds, with its main DICOM tags."""
        return [self.get(f"/instances/{i}") for i in self.get("/instances")]

    def file_of(self, instance_id: str) -> bytes:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/instances/{instance_id}/file",
                timeout=5) as r:
            return r.read()

    def delete(self, sop_instance_uid: str) -> None:
        """Forget the instance of that SOP Instance UID (as a PACS that lost it)."""
        for i in self.instances():
            if i["MainDicomTags"]["SOPInstanceUID"] == sop_instance_uid:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.http_port}/instances/{i['ID']}", method="DELETE")
                urllib.request.urlopen(request, timeout=5).close()

    def set_commitment_port(self, calling_ae: str, port: int, tls: bool) -> None:
        """Where Orthanc sends the station's Storage Commitment reports from now on."""
        body = json.dumps({"AET": calling_ae, "Host": "127.0.0.1", "Port": port,
                           "UseDicomTls": tls}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/modalities/scanner",
                                         data=body, method="PUT")
        urllib.request.urlopen(request, timeout=5).close()
