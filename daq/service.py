"""The DAQ service (``petdaq serve``): control and monitor sockets, runs started on request.

Control (ZeroMQ REP, msgpack): ``{"cmd": "start", "settings": {scanner, phantom, nuclide,
activity_mbq, duration_s, energy_window_kev}}`` starts an emulated run; ``{"cmd": "stop"}`` stops
it; ``{"cmd": "status"}`` reports. Every reply is ``{"ok", "error", "state", "run"}``. Monitor
(ZeroMQ PUB): the running session's monitor document at 5 Hz, or an ``idle`` document between runs
so that a console always knows the DAQ is alive.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import zmq

from daq import messages
from daq.emulated import EmulatorSettings, start_emulator
from daq.monitor import MonitorLoop, MonitorPublisher
from daq.processor import SortSettings
from daq.rundir import RunDir
from daq.session import Session, final_image
from daq.sources import open_source
from hw.errors import UserError
from hw.scanner import load_scanner


class DaqService:
    """Serve control requests and publish the monitor until :meth:`close`."""

    def __init__(self, out_dir: str | Path, monitor_port: int = messages.DEFAULT_MONITOR_PORT,
                 control_port: int = messages.DEFAULT_CONTROL_PORT, host: str = "127.0.0.1",
                 live_recon: bool = True, threads: int | None = None) -> None:
        """``threads``: each run's processing threads (None: every core)."""
        self.out_dir = Path(out_dir)
        self.live_recon = live_recon
        self.threads = threads
        self._ctx = zmq.Context.instance()
        self.publisher = MonitorPublisher(f"tcp://{host}:{monitor_port}", self._ctx)
        self._rep = self._ctx.socket(zmq.REP)
        self._rep.setsockopt(zmq.LINGER, 0)
        try:
            self._rep.bind(f"tcp://{host}:{control_port}")
        except zmq.ZMQError as exc:
            self.publisher.close()
            self._rep.close()
            raise UserError(f"cannot serve control on {host}:{control_port}: {exc}") from None
        self.session: Session | None = None
        self._emulator = None
        self._finisher: threading.Thread | None = None
        self._last_run: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="daq-control", daemon=True)
        self._loop: MonitorLoop | None = None

    def start(self) -> DaqService:
        self._loop = MonitorLoop(self.publisher, self._snapshot)
        self._thread.start()
        return self

    @property
    def state(self) -> str:
        if self.session is None:
            return "idle"
        return "running" if self.session.acq.running else "stopped"

    def _snapshot(self) -> dict[str, Any]:
        session = self.session
        if session is None:
            return messages.monitor_message(state="idle", run=self._last_run, message="")
        return session.snapshot()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            try:
                request = messages.unpack(self._rep.recv())
                reply = self._handle(request)
            except (ValueError, UserError) as exc:
                reply = {"ok": False, "error": str(exc)}
            self._rep.send(messages.pack({"state": self.state, "run": self._last_run, **reply}))

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "error": None}
        if cmd == "stop":
            if self.session is None or not self.session.acq.running:
                return {"ok": False, "error": "no run is acquiring"}
            self.session.acq.stop("stop command")
            return {"ok": True, "error": None}
        if cmd == "start":
            if self.session is not None and (self.session.acq.running or
                                             (self._finisher and self._finisher.is_alive())):
                return {"ok": False, "error": "a run is already acquiring: stop it first"}
            self._start_run(request.get("settings") or {})
            return {"ok": True, "error": None}
        return {"ok": False, "error": f"unknown command {cmd!r}: use start, stop or status"}

    def _start_run(self, settings: dict[str, Any]) -> None:
        emu = EmulatorSettings(
            scanner=str(settings.get("scanner", "bedside-brain")),
            phantom=str(settings.get("phantom", "nema-iq")),
            nuclide=str(settings.get("nuclide", "F-18")),
            activity_mbq=float(settings.get("activity_mbq", 20.0)),
            duration_s=float(settings.get("duration_s", 30.0)),
        )
        if emu.activity_mbq <= 0 or emu.duration_s <= 0:
            raise UserError("activity_mbq and duration_s must be positive")
        scanner = load_scanner(emu.scanner)
        window = settings.get("energy_window_kev")
        sort = SortSettings(energy_window_kev=tuple(window) if window else None)
        run = RunDir.create(self.out_dir)
        self._emulator, endpoints = start_emulator(emu, scanner.n_boards)
        self.session = Session(run, scanner, [open_source(e) for e in endpoints], sort, None,
                               {"emulator": emu.as_dict()}, self.publisher, self.live_recon,
                               scan_duration_s=emu.duration_s, threads=self.threads)
        self._last_run = str(run.path)
        self.session.start()
        self._finisher = threading.Thread(target=self._finish, args=(self.session, scanner),
                                          daemon=True)
        self._finisher.start()

    def _finish(self, session: Session, scanner: Any) -> None:
        session.acq.wait()
        if self._emulator is not None and self._emulator.poll() is None:
            self._emulator.terminate()
            self._emulator.wait(10)
        session.finish()
        if self.live_recon:
            final_image(session.acq.run, scanner)

    def close(self) -> None:
        """Stop any run, the control thread and the monitor."""
        if self.session is not None and self.session.acq.running:
            self.session.acq.stop("service closed")
        if self._finisher is not None:
            self._finisher.join(60)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._loop is not None:
            self._loop.close()
        self._rep.close()
        self.publisher.close()
