"""The DAQ commands the boards whose firmware takes commands (the firmware in the loop): START
as the run begins, STOP once every board's data have reached the scan's duration; the run then
ends at their run-stop markers, however much slower than real time the boards are."""

from __future__ import annotations

import threading

import zmq

from daq.pipeline.acquisition import Acquisition
from hw.wire.commands import ANY_BOARD, Opcode, encode_command


class BoardCommander:
    """Commands to the boards through ``endpoint`` (their relay's ZeroMQ PULL), on a thread that
    watches the acquisition ``acq``."""

    def __init__(self, endpoint: str, acq: Acquisition, n_boards: int, duration_s: float,
                 period_ps: int, run_number: int = 1) -> None:
        self.acq, self.n_boards, self.run_number = acq, n_boards, run_number
        self.end_ps = round(duration_s * 1e12) - period_ps  # a heartbeat's coarse time
        self.sent: list[str] = []
        self._sock = zmq.Context.instance().socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.connect(endpoint)
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="board-commands", daemon=True)
        self._thread.start()

    def _send(self, opcode: Opcode, a: int = 0) -> None:
        self._seq += 1
        self._sock.send(encode_command(opcode, board=ANY_BOARD, seq=self._seq, a=a))
        self.sent.append(opcode.name)

    def _data_end_ps(self) -> int | None:
        """The time every board's data have reached (None until every board was heard)."""
        marks: dict[int, int] = {}
        for stream in self.acq.streams:
            marks.update(stream.decoder.watermarks_ps)
        return min(marks.values()) if len(marks) >= self.n_boards else None

    def _run(self) -> None:
        try:
            self._send(Opcode.START, self.run_number)
            while not self.acq.wait(0.2):
                reached = self._data_end_ps()
                if reached is not None and reached >= self.end_ps:
                    self._send(Opcode.STOP)
                    return
        finally:
            self._sock.close()
