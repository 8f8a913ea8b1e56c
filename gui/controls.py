"""The console's left column: scan settings with Start/Stop, and the run status panel."""

from __future__ import annotations

from pyqtgraph.Qt import QtCore, QtWidgets

from daq.messages import DEFAULT_SCAN, FIRMWARES, MOTION_PRESETS
from gui import text
from gui.views import MonitorView, Procedure, ScanOffer

DEFAULT_WINDOW_KEV = (435.0, 585.0)


def _combo(current: str) -> QtWidgets.QComboBox:
    """An editable box showing ``current`` (a remote DAQ may know names not offered)."""
    box = QtWidgets.QComboBox()
    box.setEditable(True)
    box.addItem(current)
    box.setCurrentText(current)
    return box


def _offer_names(box: QtWidgets.QComboBox, names: tuple[str, ...] | list[str]) -> None:
    """Offer ``names`` in ``box``, keeping what it shows (the operator's choice)."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(list(names))
    box.setCurrentText(current)
    box.blockSignals(False)


def _spin(lo: float, hi: float, value: float, suffix: str, decimals: int,
          step: float) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setSingleStep(step)
    spin.setSuffix(suffix)
    spin.setValue(value)
    spin.setKeyboardTracking(False)
    return spin


class RunControls(QtWidgets.QGroupBox):
    """Scanner, phantom, nuclide, activity, duration, kinetic clock, the emulated patient's
    motion, frames (a dynamic scan), study (patient, weight, tracer) and energy window of the
    next scan."""

    start_clicked = QtCore.Signal()
    stop_clicked = QtCore.Signal()
    worklist_clicked = QtCore.Signal()
    """The operator asked for today's worklist."""
    window_edited = QtCore.Signal(float, float)
    """The operator typed an energy window (keV)."""

    def __init__(self) -> None:
        super().__init__("Scan")
        d = DEFAULT_SCAN
        self.scanner = _combo(d["scanner"])
        self.phantom = _combo(d["phantom"])
        self.nuclide = _combo(d["nuclide"])
        self.activity = _spin(0.01, 100000.0, d["activity_mbq"], " MBq", 2, 1.0)
        self.duration = _spin(1.0, 86400.0, d["duration_s"], " s", 0, 10.0)
        self.time_scale = _spin(1.0, 10000.0, d["kinetic_time_scale"], " x", 0, 10.0)
        self.time_scale.setToolTip("a kinetic phantom's model runs this many times faster "
                                   "than the scan (60: an hour of kinetics in a minute)")
        self.firmware = QtWidgets.QComboBox()
        for value, label in FIRMWARES.items():
            self.firmware.addItem(label, value)
        self.firmware.setCurrentIndex(list(FIRMWARES).index(d["firmware"]))
        self.firmware.setToolTip("how the emulated boards pack their frames; the firmware in "
                                 "QEMU is slower than real time (docs/firmware.md)")
        self.worklist = QtWidgets.QComboBox()
        self.worklist.setObjectName("worklist")
        self.worklist.addItem("typed below", None)
        self.worklist.setToolTip("a procedure the hospital scheduled: its patient and study")
        self.worklist_button = QtWidgets.QPushButton("Worklist")
        self.worklist_button.setObjectName("worklist-query")
        self.worklist_button.setToolTip("today's procedures from the hospital's worklist")
        self.patient_id = QtWidgets.QLineEdit()
        self.patient_id.setPlaceholderText("id or anonymised id")
        self.weight = _spin(0.0, 500.0, 0.0, " kg", 1, 1.0)
        self.weight.setSpecialValueText("not given")
        self.tracer = QtWidgets.QLineEdit()
        self.tracer.setPlaceholderText("e.g. FDG")
        self.motion = _combo("still")
        for preset in MOTION_PRESETS[1:]:
            self.motion.addItem(preset)
        self.motion.setToolTip("the emulated patient's motion: a preset, or a trace file "
                               "(t_s, tx_mm, ty_mm, tz_mm, rx_deg, ry_deg, rz_deg; docs/motion.md)")
        self.frames = QtWidgets.QLineEdit()
        self.frames.setPlaceholderText("static; or e.g. 6x30s,5x1min,5x2min")
        self.frames.setToolTip("a dynamic scan: frames (kinetic clock) reconstructed as they "
                               "complete, with the phantom's time-activity curves")
        self.window_lo = _spin(1.0, 2000.0, DEFAULT_WINDOW_KEV[0], " keV", 0, 5.0)
        self.window_hi = _spin(1.0, 2000.0, DEFAULT_WINDOW_KEV[1], " keV", 0, 5.0)
        self.start_button = QtWidgets.QPushButton("Start scan")
        self.start_button.setObjectName("start")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setObjectName("stop")

        form = QtWidgets.QFormLayout()
        form.addRow("Scanner", self.scanner)
        form.addRow("Phantom", self.phantom)
        form.addRow("Nuclide", self.nuclide)
        form.addRow("Activity", self.activity)
        form.addRow("Duration", self.duration)
        form.addRow("Kinetic clock", self.time_scale)
        form.addRow("Boards", self.firmware)
        form.addRow("Motion", self.motion)
        form.addRow("Frames", self.frames)
        picked = QtWidgets.QHBoxLayout()
        picked.addWidget(self.worklist, 1)
        picked.addWidget(self.worklist_button)
        form.addRow("Procedure", picked)
        form.addRow("Patient", self.patient_id)
        form.addRow("Weight", self.weight)
        form.addRow("Tracer", self.tracer)
        window = QtWidgets.QHBoxLayout()
        window.addWidget(self.window_lo, 1)
        window.addWidget(QtWidgets.QLabel("to"))
        window.addWidget(self.window_hi, 1)
        form.addRow("Energy", window)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        form.addRow(buttons)
        self.setLayout(form)

        self.worklist_button.clicked.connect(self.worklist_clicked)
        self.worklist.currentIndexChanged.connect(self._picked)
        self.start_button.clicked.connect(self.start_clicked)
        self.stop_button.clicked.connect(self.stop_clicked)
        self.window_lo.valueChanged.connect(self._typed_window)
        self.window_hi.valueChanged.connect(self._typed_window)

    def offer(self, offer: ScanOffer) -> None:
        """Offer the names the DAQ can emulate (its status reply), keeping the form's values."""
        _offer_names(self.scanner, sorted(offer.scanners))
        _offer_names(self.phantom, offer.phantoms)
        _offer_names(self.nuclide, offer.nuclides)

    def show_worklist(self, procedures: tuple[Procedure, ...]) -> None:
        """Offer the worklist's procedures (the one picked stays picked if still there)."""
        was = self.picked()
        self.worklist.blockSignals(True)
        self.worklist.clear()
        self.worklist.addItem("typed below", None)
        for p in procedures:
            self.worklist.addItem(p.label, p)
        keep = next((k + 1 for k, p in enumerate(procedures)
                     if was is not None and p.accession_number == was.accession_number), 0)
        self.worklist.setCurrentIndex(keep)
        self.worklist.blockSignals(False)
        self._picked()

    def picked(self) -> Procedure | None:
        """The worklist procedure the scan is for (None: the study is typed)."""
        return self.worklist.currentData()

    def _picked(self) -> None:
        """A procedure fills the patient and weight, which then are its own."""
        p = self.picked()
        self.patient_id.setReadOnly(p is not None)
        if p is None:
            return
        self.patient_id.setText(p.patient_id)
        weight = p.study.get("weight_kg")
        if isinstance(weight, int | float):
            self.weight.setValue(float(weight))

    def energy_window(self) -> tuple[float, float]:
        lo, hi = self.window_lo.value(), self.window_hi.value()
        return (lo, hi) if lo <= hi else (hi, lo)

    def set_energy_window(self, lo: float, hi: float) -> None:
        """Show a window (keV) without echoing it back as an edit."""
        for spin, v in ((self.window_lo, lo), (self.window_hi, hi)):
            spin.blockSignals(True)
            spin.setValue(v)
            spin.blockSignals(False)

    def _typed_window(self) -> None:
        self.window_edited.emit(*self.energy_window())

    def settings(self) -> dict:
        """The ``settings`` map of a start command (the study and the frames only when
        given)."""
        lo, hi = self.energy_window()
        settings = {"scanner": self.scanner.currentText().strip(),
                    "phantom": self.phantom.currentText().strip(),
                    "nuclide": self.nuclide.currentText().strip(),
                    "activity_mbq": self.activity.value(), "duration_s": self.duration.value(),
                    "kinetic_time_scale": self.time_scale.value(),
                    "firmware": self.firmware.currentData(),
                    "energy_window_kev": [lo, hi]}
        study = {"patient_id": self.patient_id.text().strip() or None,
                 "weight_kg": self.weight.value() or None,
                 "radiopharmaceutical": self.tracer.text().strip() or None}
        study = {k: v for k, v in study.items() if v is not None}
        p = self.picked()
        if p is not None:
            study = {**study, **p.study}
        frames = self.frames.text().strip()
        motion = self.motion.currentText().strip()
        return settings | ({"study": study} if study else {}) | (
            {"frames": frames} if frames else {}) | (
            {"motion": motion} if motion and motion != "still" else {})

    def set_buttons(self, *, can_start: bool, can_stop: bool) -> None:
        self.start_button.setEnabled(can_start)
        self.stop_button.setEnabled(can_stop)


