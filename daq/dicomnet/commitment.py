"""Storage Commitment (Push Model, PS3.4 Annex J): the station asks a node to commit what it
stored (N-ACTION) and listens for the node's report (N-EVENT-REPORT, on an association the node
opens), from the configured nodes alone, with TLS beyond loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from daq.dicomnet.config import DicomConfig

#: The Storage Commitment Push Model SOP class and its well-known instance.
SOP_CLASS = "1.2.840.10008.1.20.1"
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"
#: The N-ACTION type that requests commitment.
REQUEST_ACTION = 1


@dataclass
class Report:
    """A node's answer for one transaction: the instances it committed, and the failure reason
    of each it did not."""

    committed: set[str] = field(default_factory=set)
    failed: dict[str, int] = field(default_factory=dict)


def request(assoc, refs: list[tuple[str, str]]) -> str:
    """Ask the node of ``assoc`` to commit ``refs`` (SOP class, SOP instance UIDs); the
    transaction UID, or "" when the node did not take the request."""
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    ds.ReferencedSOPSequence = [_ref(c, i) for c, i in refs]
    status, _ = assoc.send_n_action(ds, REQUEST_ACTION, SOP_CLASS, SOP_INSTANCE)
    return ds.TransactionUID if status and int(status.Status) == 0x0000 else ""


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


class Reports:
    """The reports the listener received, by transaction UID."""

    def __init__(self) -> None:
        self._got: dict[str, Report] = {}
        self._cond = threading.Condition()

    def handle(self, event) -> tuple[int, None]:
        """The listener's N-EVENT-REPORT handler (a report with no transaction UID: refused)."""
        info = event.event_information
        uid = str(info.get("TransactionUID", ""))
        if not uid:
            return 0x0110, None
        report = Report({str(r.ReferencedSOPInstanceUID)
                         for r in info.get("ReferencedSOPSequence", [])},
                        {str(r.ReferencedSOPInstanceUID): int(r.get("FailureReason", 0x0110))
                         for r in info.get("FailedSOPSequence", [])})
        with self._cond:
            self._got[uid] = report
            self._cond.notify_all()
        return 0x0000, None

    def wait(self, transactions: set[str], timeout_s: float) -> dict[str, Report]:
        """The reports of ``transactions`` that came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not transactions <= set(self._got):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return {t: self._got[t] for t in transactions if t in self._got}


@contextmanager
def listening(config: DicomConfig, say: Callable[[str], None]) -> Iterator[Reports | None]:
    """The station's commitment listener while the block runs (None: no commitment configured,
    or its port could not be had, which ``say`` tells)."""
    if config.commitment is None or not config.pacs:
        yield None
        return
    from pynetdicom import AE, evt

    reports = Reports()
    ae = AE(ae_title=config.station_ae)
    ae.add_supported_context(SOP_CLASS, scu_role=True, scp_role=True)
    ae.require_calling_aet = sorted({n.ae_title for n in config.pacs})
    where = (config.commitment.host, config.commitment.port)
    try:
        server = ae.start_server(
            where, block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)],
            ssl_context=config.tls.server_context() if config.tls else None)
    except OSError as exc:
        say(f"Storage Commitment: cannot listen on {where[0]}:{where[1]} ({exc.strerror or exc}):"
            " the sent objects wait for their commitment")
        yield None
        return
    try:
        yield reports
    finally:
        server.shutdown()
