"""A site's DICOM nodes, read from ``$BEDSIDE_PET_HOME/dicom.toml``; a bad key is one line naming
it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UserError
from infra.home import data_home

#: When a run's DICOM objects are sent at its stop.
AT_STOP = ("never", "on-success", "always")
#: An AE title: 1 to 16 characters of the default repertoire, no backslash, not all spaces.
_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
DEFAULT_STATION_AE = "BEDSIDEPET"


@dataclass(frozen=True)
class Node:
    """A DICOM application entity the scanner talks to."""

    name: str
    ae_title: str
    host: str
    port: int

    def describe(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


@dataclass(frozen=True)
class DicomConfig:
    """The station's AE title, the worklist server, the PACS nodes and when to send."""

    station_ae: str = DEFAULT_STATION_AE
    worklist: Node | None = None
    pacs: tuple[Node, ...] = ()
    at_stop: str = "never"
    path: Path | None = None
    """The file read (None: no file, nothing configured)."""

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
    unknown = sorted(set(table) - {"name", "ae_title", "host", "port"})
    if unknown:
        raise UserError(f"{key}.{unknown[0]}: unknown key (name, ae_title, host, port)")
    for field in ("ae_title", "host", "port"):
        if field not in table:
            raise UserError(f"{key}.{field} is missing")
    port = table["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"{key}.port must be a TCP port from 1 to 65535, got {port!r}")
    host = table["host"]
    if not isinstance(host, str) or not host.strip():
        raise UserError(f"{key}.host must be a host name or address, got {host!r}")
    label = table.get("name", name)
    if not isinstance(label, str) or not label.strip():
        raise UserError(f"{key}.name must be a name, got {label!r}")
    return Node(label, ae_title(table["ae_title"], f"{key}.ae_title"), host.strip(), port)


def parse(data: dict[str, Any], path: Path | None = None) -> DicomConfig:
    """The configuration of a parsed ``dicom.toml``."""
    unknown = sorted(set(data) - {"station", "worklist", "pacs", "send"})
    if unknown:
        raise UserError(f"{unknown[0]}: unknown table in dicom.toml (station, worklist, pacs, "
                        "send)")
    station = data.get("station", {})
    station_ae = ae_title(station.get("ae_title", DEFAULT_STATION_AE), "station.ae_title")
    worklist = _node(data["worklist"], "worklist", "worklist") if "worklist" in data else None
    pacs = data.get("pacs", [])
    if not isinstance(pacs, list):
        raise UserError("pacs must be an array of tables: [[pacs]]")
    nodes = tuple(_node(t, f"pacs[{k}]") for k, t in enumerate(pacs))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise UserError(f"pacs: the name {next(n for n in names if names.count(n) > 1)!r} is "
                        "given twice")
    at_stop = data.get("send", {}).get("at_stop", "never")
    if at_stop not in AT_STOP:
        raise UserError(f"send.at_stop must be one of {', '.join(AT_STOP)}, got {at_stop!r}")
    return DicomConfig(station_ae, worklist, nodes, at_stop, path)


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
