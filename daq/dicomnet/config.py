"""A site's DICOM nodes, read from ``$BEDSIDE_PET_HOME/dicom.toml``; a bad key is one line naming
it."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daq.dicomnet import tls as dicomtls
from daq.dicomnet.tls import StationTls
from infra.errors import UserError
from infra.home import data_home

#: When a run's DICOM objects are sent at its stop.
AT_STOP = ("never", "on-success", "always")
#: An AE title: 1 to 16 characters of the default repertoire, no backslash, not all spaces.
_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
DEFAULT_STATION_AE = "BEDSIDEPET"
#: Seconds a flush waits for the nodes' Storage Commitment reports (``[send] commit_wait_s``).
DEFAULT_COMMIT_WAIT_S = 10.0
_NODE_KEYS = ("name", "ae_title", "host", "port", "tls")
_STATION_KEYS = ("ae_title", "commitment_host", "commitment_port", *dicomtls.KEYS)


@dataclass(frozen=True)
class Node:
    """A DICOM application entity the scanner talks to."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool = False
    """DICOM TLS with this node (the station's certificate, key and CA)."""

    def describe(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port}{', TLS' if self.tls else ''})"


@dataclass(frozen=True)
class Listener:
    """Where the station listens for the nodes' Storage Commitment reports."""

    host: str
    port: int


@dataclass(frozen=True)
class DicomConfig:
    """The station's AE title, the worklist server, the PACS nodes and when to send."""

    station_ae: str = DEFAULT_STATION_AE
    worklist: Node | None = None
    pacs: tuple[Node, ...] = ()
    at_stop: str = "never"
    path: Path | None = None
    """The file read (None: no file, nothing configured)."""
    tls: StationTls | None = None
    commitment: Listener | None = None
    """None: no Storage Commitment asked (an object is delivered at its C-STORE success)."""
    commit_wait_s: float = DEFAULT_COMMIT_WAIT_S

    def node(self, name: str | None) -> list[Node]:
        """The PACS nodes named ``name`` (None: every one); an unknown name is one line."""
        if not self.pacs:
            raise UserError(f"no PACS configured: add a [[pacs]] table to {config_path()} "
                            "(docs/dicom.md)")
        if name is None:
            return list(self.pacs)
        found = [n for n in self.pacs if n.name == name]
        if not found:
            raise UserError(f"unknown PACS node {name!r}: {config_path()} names "
                            f"{', '.join(n.name for n in self.pacs)}")
        return found


def config_path() -> Path:
    return data_home() / "dicom.toml"


def ae_title(value: Any, key: str) -> str:
    """``value`` checked as an AE title (``key`` names it in the error)."""
    if not isinstance(value, str) or not _AE.match(value) or not value.strip():
        raise UserError(f"{key}: an AE title is 1 to 16 characters (no backslash), got "
                        f"{value!r}")
    return value.strip()


def _node(table: Any, key: str, name: str | None = None) -> Node:
    if not isinstance(table, dict):
        raise UserError(f"{key} must be a table")
    unknown = sorted(set(table) - set(_NODE_KEYS))
    if unknown:
        raise UserError(f"{key}.{unknown[0]}: unknown key ({', '.join(_NODE_KEYS)})")
    for field in ("ae_title", "host", "port"):
        if field not in table:
            raise UserError(f"{key}.{field} is missing")
    port = _port(table["port"], f"{key}.port")
    host = table["host"]
    if not isinstance(host, str) or not host.strip():
        raise UserError(f"{key}.host must be a host name or address, got {host!r}")
    label = table.get("name", name)
    if not isinstance(label, str) or not label.strip():
        raise UserError(f"{key}.name must be a name, got {label!r}")
    use_tls = table.get("tls", False)
    if not isinstance(use_tls, bool):
        raise UserError(f"{key}.tls must be true or false, got {use_tls!r}")
    return Node(label, ae_title(table["ae_title"], f"{key}.ae_title"), host.strip(), port,
                use_tls)


