"""C-ECHO and C-STORE to a node (pynetdicom), over TLS where the node asks for it: an
association that cannot be made is one reason, an instance the node refuses is its status."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from daq.dicomnet import commitment
from daq.dicomnet.config import DicomConfig, Node

#: Seconds to wait for a connection, an association and each answer.
TIMEOUT_S = 10.0
#: C-STORE statuses that store the instance (success and the warnings).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
#: Pauses before asking again when a plain association reads as aborted (a rejection whose
#: close overtook it is read as an abort by pynetdicom on a loaded machine).
PLAIN_RETRY_PAUSES_S = (0.0, 0.2, 0.5)

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
    sop_class_uid: str = ""


@dataclass(frozen=True)
class Delivery:
    """What a node answered for each file, and the Storage Commitment transaction it took (""
    when none was asked or the node offers none)."""

    stored: list[Stored] = field(default_factory=list)
    transaction: str = ""


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


def associate(ae, node: Node, config: DicomConfig):
    """An established association with ``node`` (TLS with the station's identity where the node
    says ``tls``), or :class:`Unreachable` saying why not."""
    reachable(node, ae.connection_timeout)
    tls_args = None
    if node.tls and config.tls is not None:
        tls_args = (config.tls.client_context(), node.host)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls_args)
    for pause_s in PLAIN_RETRY_PAUSES_S:
        if not (assoc.is_aborted and tls_args is None):
            break
        # asked again: a node that rejects, then closes at once, can read as aborting
        # (Orthanc refusing a called AE title, on a loaded machine)
        time.sleep(pause_s)
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if assoc.is_aborted and tls_args is not None:
        _handshake(node, tls_args[0], ae.connection_timeout)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise Unreachable(f"{node.describe()} refused the association (is {ae.ae_title!r} a "
                          f"known modality there, and {node.ae_title!r} its AE title?)")
    if assoc.is_aborted:
        hint = "" if node.tls else " (does it take DICOM TLS only? then tls = true)"
        raise Unreachable(f"{node.describe()} aborted the association{hint}")
    raise Unreachable(f"no DICOM answer from {node.host}:{node.port} (down, unreachable or "
                      "not a DICOM port)")


def _handshake(node: Node, context: ssl.SSLContext, timeout_s: float) -> None:
    """Why TLS with the node fails, as :class:`Unreachable` (pynetdicom only says that the
    association was aborted): a handshake, then a short read for the node's alert about the
    station's certificate (TLS 1.3 sends it after the handshake). Nothing found: returns."""
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=node.host) as tls:
            tls.settimeout(1.0)
            if tls.recv(1) == b"":
                raise Unreachable(f"{node.describe()} closed the connection after the TLS "
                                  "handshake (does it trust station.tls_cert?)")
    except TimeoutError:
        return
    except ssl.SSLCertVerificationError as exc:
        raise Unreachable(f"TLS with {node.describe()} failed: certificate verify failed, "
                          f"{exc.verify_message} (is its "
                          "certificate signed by station.tls_ca?)") from None
    except ssl.SSLError as exc:
        raise Unreachable(f"TLS with {node.describe()} failed: "
                          f"{(exc.reason or str(exc)).replace('_', ' ').lower()}") from None
    except OSError as exc:
        raise Unreachable(f"TLS with {node.describe()} failed: {exc.strerror or exc}") from None


def echo(node: Node, config: DicomConfig, timeout_s: float = TIMEOUT_S) -> None:
    """C-ECHO ``node``; :class:`Unreachable` says why it did not answer."""
    from pynetdicom.sop_class import Verification

    ae = new_ae(config.station_ae, timeout_s)
    ae.add_requested_context(Verification)
    assoc = associate(ae, node, config)
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


def store(node: Node, config: DicomConfig, files: list[Path], timeout_s: float = TIMEOUT_S,
          commit: list[tuple[str, str]] | None = None) -> Delivery:
    """C-STORE each of ``files`` to ``node`` in one association; what the node answered for
    each. With ``commit`` (SOP class and instance UIDs stored before), the same association then
    asks the node to commit those and every file stored now, where it offers Storage Commitment.
    :class:`Unreachable` when no association could be made (nothing was sent)."""
    datasets = [_dataset(path) for path in files]
    ae = new_ae(config.station_ae, timeout_s)
    for sop, syntax in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                               for _, ds, _ in datasets if ds is not None}):
        ae.add_requested_context(sop, syntax)
    if not ae.requested_contexts and not commit:
        return Delivery([Stored(p, False, why, again=False) for p, _, why in datasets])
    if commit is not None:
        ae.add_requested_context(commitment.SOP_CLASS)
    assoc = associate(ae, node, config)
    try:
        stored = [_store_one(assoc, node, *d) for d in datasets]
        refs = [*(commit or []), *((s.sop_class_uid, _uid(d)) for s, d in
                                   zip(stored, datasets, strict=True) if s.ok)]
        transaction = (commitment.request(assoc, refs)
                       if commit is not None and refs and _offers_commitment(assoc) else "")
    finally:
        if assoc.is_established:
            assoc.release()
    return Delivery(stored, transaction)


def _dataset(path: Path) -> tuple[Path, pydicom.Dataset | None, str]:
    try:
        return path, read(path), ""
    except ValueError as exc:
        return path, None, str(exc)


def _uid(d: tuple[Path, pydicom.Dataset | None, str]) -> str:
    return str(d[1].SOPInstanceUID) if d[1] is not None else ""


def _store_one(assoc, node: Node, path: Path, ds: pydicom.Dataset | None, why: str) -> Stored:
    if ds is None:
        return Stored(path, False, why, again=False)
    if not assoc.is_established:
        raise Unreachable(f"{node.describe()} ended the association while sending")
    status = assoc.send_c_store(ds)
    ok = bool(status) and int(status.Status) in STORED
    return Stored(path, ok, "" if ok else f"C-STORE status {_code(status)}",
                  sop_class_uid=str(ds.SOPClassUID))


def _offers_commitment(assoc) -> bool:
    return assoc.is_established and any(
        cx.abstract_syntax == commitment.SOP_CLASS for cx in assoc.accepted_contexts)