class RunStatus(QtWidgets.QGroupBox):
    """State, run, elapsed time, rates, counts, losses, journal size and free disk."""

    ROWS = (("state", "State"), ("run", "Run"), ("scanner", "Scanner"),
            ("elapsed", "Elapsed"), ("singles", "Singles"), ("prompts", "Prompts"),
            ("delayeds", "Delayeds"), ("necr", "NECR"), ("decoded", "Events decoded"),
            ("journaled", "Events journaled"),
            ("losses", "Losses"), ("journal", "Journal"), ("free", "Free disk"),
            ("queues", "Queue fill (max)"), ("boards", "Boards"), ("qc", "Daily QC"),
            ("outbox", "PACS outbox"), ("message", "DAQ message"))

    def __init__(self) -> None:
        super().__init__("Run status")
        form = QtWidgets.QFormLayout()
        form.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignLeft)
        self.values: dict[str, QtWidgets.QLabel] = {}
        for key, title in self.ROWS:
            label = QtWidgets.QLabel(text.MISSING)
            label.setProperty("role", "value")
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            name = QtWidgets.QLabel(title)
            name.setProperty("role", "key")
            form.addRow(name, label)
            self.values[key] = label
        self.values["message"].setWordWrap(True)
        self.values["qc"].setWordWrap(True)
        self.values["outbox"].setWordWrap(True)
        self.values["message"].setStyleSheet("color: #f0b54a;")
        self.setLayout(form)

    def show_state(self, state: str | None) -> None:
        self.values["state"].setText(state.upper() if state else text.MISSING)

    def show(self, v: MonitorView) -> None:
        """Fill every row from one monitor view; what it lacks reads "-"."""
        t = v.totals
        self._put("run", text.leaf(v.run))
        self.values["run"].setToolTip(v.run or "")
        self._put("scanner", v.scanner or text.MISSING)
        elapsed = text.clock(v.elapsed_s)
        if v.duration_s is not None:
            elapsed += f" / {text.clock(v.duration_s)}"
        self._put("elapsed", elapsed)
        for name in ("singles", "prompts", "delayeds"):
            self._put(name, f"{text.si(v.rates.get(name), 'cps')}   "
                            f"(total {text.count(t.get(name))})")
        self._put("necr", text.si(v.rates.get("necr"), "cps"))
        self._put("decoded", text.count(t.get("events_decoded")))
        self._put("journaled", text.count(t.get("events_journaled")))
        lost = v.lost
        if not v.losses:
            self._put("losses", text.MISSING)
        elif lost:
            self._put("losses", ", ".join(f"{k} {text.count(n)}" for k, n in lost.items()))
        else:
            self._put("losses", "none")
        self.values["losses"].setStyleSheet("color: #ff6b5a;" if lost else "")
        self._put("journal", text.size(v.journal_bytes))
        self._put("free", text.size(v.free_bytes))
        queues = f"{100 * max(v.queues.values()):.0f} %" if v.queues else text.MISSING
        self._put("queues", queues)
        self._put("boards", _boards(v.boards))
        self._put("message", v.message or text.MISSING)

    def show_qc(self, line: str, status: str) -> None:
        """The scanner's latest daily QC (:func:`gui.views.qc_line`): red on FAIL, amber on
        WARN, before a scan is started."""
        self._put("qc", line)
        colour = {"FAIL": "#ff6b5a", "WARN": "#f0b54a"}.get(status)
        self.values["qc"].setStyleSheet(f"color: {colour};" if colour else "")
        self.values["qc"].setToolTip("petdaq qc --history: every QC of this scanner")

    def show_outbox(self, line: str, waiting: bool) -> None:
        """What the PACS outbox holds (:func:`gui.views.outbox_line`), amber while it waits."""
        self._put("outbox", line if len(line) <= 30 else line[:29] + "…")
        self.values["outbox"].setStyleSheet("color: #f0b54a;" if waiting else "")
        self.values["outbox"].setToolTip(f"{line}\npetdaq send --status: each run and node")

    def _put(self, key: str, value: str) -> None:
        self.values[key].setText(value)


def _boards(boards: list[dict[str, float]]) -> str:
    """"4 boards, 290 k–310 kcps" (and the digitizers' own rates where ABCD reports them:
    "(digitizer 300 k–320 kcps)"), and the boards whose link had errors."""
    if not boards:
        return text.MISSING
    line = f"{len(boards)} board" + ("s" if len(boards) > 1 else "")
    rates = [b["singles_cps"] for b in boards if "singles_cps" in b]
    if rates:
        line += f", {_span(rates)}"
    digitizer = [b["digitizer_cps"] for b in boards if "digitizer_cps" in b]
    if digitizer:
        line += f" (digitizer {_span(digitizer)})"
    bad = [str(int(b.get("board", i))) for i, b in enumerate(boards)
           if any(b.get(k) for k in ("frames_bad", "seq_gaps", "bytes_skipped"))]
    return line + (f"; link errors on board {', '.join(bad)}" if bad else "")


def _span(rates: list[float]) -> str:
    return f"{text.si(min(rates), '').strip()}\u2013{text.si(max(rates), 'cps')}"
