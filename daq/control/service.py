"""The DAQ service (``petdaq serve``): control and monitor sockets, runs started on request.

Control (ZeroMQ REP, msgpack): ``{"cmd": "start", "settings": {scanner, phantom, nuclide,
activity_mbq, duration_s, kinetic_time_scale, energy_window_kev, study, frames}}`` starts an
emulated run (what the settings leave out: :data:`daq.messages.DEFAULT_SCAN`; ``study``: the
fields of :class:`infra.study.Study`; ``frames``: a dynamic scan's schedule, reconstructed live with
the phantom's curves, :mod:`daq.control.liveframes`; a bad setting is refused with its name);
``{"cmd": "stop"}`` stops it; ``{"cmd": "status"}`` reports, with the ``offer`` of what a start
may ask for (:mod:`daq.control.offer`). Every reply is ``{"ok", "error", "state", "run"}``. Monitor
(ZeroMQ PUB): the running session's monitor document at 5 Hz, or an ``idle`` document between
runs so that a console always knows the DAQ is alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import sys
import threading
from pathlib import Path
from typing import Any

import zmq

from daq import messages
from daq.control import runcontrol
from daq.control.emulated import EmulatorSettings
from daq.control.liveframes import check_live_frames
from daq.control.monitor import MonitorLoop, MonitorPublisher
from daq.control.offer import scan_offer
from daq.control.session import Session
from daq.dicomnet.service import OutboxRetry, outbox_summary, worklist_reply
from daq.pipeline.process.processor import SortSettings
from daq.qc.gaincal import GainCalibration
from daq.qc.schedule import DailyQc
from hw.scanner import load_scanner
from infra.errors import UserError
from infra.keys import Guard, KeyFolder, needs_keys
from infra.study import Study


class DaqService:
    """Serve control requests and publish the monitor until :meth:`close`."""

    def __init__(self, out_dir: str | Path, monitor_port: int = messages.DEFAULT_MONITOR_PORT,
                 control_port: int = messages.DEFAULT_CONTROL_PORT, host: str = "127.0.0.1",
                 live_recon: bool = True, threads: int | None = None,
                 keys: KeyFolder | None = None, daily_qc: DailyQc | None = None) -> None:
        """``threads``: each run's processing threads (None: every core). ``keys``: only the
        folder's authorised clients may connect (CURVE); needed beyond loopback.
        ``daily_qc``: the QC to run once a day while idle (:mod:`daq.qc.schedule`)."""
        self.daily_qc = daily_qc
        self.gain_calibration = GainCalibration()
        """The Lu-176 gain calibration a failed QC gain check offers (``calibrate_gains``)."""
        self._outbox = OutboxRetry()
        needs_keys(host, keys, "the DAQ service")
        self.out_dir = Path(out_dir)
        self.live_recon = live_recon
        self.threads = threads
        self._guard = Guard(keys) if keys else None
        self._ctx = self._guard.context if self._guard else zmq.Context.instance()
        try:
            self.publisher = MonitorPublisher(f"tcp://{host}:{monitor_port}", self._ctx,
                                              self._guard)
        except UserError:
            self._close_guard()
            raise
        self._rep = self._ctx.socket(zmq.REP)
        self._rep.setsockopt(zmq.LINGER, 0)
        if self._guard is not None:
            self._guard.serve(self._rep)
        try:
            self._rep.bind(f"tcp://{host}:{control_port}")
        except zmq.ZMQError as exc:
            self.publisher.close()
            self._rep.close()
            self._close_guard()
            raise UserError(f"cannot serve control on {host}:{control_port}: {exc}") from None
        self.session: Session | None = None
        self._finisher: threading.Thread | None = None
        self._starting = self._cancel = False
        self._failure = ""
        """Why the last run could not start (shown until the next start)."""
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
        if self._starting:
            return "starting"
        if self._failure:
            return "failed"
        if self.session is None:
            return "idle"
        return "running" if self.session.acq.running else "stopped"

    def _snapshot(self) -> dict[str, Any]:
        session = self.session
        if session is None or self._starting or self._failure:
            return messages.monitor_message(state=self.state, run=self._last_run,
                                            message=self._failure)
        return session.snapshot()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                self._poll_qc()
                self._outbox.poll(self._idle())
                continue
            try:
                request = messages.unpack(self._rep.recv())
                reply = self._handle(request)
            except (ValueError, UserError) as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:  # one bad request never ends the service
                reply = {"ok": False, "error": f"request failed: {type(exc).__name__}: {exc}"}
            self._rep.send(messages.pack({"state": self.state, "run": self._last_run, **reply}))

    def _poll_qc(self) -> None:
        """Start the daily QC when it is due and no run acquires; say how it (and a gain
        calibration) ended."""
        said = self.gain_calibration.poll()
        if said:
            print(f"gain calibration: {said}", file=sys.stderr, flush=True)
        if self.daily_qc is None:
            return
        said = self.daily_qc.poll(dt.datetime.now().astimezone(), self._idle())
        if said:
            print(f"daily QC: {said}", file=sys.stderr, flush=True)

    def _idle(self) -> bool:
        """No run is starting, acquiring or being reconstructed."""
        return not self._starting and not (self._finisher and self._finisher.is_alive())

    def _handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a map with a 'cmd' key"}
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "error": None, "offer": scan_offer(), "qc": _last_qcs(),
                    "outbox": outbox_summary(),
                    "gain_calibration": self.gain_calibration.as_dict()}
        if cmd == "worklist":
            return worklist_reply(request)
        if cmd == "qc":
            return _qc_reply(request.get("scanner"))
        if cmd == "calibrate_gains":
            return self._calibrate_gains(request.get("scanner"))
        if cmd == "stop":
            if self._starting:
                self._cancel = True  # the run stops as soon as it has started
                return {"ok": True, "error": None}
            if self.session is None or not self.session.acq.running:
                return {"ok": False, "error": "no run is acquiring"}
            self.session.acq.stop("stop command")
            return {"ok": True, "error": None}
        if cmd == "start":
            if self._starting or (self._finisher and self._finisher.is_alive()):
                return {"ok": False, "error": "a run is already acquiring: stop it first"}
            if self.daily_qc is not None and self.daily_qc.running:
                return {"ok": False, "error": "the daily QC is acquiring its blank (about a "
                                             "minute): start the scan after it"}
            if self.gain_calibration.running:
                return {"ok": False, "error": "the gain calibration is running (seconds): "
                                             "start the scan after it"}
            self._start_run(request.get("settings"))
            return {"ok": True, "error": None}
        return {"ok": False, "error": f"unknown command {cmd!r}: use start, stop, status, qc, "
                                     "calibrate_gains or worklist"}

    def _calibrate_gains(self, scanner: Any) -> dict[str, Any]:
        """``calibrate_gains``: the Lu-176 gain calibration from the scanner's latest QC blank,
        in the background, while no run or QC acquires."""
        if not isinstance(scanner, str) or scanner not in scan_offer()["scanners"]:
            return {"ok": False, "error": f"calibrate_gains needs a scanner the DAQ offers, got "
                                          f"{scanner!r}"}
        if not self._idle() or (self.session is not None and self.session.acq.running) or (
                self.daily_qc is not None and self.daily_qc.running):
            return {"ok": False, "error": "a run or the daily QC is acquiring: calibrate the "
                                          "gains after it"}
        self.gain_calibration.start(scanner)
        return {"ok": True, "error": None, "gain_calibration": self.gain_calibration.as_dict()}

    def _start_run(self, settings: Any) -> None:
        emu = EmulatorSettings.from_request(settings)
        window = (settings or {}).get("energy_window_kev")
        if window is not None and not (isinstance(window, (list, tuple)) and len(window) == 2
                                       and all(isinstance(v, (int, float)) for v in window)):
            raise UserError(f"energy_window_kev must be [low, high] in keV, got {window!r}")
        sort = SortSettings(energy_window_kev=tuple(window) if window else None)
        scanner = load_scanner(emu.scanner)
        if scanner.kind == "pet":
            sort.resolved(scanner)  # a window the scanner cannot use: say so now
        study = Study.from_json((settings or {}).get("study"))
        frames = _frames_setting(settings, scanner, emu)
        self._starting, self._cancel, self._failure = True, False, ""
        self.publisher.forget_lasting()  # the last run's image and bull's-eye
        self._finisher = threading.Thread(target=self._run, args=(emu, sort, study, frames),
                                          daemon=True, name="daq-run")
        self._finisher.start()

    def _run(self, emu: EmulatorSettings, sort: SortSettings, study: Study,
             frames: str | None) -> None:
        """Start the run (the emulator first compiles its kernels: seconds, a minute on a
        fresh install; the state is ``starting`` meanwhile), then finish it when it ends."""
        live = runcontrol.LiveOptions(recon=self.live_recon, publisher=self.publisher,
                                      frames=frames)
        try:
            r = runcontrol.start_emulated(self.out_dir, emu, sort, live, self.threads,
                                          study=study)
            self.session, self._last_run = r.session, str(r.run.path)
        except Exception as exc:  # the run did not start: say why, the service goes on
            self._failure = f"the run could not start: {exc}"
            return
        finally:
            self._starting = False  # after the session is there: never "idle" in between
        if self._cancel:
            r.session.acq.stop("stop command")
        if runcontrol.finish(r):  # ended in an error: the state says failed, the reason why
            self._failure = f"the run failed: {r.session.acq.reason.removeprefix('error: ')}"
        _give_back_memory()

    def close(self) -> None:
        """Stop any run, the control thread and the monitor."""
        self._cancel = True
        if self.session is not None and self.session.acq.running:
            self.session.acq.stop("service closed")
        if self._finisher is not None:
            self._finisher.join(60)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.daily_qc is not None:
            self.daily_qc.close()
        self.gain_calibration.close()
        if self._loop is not None:
            self._loop.close()
        self._rep.close()
        self.publisher.close()
        self._close_guard()

    def _close_guard(self) -> None:
        if self._guard is not None:
            self._guard.close()


def _last_qcs() -> dict[str, Any]:
    """Each offered PET scanner's latest daily QC in brief (:func:`daq.qc.store.last_qc`)."""
    from daq.qc.store import last_qc

    return {name: last_qc(name) for name, about in scan_offer()["scanners"].items()
            if about.get("kind") == "pet"}


def _qc_reply(scanner: Any) -> dict[str, Any]:
    """The ``qc`` command: a scanner's latest QC, map and trend for the console's QC tab."""
    from daq.qc.report import console_message
    from daq.qc.store import read_history

    if not isinstance(scanner, str) or scanner not in scan_offer()["scanners"]:
        return {"ok": False, "error": f"qc needs a scanner the DAQ offers, got {scanner!r}"}
    return {"ok": True, "error": None, "qc": console_message(scanner, read_history(scanner))}


def _frames_setting(settings: Any, scanner: Any, emu: EmulatorSettings) -> str | None:
    """The start's ``frames`` schedule (None or "": a static scan), checked against the scan."""
    frames = (settings or {}).get("frames") or None
    if frames is not None and not isinstance(frames, str):
        raise UserError(f"frames must be a schedule such as '6x10s,8x30s', got {frames!r}")
    check_live_frames(frames, scanner, emu.kinetic_time_scale, emu.duration_s, [],
                      emulated=True)
    return frames


def _give_back_memory() -> None:
    """Return to the system the memory a finished run freed: glibc keeps it in the arenas of
    the run's threads otherwise (a service that ran 50 short runs held 1.5 GB, 550 MB with
    this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