def _station(data: dict[str, Any], base: Path | None
             ) -> tuple[str, StationTls | None, Listener | None]:
    """``[station]``: the AE title, the TLS identity and the commitment listener."""
    station = data.get("station", {})
    if not isinstance(station, dict):
        raise UserError("station must be a table")
    unknown = sorted(set(station) - set(_STATION_KEYS))
    if unknown:
        raise UserError(f"station.{unknown[0]}: unknown key ({', '.join(_STATION_KEYS)})")
    station_ae = ae_title(station.get("ae_title", DEFAULT_STATION_AE), "station.ae_title")
    identity = dicomtls.parse(station, base)
    if "commitment_port" not in station:
        if "commitment_host" in station:
            raise UserError("station.commitment_port is missing (commitment_host is given)")
        return station_ae, identity, None
    port = _port(station["commitment_port"], "station.commitment_port")
    host = station.get("commitment_host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        raise UserError(f"station.commitment_host must be an address, got {host!r}")
    if identity is None and not _loopback(host):
        raise UserError(f"station.commitment_host {host!r} listens beyond loopback: give "
                        "station.tls_cert, tls_key and tls_ca, so that only nodes with a "
                        "certificate of that CA get in (docs/dicom.md)")
    return station_ae, identity, Listener(host.strip(), port)


def _loopback(host: str) -> bool:
    if host.strip() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def parse(data: dict[str, Any], path: Path | None = None) -> DicomConfig:
    """The configuration of a parsed ``dicom.toml``."""
    unknown = sorted(set(data) - {"station", "worklist", "pacs", "send"})
    if unknown:
        raise UserError(f"{unknown[0]}: unknown table in dicom.toml (station, worklist, pacs, "
                        "send)")
    station_ae, identity, listener = _station(data, path.parent if path else None)
    worklist = _node(data["worklist"], "worklist", "worklist") if "worklist" in data else None
    pacs = data.get("pacs", [])
    if not isinstance(pacs, list):
        raise UserError("pacs must be an array of tables: [[pacs]]")
    nodes = tuple(_node(t, f"pacs[{k}]") for k, t in enumerate(pacs))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise UserError(f"pacs: the name {next(n for n in names if names.count(n) > 1)!r} is "
                        "given twice")
    for node in (*nodes, *([worklist] if worklist else [])):
        if node.tls and identity is None:
            raise UserError(f"{node.name}: tls = true needs station.tls_cert, tls_key and "
                            "tls_ca")
    at_stop, wait_s = _send(data.get("send", {}))
    return DicomConfig(station_ae, worklist, nodes, at_stop, path, identity, listener, wait_s)


def _send(send: Any) -> tuple[str, float]:
    """``[send]``: when to send, and how long to wait for commitment reports."""
    if not isinstance(send, dict):
        raise UserError("send must be a table")
    unknown = sorted(set(send) - {"at_stop", "commit_wait_s"})
    if unknown:
        raise UserError(f"send.{unknown[0]}: unknown key (at_stop, commit_wait_s)")
    at_stop = send.get("at_stop", "never")
    if at_stop not in AT_STOP:
        raise UserError(f"send.at_stop must be one of {', '.join(AT_STOP)}, got {at_stop!r}")
    wait_s = send.get("commit_wait_s", DEFAULT_COMMIT_WAIT_S)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or not 0 < wait_s <= 600:
        raise UserError(f"send.commit_wait_s must be seconds from 0 to 600, got {wait_s!r}")
    return at_stop, float(wait_s)


def load(path: Path | None = None) -> DicomConfig:
    """``path`` (default ``$BEDSIDE_PET_HOME/dicom.toml``); no file: nothing configured."""
    path = path or config_path()
    if not path.is_file():
        return DicomConfig()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid TOML ({exc})") from None
    return parse(data, path)


def _port(value: Any, key: str) -> int:
    """A TCP port from the TOML, or one line naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UserError(f"{key} must be a TCP port from 1 to 65535, got {value!r}")
    return value
