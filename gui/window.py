"""The console window: wires the DAQ links to the views and keeps the operator informed.

A QTimer (default 20 Hz) takes the latest decoded views from the subscriber thread and the
control replies, updates what changed, scrolls the strip chart, and re-evaluates the warning
banner. The GUI thread never decodes a message; the achieved display rate is measured
(:attr:`ConsoleWindow.refresh_hz`) and shown in the status bar.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from pyqtgraph.Qt import QtCore, QtWidgets

from daq.messages import LOW_DISK_BYTES
from gui import text, theme
from gui.bullseye import BullseyePanel
from gui.controls import RunControls, RunStatus
from gui.curves import CurvesPanel
from gui.images import ImagePanel
from gui.link import ControlClient, FeedCounters, MonitorFeed, Reply, Secure
from gui.local_daq import LocalDaq
from gui.motionpanel import MotionPanel
from gui.plots import AcquisitionPlots
from gui.qcpanel import QcPanel
from gui.views import (
    MonitorView,
    ScanOffer,
    gain_calibration_line,
    offer_view,
    outbox_line,
    qc_line,
    qc_view,
    worklist_view,
)

ACTIVE_STATES = ("starting", "running", "stopping")


class RefreshMeter:
    """Display frames per second over the last ``span_s`` seconds."""

    def __init__(self, span_s: float = 2.0) -> None:
        self.span_s = span_s
        self._ticks: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._ticks.append(now)
        while self._ticks and self._ticks[0] < now - self.span_s:
            self._ticks.popleft()

    @property
    def hz(self) -> float:
        if len(self._ticks) < 2:
            return 0.0
        return (len(self._ticks) - 1) / (self._ticks[-1] - self._ticks[0])


class ConsoleWindow(QtWidgets.QMainWindow):
    """The technologist's console attached to the DAQ at ``host``."""

    def __init__(self, host: str, monitor_port: int, control_port: int, *,
                 local_daq: LocalDaq | None = None, refresh_hz: float = 20.0,
                 stale_s: float = 3.0, secure: Secure | None = None) -> None:
        """``secure``: the console's CURVE identity for a DAQ that needs keys."""
        super().__init__()
        self.monitor_endpoint = f"tcp://{host}:{monitor_port}"
        self.control_endpoint = f"tcp://{host}:{control_port}"
        self.local_daq = local_daq
        self.stale_s = stale_s
        self.setWindowTitle(f"petdaq console \u2014 {host}")
        self.resize(1680, 1000)

        self.banner = QtWidgets.QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.controls = RunControls()
        self.offer = ScanOffer()
        """What the DAQ can emulate, from its latest status reply (nothing until it answers)."""
        self.status = RunStatus()
        self.log = QtWidgets.QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.plots = AcquisitionPlots()
        self.images = ImagePanel()
        self.curves = CurvesPanel()
        self.bullseye = BullseyePanel()
        self.motion = MotionPanel()
        self.side = QtWidgets.QTabWidget()
        self.side.addTab(self.curves, "Curves")
        self.side.addTab(self.bullseye, "Bull's-eye")
        self.side.addTab(self.motion, "Motion")
        self.qc = QcPanel()
        self.qc_calibrate = QtWidgets.QPushButton("Calibrate the gains from this QC's blank")
        self.qc_calibrate.setVisible(False)
        self.qc_calibrate.clicked.connect(self._calibrate_gains)
        self.qc_tab = QtWidgets.QWidget()
        tab = QtWidgets.QVBoxLayout(self.qc_tab)
        tab.setContentsMargins(0, 0, 0, 0)
        tab.addWidget(self.qc, 1)
        tab.addWidget(self.qc_calibrate)
        self.side.addTab(self.qc_tab, "QC")

        self.setCentralWidget(self._layout())
        self.status_line = QtWidgets.QLabel()
        self.statusBar().addPermanentWidget(self.status_line, 1)

        self.controls.start_clicked.connect(self.start_run)
        self.controls.stop_clicked.connect(self.stop_run)
        self.controls.worklist_clicked.connect(lambda: self._send({"cmd": "worklist"}))
        self.controls.window_edited.connect(self._window_typed)
        self.controls.scanner.currentTextChanged.connect(self._scanner_chosen)
        self.plots.window_dragged.connect(self._window_dragged)
        self._propose_window(self.controls.scanner.currentText())

        self.latest: MonitorView | None = None
        """The latest monitor view shown."""
        self.counters = FeedCounters()
        self.responding = False
        self.state: str | None = None
        self.frames = 0
        """Display frames drawn so far."""
        self.command_replies: collections.deque[Reply] = collections.deque(maxlen=100)
        """The latest start/stop commands and their outcomes."""
        self._state_at = 0.0
        self._run: str | None = None
        self._daq_message: str | None = None
        self._started_at = time.time()
        self._form_touched = False
        self._pending: collections.Counter[str] = collections.Counter()
        self._gain_calibration = ("", "")
        """The DAQ's gain calibration (state, message) last told in the log."""
        self._qc_shown: tuple[str, str] | None = None
        """(scanner, QC line) whose full QC the QC tab shows or has asked for."""
        self._command_error = ""
        self._meter = RefreshMeter()
        self._closed = False

        self.feed = MonitorFeed(self.monitor_endpoint, secure=secure)
        self.feed.set_display_filter(self.images.filter_fwhm.value())
        self.images.filter_fwhm.valueChanged.connect(self.feed.set_display_filter)
        self.feed.start()
        self.control = ControlClient(self.control_endpoint, secure=secure).start()
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(max(1, round(1000 / refresh_hz)))
        self.controls.start_button.setFocus()
        self._note(f"console attached to {self.monitor_endpoint} (monitor), "
                   f"{self.control_endpoint} (control)")
        self._show_health()

    def _layout(self) -> QtWidgets.QWidget:
        """Banner across the top; scan form, run status and event log on the left; the
        acquisition views above the image views and, on the right, the curves of a dynamic scan,
        the bull's-eye of a cardiac SPECT scan or a PET scan's head motion (tabs)."""
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.controls)
        left.addWidget(self.status)
        events = QtWidgets.QGroupBox("Events")
        QtWidgets.QVBoxLayout(events).addWidget(self.log)
        left.addWidget(events, 1)
        column = QtWidgets.QWidget()
        column.setLayout(left)
        column.setFixedWidth(380)
        image_row = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        image_row.addWidget(self.images)
        image_row.addWidget(self.side)
        image_row.setSizes([900, 420])
        views = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        views.addWidget(self.plots)
        views.addWidget(image_row)
        views.setSizes([560, 440])
        body = QtWidgets.QHBoxLayout()
        body.addWidget(column)
        body.addWidget(views, 1)
        outer = QtWidgets.QVBoxLayout()
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.banner)
        outer.addLayout(body, 1)
        central = QtWidgets.QWidget()
        central.setLayout(outer)
        return central

    # ---------------------------------------------------------------- public

    @property
    def refresh_hz(self) -> float:
        """Display frames per second achieved over the last 2 s."""
        return self._meter.hz

    def start_run(self) -> None:
        """Send ``start`` with the settings in the Scan box (energy window included)."""
        settings = self.controls.settings()
        self._send({"cmd": "start", "settings": settings})
        self._note("start requested: " + ", ".join(f"{k} {v}" for k, v in settings.items()))

    def stop_run(self) -> None:
        self._send({"cmd": "stop"})
        self._note("stop requested")

    def banner_text(self) -> str:
        """The warnings shown to the operator ("" when all is well)."""
        return self.banner.text()

    def save_screenshot(self, path: str | Path) -> bool:
        """Write a PNG of the window; False if Qt could not write it."""
        return self.grab().save(str(path), "PNG")

    def shutdown(self) -> None:
        """Stop the timer and links, and the local DAQ if this console started it."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        self.feed.close()
        self.control.close()
        if self.local_daq is not None:
            self.local_daq.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    # ---------------------------------------------------------------- the display frame

    def refresh(self) -> None:
        """One display frame: latest views in, strip chart scrolled, health re-evaluated."""
        now = time.time()
        update = self.feed.take()
        self.counters = update.counters
        for reply in self.control.take_replies():
            self._on_reply(reply)
        if update.monitor is not None:
            self._on_monitor(update.monitor)
        if update.image is not None and not self.images.showing(update.image):
            self.images.show(update.image)
        if update.curves is not None:
            self.curves.show_curves(update.curves)
            self.side.setCurrentWidget(self.curves)
        if update.motion is not None:
            moved = update.motion.moving and not (self.motion.shown and self.motion.shown.moving)
            self.motion.show_motion(update.motion)
            if moved:
                self.side.setCurrentWidget(self.motion)
                self._note("MOTION: the patient is moving")
        if update.polar is not None and not self.bullseye.showing(update.polar):
            self.bullseye.show_polar(update.polar)
            self.side.setCurrentWidget(self.bullseye)
        self.plots.show_rates(update.history_t, update.history, now)
        self._show_health(now)
        self.frames += 1
        self._meter.tick()

    def _on_monitor(self, v: MonitorView) -> None:
        self.latest = v
        self.status.show(v)
        choice = self.offer.scanners.get(v.scanner or "")
        self.plots.show_monitor(v, choice.module_grid if choice else None)
        self._set_state(v.state, v.received_at)
        if v.run != self._run and v.run:
            self._note(f"run {v.run}")  # the full path once, in the log
            self.curves.clear_curves()
            self.bullseye.clear_polar()
            self.motion.clear_motion()
        if v.message and v.message != self._daq_message:
            self._note(f"DAQ: {v.message}")
        self._run, self._daq_message = v.run, v.message
        if not self._form_touched:
            self._form_touched = True
            if v.scanner:
                self.controls.scanner.setCurrentText(v.scanner)
            if v.energy_window_kev:
                self._show_window(*v.energy_window_kev)

    def _on_reply(self, r: Reply) -> None:
        cmd = str(r.request.get("cmd"))
        if r.reply is not None and isinstance(r.reply.get("state"), str):
            self._set_state(r.reply["state"], r.at)
        if cmd == "status":
            self._take_offer(offer_view(r.reply))
            self._take_qc_line(r.reply)
            self.status.show_outbox(*outbox_line(r.reply))
            self._take_gain_calibration(r.reply)
            return
        if cmd == "worklist":
            self._pending[cmd] -= 1
            procedures = worklist_view(r.reply) if r.ok else ()
            if r.ok:
                self.controls.show_worklist(procedures)
            self._note(f"worklist: {len(procedures)} procedure(s) today" if r.ok
                       else f"worklist failed: {r.error or 'no answer from the DAQ'}")
            return
        if cmd == "qc":
            self._pending[cmd] -= 1
            view = qc_view((r.reply or {}).get("qc")) if r.ok else None
            if view is not None:
                self.qc.show_qc(view)
                self.qc_calibrate.setVisible(view.result == "FAIL" and any(
                    f.endswith(": gain") for f in view.flagged))
            return
        self._pending[cmd] -= 1
        self.command_replies.append(r)
        if r.ok:
            self._command_error = ""
            run = r.reply.get("run") if r.reply else None
            self._note(f"{cmd} accepted" + (f": run {text.leaf(run)}" if run else ""))
        else:
            self._command_error = f"{cmd.capitalize()} failed: {r.error or 'refused by the DAQ'}"
            self._note(self._command_error)

    def _set_state(self, state: str | None, at: float) -> None:
        if at < self._state_at:
            return
        self._state_at = at
        if state != self.state:
            self._note(f"DAQ state {state or '-'}")
            self._command_error = ""  # a command's outcome shows in the state from now on
        self.state = state

    # ---------------------------------------------------------------- health and banner

    def _show_health(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        contacts = [t for t in (self.counters.last_message_at, self.control.last_reply_at) if t]
        last = max(contacts, default=None)
        responding = last is not None and now - last <= self.stale_s
        if responding != self.responding:
            self._note("DAQ answering" if responding else "DAQ not responding")
            self.responding = responding
        red, amber = [], []
        if not responding:
            since = last if last is not None else self._started_at
            red.append(f"DAQ not responding since {text.wall(since)} - reconnecting...")
        if self.local_daq is not None and self.local_daq.exit_code() is not None:
            red.append(f"local DAQ stopped (exit code {self.local_daq.exit_code()}): "
                       f"{self.local_daq.last_words() or 'no message'}")
        v = self.latest
        if v is not None and v.lost:
            red.append("DATA LOST: " + ", ".join(f"{k} {text.count(n)}"
                                                  for k, n in v.lost.items()))
        if self._command_error:
            red.append(self._command_error)
        shown = self.motion.shown
        if shown is not None and shown.moving and self.state in ACTIVE_STATES:
            red.append(shown.alert)
        if v is not None and v.free_bytes is not None and v.free_bytes < LOW_DISK_BYTES:
            amber.append(f"Disk low: {text.size(v.free_bytes)} free")
        self._set_banner(red, amber)

        active = self.state in ACTIVE_STATES
        self.controls.set_buttons(
            can_start=responding and not active and not self._pending["start"],
            can_stop=responding and self.state in ("starting", "running"))
        if not responding:
            self.status.values["state"].setText("NO CONTACT")
        else:
            self.status.show_state(self.state)
        c = self.counters
        self.status_line.setText(
            f"display {self.refresh_hz:.1f} frames/s  \u00b7  monitor messages {c.monitors}  "
            f"\u00b7  images {c.images}  \u00b7  display frames skipped {c.skipped}  \u00b7  "
            f"malformed {c.malformed}" + (f" ({c.last_malformed})" if c.malformed else "")
            + f"  \u00b7  {self.monitor_endpoint}")

    def _set_banner(self, red: list[str], amber: list[str]) -> None:
        message = "     |     ".join(red + amber)
        if message == self.banner.text() and self.banner.isVisible() == bool(message):
            return
        self.banner.setText(message)
        self.banner.setStyleSheet(f"background: {theme.WARNING if red else theme.CAUTION};")
        self.banner.setVisible(bool(message))

    # ---------------------------------------------------------------- form

    def _send(self, request: dict) -> None:
        self._pending[request["cmd"]] += 1
        self.control.request(request)

    def _note(self, line: str) -> None:
        self.log.appendPlainText(f"{text.wall(time.time())}  {line}")

    def _scanner_chosen(self, name: str) -> None:
        self._form_touched = True
        self._propose_window(name)

    def _calibrate_gains(self) -> None:
        """The button under a failed gain check: the DAQ calibrates the gains from the QC's
        blank (``calibrate_gains``); its end is told in the log."""
        self.qc_calibrate.setEnabled(False)
        self._send({"cmd": "calibrate_gains",
                    "scanner": self.controls.scanner.currentText().strip()})

    def _take_gain_calibration(self, reply: dict | None) -> None:
        state, message = gain_calibration_line(reply)
        if (state, message) == self._gain_calibration or not state:
            return
        self._gain_calibration = (state, message)
        self.qc_calibrate.setEnabled(state != "running")
        self._note(f"gain calibration {state}: {message}")

    def _take_qc_line(self, reply: dict | None) -> None:
        """The chosen scanner's latest QC in the run status; a new one (or another scanner's)
        is asked for in full for the QC tab."""
        scanner = self.controls.scanner.currentText().strip()
        line, result = qc_line(reply, scanner)
        self.status.show_qc(line, result)
        if result and (scanner, line) != self._qc_shown and not self._pending["qc"]:
            self._qc_shown = (scanner, line)
            self._send({"cmd": "qc", "scanner": scanner})

    def _take_offer(self, offer: ScanOffer | None) -> None:
        """A DAQ's offer fills the form's boxes (once, and again when it changes)."""
        if offer is None or offer == self.offer:
            return
        first = not self.offer.scanners
        self.offer = offer
        self.controls.offer(offer)
        if first and not self._form_touched:
            self._propose_window(self.controls.scanner.currentText())

    def _propose_window(self, scanner: str) -> None:
        """The scanner's default energy window becomes the next run's (if the DAQ offers it)."""
        choice = self.offer.scanners.get(scanner.strip())
        if choice is not None and choice.energy_window_kev is not None:
            self._show_window(*choice.energy_window_kev)

    def _show_window(self, lo: float, hi: float) -> None:
        self.controls.set_energy_window(lo, hi)
        self.plots.set_energy_window(lo, hi)

    def _window_dragged(self, lo: float, hi: float) -> None:
        self._form_touched = True
        self.controls.set_energy_window(lo, hi)

    def _window_typed(self, lo: float, hi: float) -> None:
        self._form_touched = True
        self.plots.set_energy_window(lo, hi)
