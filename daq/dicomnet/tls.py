"""DICOM TLS (PS3.15 Annex B): the station's certificate, its key and the authority it trusts,
made into the SSL contexts of an association it asks for and of the listener it runs."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UserError

#: The keys of ``[station]`` that name the station's TLS files (PEM).
KEYS = ("tls_cert", "tls_key", "tls_ca")


@dataclass(frozen=True)
class StationTls:
    """The station's identity on the network: its certificate and key, shown to every TLS peer,
    and the certificate authority (or the peers' certificates) it trusts."""

    cert: Path
    key: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        """For an association the station asks for: the node's certificate must chain to
        :attr:`ca` and name the host; the station shows its own."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """For the station's listener: a peer without a certificate that chains to :attr:`ca`
        is refused in the handshake."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def parse(station: dict[str, Any], base: Path | None) -> StationTls | None:
    """``[station]``'s TLS files (relative paths from ``base``, the folder of dicom.toml); None
    when none is given. A missing or unreadable file is one line naming its key."""
    given = [k for k in KEYS if k in station]
    if not given:
        return None
    missing = [k for k in KEYS if k not in station]
    if missing:
        raise UserError(f"station.{missing[0]} is missing: TLS needs {', '.join(KEYS)}")
    paths = {k: _file(station[k], f"station.{k}", base) for k in KEYS}
    tls = StationTls(paths["tls_cert"], paths["tls_key"], paths["tls_ca"])
    try:
        tls.server_context()
    except (ssl.SSLError, OSError) as exc:
        raise UserError(f"station.tls_cert/tls_key/tls_ca: not a PEM certificate, its key and "
                        f"a CA ({exc})") from None
    return tls


def _file(value: Any, key: str, base: Path | None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{key} must be a file name, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise UserError(f"{key}: no file {path}")
    return path
