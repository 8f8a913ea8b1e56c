"""A site's certificate authority and the certificates it signs, made with the openssl command
for the DICOM TLS tests (loopback names: 127.0.0.1 and localhost)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def needs_openssl():
    return pytest.mark.skipif(shutil.which("openssl") is None,
                              reason="openssl is not installed (apt-get install openssl)")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def authority(folder: Path, name: str = "site-ca") -> Path:
    """A self-signed CA in ``folder`` (``NAME.crt``, ``NAME.key``); its certificate's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
             f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", cwd=folder)
    return folder / f"{name}.crt"


def signed(ca: Path, name: str) -> tuple[Path, Path]:
    """A certificate for loopback signed by ``ca`` (beside it: ``NAME.crt``, ``NAME.key``)."""
    folder = ca.parent
    (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                        "basicConstraints=CA:FALSE\n"
                                        "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca.name, "-CAkey",
             ca.with_suffix(".key").name, "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
             "-extfile", f"{name}.ext", cwd=folder)
    return folder / f"{name}.crt", folder / f"{name}.key"
