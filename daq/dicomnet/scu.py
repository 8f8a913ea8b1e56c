"""C-ECHO and C-STORE to a node (pynetdicom): an association that cannot be made is one reason,
an instance the node refuses is its status."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from daq.dicomnet.config import Node

#: Seconds to wait for a connection, an association and each answer.
TIMEOUT_S = 10.0
#: C-STORE statuses that store the instance (success and the warnings).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}

logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its own reasons are ours to say


class Unreachable(Exception):  # noqa: N818 (a state of the node, not a bug)
    """No association with the node: why, in one line."""


@dataclass(frozen=True)
class Stored:
    """What a node answered for one file."""

    path: Path
    ok: bool
    reason: str = ""
    again: bool = True
    """Whether sending it again may store it (False: the file is no DICOM object)."""


def new_ae(station_ae: str, timeout_s: float):
    """An application entity of the station with every timeout ``timeout_s``."""
    from pynetdicom import AE

    ae = AE(ae_title=station_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    return ae


def reachable(node: Node, timeout_s: float) -> None:
    """A TCP connection to the node's port, or :class:`Unreachable` with what stopped it."""
    where = f"{node.host}:{node.port}"
    try:
        socket.create_connection((node.host, node.port), timeout=timeout_s).close()
    except ConnectionRefusedError:
        raise Unreachable(f"no DICOM answer from {where}: connection refused (the node is "
                          "down, or listens on another port)") from None
    except socket.gaierror:
        raise Unreachable(f"no DICOM answer from {where}: unknown host {node.host!r}") from None
    except (TimeoutError, OSError) as exc:
        raise Unreachable(f"no DICOM answer from {where} within {timeout_s:g} s "
                          f"({exc.strerror or type(exc).__name__})") from None


def associate(ae, node: Node):
    """An established association with ``node``, or :class:`Unreachable` saying why not."""
    reachable(node, ae.connection_timeout)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise Unreachable(f"{node.describe()} refused the association (is {ae.ae_title!r} a "
                          f"known modality there, and {node.ae_title!r} its AE title?)")
    if assoc.is_aborted:
        raise Unreachable(f"{node.describe()} aborted the association")
    raise Unreachable(f"no DICOM answer from {node.host}:{node.port} (down, unreachable or "
                      "not a DICOM port)")


def echo(node: Node, station_ae: str, timeout_s: float = TIMEOUT_S) -> None:
    """C-ECHO ``node``; :class:`Unreachable` says why it did not answer."""
    from pynetdicom.sop_class import Verification

    ae = new_ae(station_ae, timeout_s)
    ae.add_requested_context(Verification)
    assoc = associate(ae, node)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        raise Unreachable(f"{node.describe()} answered C-ECHO with status "
                          f"{_code(status)}")


def _code(status) -> str:
    return "none (timeout)" if not status else f"0x{int(status.Status):04X}"


def read(path: Path) -> pydicom.Dataset:
    """A DICOM file as a dataset (one error line for a file that is none)."""
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError) as exc:
        raise ValueError(f"{path} is no DICOM file ({exc})") from None


def store(node: Node, station_ae: str, files: list[Path], timeout_s: float = TIMEOUT_S
          ) -> list[Stored]:
    """C-STORE each of ``files`` to ``node`` in one association; what the node answered for
    each. :class:`Unreachable` when no association could be made (nothing was sent)."""
    datasets: list[tuple[Path, pydicom.Dataset | None, str]] = []
    for path in files:
        try:
            datasets.append((path, read(path), ""))
        except ValueError as exc:
            datasets.append((path, None, str(exc)))
    ae = new_ae(station_ae, timeout_s)
    for sop, syntax in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                               for _, ds, _ in datasets if ds is not None}):
        ae.add_requested_context(sop, syntax)
    if not ae.requested_contexts:
        return [Stored(p, False, why, again=False) for p, _, why in datasets]
    assoc = associate(ae, node)
    out = []
    try:
        for path, ds, why in datasets:
            if ds is None:
                out.append(Stored(path, False, why, again=False))
                continue
            if not assoc.is_established:
                raise Unreachable(f"{node.describe()} ended the association while sending")
            status = assoc.send_c_store(ds)
            ok = bool(status) and int(status.Status) in STORED
            out.append(Stored(path, ok, "" if ok else f"C-STORE status {_code(status)}"))
    finally:
        if assoc.is_established:
            assoc.release()
    return out
