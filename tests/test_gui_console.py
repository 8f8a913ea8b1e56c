"""The console against a stand-in DAQ (a PUB and a REP socket in a thread), offscreen.

The stand-in publishes realistic monitor and image messages built with ``daq.messages`` and
answers control commands like the DAQ service; the end-to-end tests with the real DAQ are in
test_gui_live.py.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import pytest
import zmq
from PySide6 import QtCore
from sockets import timed_socket

from daq.control.offer import scan_offer
from daq.messages import (
    CURVES_TOPIC,
    IMAGE_TOPIC,
    MONITOR_TOPIC,
    MOTION_PRESETS,
    MOTION_TOPIC,
    POLAR_TOPIC,
    curves_message,
    encode_array,
    image_message,
    monitor_message,
    motion_message,
    pack,
    polar_map_message,
    unpack,
)
from gui import text
from gui.link import ControlClient, MonitorFeed
from gui.local_daq import free_port
from gui.views import display_levels, image_view, monitor_view
from infra.errors import UserError

# --------------------------------------------------------------------------- stand-in DAQ


def _spectrum(rng: np.random.Generator, n: float) -> np.ndarray:
    """An LYSO PET energy spectrum (0-1024 keV, 4 keV bins): 511 keV photopeak at 11.5 %
    FWHM, Compton continuum up to the 340 keV edge, Lu-176 background."""
    e = np.arange(256) * 4.0 + 2.0
    peak = np.exp(-0.5 * ((e - 511) / (0.115 * 511 / 2.355)) ** 2)
    compton = 0.25 * (e < 340) * (0.5 + e / 680)
    lu = 0.05 * np.exp(-e / 400)
    shape = peak + compton + lu
    return rng.poisson(n * shape / shape.sum()).astype(np.uint32)


def _phantom(iteration: int, rng: np.random.Generator) -> np.ndarray:
    """A 64 x 64 x 24 cylinder with two hot spheres; noise falls with the iteration."""
    x, y, z = np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, np.arange(24) - 11.5,
                          indexing="ij")
    img = (x**2 + y**2 < 25**2).astype(np.float32)
    img += 3 * ((x - 10) ** 2 + y**2 + z**2 < 5**2) + 2 * ((x + 8) ** 2 + (y - 8) ** 2 < 4**2)
    return np.clip(img * (1 + rng.normal(0, 0.5 / iteration, img.shape)), 0, None)


class FakeDaq:
    """PUB + REP on free ports: monitor at ``hz``, an image every second, run control."""

    def __init__(self, monitor_port: int | None = None, control_port: int | None = None,
                 hz: float = 10.0) -> None:
        self.monitor_port = monitor_port or free_port()
        self.control_port = control_port or free_port()
        self.hz = hz
        self.requests: list[dict] = []
        self.qc: dict = {"bedside-brain": None}
        """Each scanner's latest daily QC, as the service's status reply has it."""
        self.procedures: list[dict] = []
        """The reply to ``worklist``: the scheduled procedures, as the service gives them."""
        self.outbox: dict | None = None
        """The status reply's outbox."""
        self.qc_full: dict | None = None
        """The reply to ``qc``: the latest QC's message for the QC tab."""
        self.gain_calibration: dict | None = None
        """The status reply's gain calibration (``calibrate_gains`` sets it done)."""
        self.state = "idle"
        self.settings: dict = {}
        self.extra: dict = {}
        """Fields merged into every monitor message (a test sets losses, disk, ...)."""
        self.raw: list[list[bytes]] = []
        """Multipart messages to publish verbatim once (malformed ones)."""
        self.published = 0
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()

    def _serve(self) -> None:
        pub = timed_socket(zmq.PUB, self._ctx)
        pub.bind(f"tcp://127.0.0.1:{self.monitor_port}")
        rep = timed_socket(zmq.REP, self._ctx)
        rep.bind(f"tcp://127.0.0.1:{self.control_port}")
        rng = np.random.default_rng(1)
        next_pub = next_image = time.monotonic()
        iteration = 0
        try:
            while not self._stop.is_set():
                if rep.poll(5):
                    rep.send(pack(self._answer(unpack(rep.recv()))))
                now = time.monotonic()
                while self.raw:
                    pub.send_multipart(self.raw.pop(0))
                if now >= next_pub:
                    next_pub = now + 1 / self.hz
                    pub.send_multipart([MONITOR_TOPIC, pack(self._monitor(rng, now))])
                    self.published += 1
                if now >= next_image:
                    next_image = now + 1.0
                    iteration += 1
                    msg = image_message(_phantom(iteration, rng), voxel_mm=(4.0, 4.0, 4.0),
                                        origin_mm=(-126.0, -126.0, -46.0),
                                        events=iteration * 400_000, iteration=iteration)
                    pub.send_multipart([IMAGE_TOPIC, pack(msg)])
        finally:
            pub.close(0)
            rep.close(0)

    def _answer(self, request: dict) -> dict:
        self.requests.append(request)
        cmd = request.get("cmd")
        if cmd == "start":
            if self.state == "running":
                return {"ok": False, "error": "a run is already running", "state": self.state,
                        "run": "runs/fake-1"}
            self.state, self.settings = "running", request.get("settings", {})
            self._started = time.monotonic()
        elif cmd == "stop":
            self.state = "stopped"
        elif cmd == "qc":
            return {"ok": True, "error": None, "state": self.state, "run": "runs/fake-1",
                    "qc": self.qc_full}
        elif cmd == "status":
            return {"ok": True, "error": None, "state": self.state, "run": "runs/fake-1",
                    "offer": scan_offer(), "qc": self.qc,  # what the real service offers
                    "outbox": self.outbox, "gain_calibration": self.gain_calibration}
        elif cmd == "calibrate_gains":
            self.gain_calibration = {"scanner": request.get("scanner"), "run": "runs/qc-1",
                                     "state": "done", "message": "calibrated 12288 of 12288 "
                                     "crystals (lu176) stored gains.npz"}
        elif cmd == "worklist":
            return {"ok": True, "error": None, "state": self.state, "run": "runs/fake-1",
                    "procedures": self.procedures}
        return {"ok": True, "error": None, "state": self.state, "run": "runs/fake-1"}

    def _monitor(self, rng: np.random.Generator, now: float) -> dict:
        elapsed = now - self._started
        singles = 1.2e6 * (1 + 0.02 * rng.standard_normal())
        prompts, delayeds = 0.12 * singles, 0.025 * singles
        trues = prompts - delayeds
        e = np.arange(40) * 100 - 1950.0
        dt = rng.poisson(2000 * np.exp(-0.5 * (e / 150) ** 2) + 40).astype(np.uint32)
        hitmap = rng.poisson(200 * (1.2 + np.sin(np.arange(256) / 40.7))[None, :]
                             * np.ones((48, 1))).astype(np.uint32)
        r = np.arange(160) - 79.5
        sino = np.sqrt(np.clip(60**2 - (r[None, :] - 20 * np.sin(np.arange(128) / 128 * np.pi
                                                                    )[:, None]) ** 2, 0, None))
        msg = monitor_message(
            run="runs/fake-1", state=self.state, elapsed_s=elapsed, duration_s=60.0,
            scanner="bedside-brain",
            rates={"singles": singles, "prompts": prompts, "delayeds": delayeds,
                   "necr": trues**2 / prompts},
            boards=[{"board": b, "singles_cps": singles / 4, "frames_ok": 100, "frames_bad": 0,
                     "seq_gaps": 0, "bytes_skipped": 0, "watermark_s": elapsed}
                    for b in range(4)],
            totals={"singles": int(singles * elapsed), "prompts": int(prompts * elapsed),
                    "delayeds": int(delayeds * elapsed), "frames": 1000,
                    "events_journaled": int(singles * elapsed)},
            losses={"frames_bad": 0, "display_dropped": 0},
            queues={"sorter": 0.1, "recon": 0.3},
            disk={"journal_bytes": int(singles * elapsed * 8), "free_bytes": 120e9},
            energy_window_kev=[435.0, 585.0],
            energy_hist={"edges_kev": [0.0, 1024.0],
                         "counts": encode_array(_spectrum(rng, 1e5 * (1 + elapsed)))},
            dt_hist={"range_ps": [-2000.0, 2000.0], "counts": encode_array(dt)},
            hitmap=encode_array(hitmap), sinogram=encode_array(sino.astype(np.float32)),
            message="")
        msg.update(self.extra)
        return msg


@pytest.fixture
def fake_daq():
    daq = FakeDaq()
    yield daq
    daq.close()


@pytest.fixture
def console(qtbot, fake_daq):
    from pyqtgraph.Qt import QtWidgets

    from gui import theme
    from gui.window import ConsoleWindow

    theme.apply(QtWidgets.QApplication.instance())
    window = ConsoleWindow("127.0.0.1", fake_daq.monitor_port, fake_daq.control_port,
                           stale_s=1.5)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.shutdown()


def _wait_monitor(qtbot, console, predicate, timeout=5000):
    qtbot.waitUntil(lambda: console.latest is not None and predicate(console.latest),
                    timeout=timeout)


# --------------------------------------------------------------------------- Qt binding


def test_qt_binding_keeps_reference_counts(qtbot):
    """PySide6 6.12.0 on Python < 3.12 drops a reference to True on every signal emission, and
    the console aborts ("deallocating True or False") after a few thousand display frames."""
    import sys

    from pyqtgraph.Qt import QtCore

    class Emitter(QtCore.QObject):
        fired = QtCore.Signal()

    e = Emitter()
    before = sys.getrefcount(True)
    for _ in range(100):
        e.fired.emit()
    assert sys.getrefcount(True) >= before - 5, \
        f"PySide6 {QtCore.qVersion()} loses references on signal emission: pin another version"


# --------------------------------------------------------------------------- views and text


def test_monitor_view_tolerates_missing_and_wrong_fields():
    empty = monitor_view({}, 0.0)
    assert empty.state is None and empty.rates == {} and empty.energy is None
    assert empty.hitmap is None and empty.problems == [] and empty.lost == {}
    bad = monitor_view({"rates": [1, 2], "state": 3, "elapsed_s": "x", "energy_window_kev":
                        [600, 400], "hitmap": {"dtype": "<f4", "shape": [5, 5], "data": b"12"},
                        "energy_hist": {"edges_kev": [0, 1000], "counts": "nope"},
                        "losses": {"frames_bad": 3, "gaps": 0, "note": "x"}}, 0.0)
    assert bad.state is None and bad.elapsed_s is None and bad.energy_window_kev is None
    assert set(bad.problems) == {"rates", "hitmap", "counts"}
    assert bad.lost == {"frames_bad": 3.0}
    assert image_view({"image": encode_array(np.zeros((4, 4)))}, 0.0) is None
    assert image_view({}, 0.0) is None


def test_histogram_edges_and_image_geometry():
    counts = np.arange(10, dtype=np.uint32)
    v = monitor_view({"dt_hist": {"range_ps": [-500, 500], "counts": encode_array(counts)}}, 0)
    assert v.dt is not None and v.dt.edges[0] == -500 and v.dt.edges[-1] == 500
    assert len(v.dt.edges) == 11 and v.dt.counts.tolist() == counts.tolist()
    vol = np.zeros((8, 6, 4), np.float32)
    vol[2, 3, 1] = 5.0
    im = image_view(image_message(vol, voxel_mm=(2, 2, 3), origin_mm=(-7, -5, -4.5), events=9,
                                  iteration=2), 1.0)
    assert im is not None and im.mip.shape == (8, 4) and im.mip[2, 1] == 5.0
    assert im.corner_mm().tolist() == [-8, -6, -6] and im.extent_mm().tolist() == [16, 12, 12]


def test_display_filter_is_a_gaussian_of_the_asked_fwhm():
    from gui.views import gaussian_filter

    point = np.zeros((41, 41, 31), np.float32)
    point[20, 20, 15] = 1000.0
    smooth = gaussian_filter(point, 6.0, (1.5, 1.5, 2.0))
    assert smooth.sum() == pytest.approx(1000.0, rel=1e-4)  # counts kept
    profile = smooth[:, 20, 15]
    above = np.flatnonzero(profile >= profile.max() / 2)
    fwhm_bins = above[-1] - above[0] + 1  # 4 bins of 1.5 mm = 6 mm (sampled)
    assert 3 <= fwhm_bins <= 5
    sigma_z = np.sqrt((smooth[20, 20] * (np.arange(31) - 15) ** 2).sum() / smooth[20, 20].sum())
    assert sigma_z * 2.0 * 2.3548 == pytest.approx(6.0, rel=0.05)  # FWHM along z, in mm
    assert gaussian_filter(point, 0.1, (2, 2, 2)).tolist() == point.tolist()


def test_display_levels_ignore_a_single_hot_pixel():
    a = np.ones(100_000, np.float32)
    a[0] = 1e6
    assert display_levels(a) == (0.0, 1.0)
    assert display_levels(np.zeros(5)) == (0.0, 1.0)
    assert display_levels(np.full(5, np.nan)) == (0.0, 1.0)


def test_text_units():
    assert text.si(1.234e6, "cps") == "1.23 Mcps"
    assert text.si(950, "cps") == "950 cps"
    assert text.si(None, "cps") == "-"
    assert text.size(1.5e9) == "1.50 GB" and text.size(12) == "12 B"
    assert text.clock(75) == "1:15" and text.clock(3725) == "1:02:05"
    assert text.count(1234567) == "1\u2009234\u2009567"
    assert text.leaf("/data/runs/run-20261122-1/") == "run-20261122-1"
    assert text.leaf("C:\\runs\\run-2") == "run-2" and text.leaf(None) == "-"


# --------------------------------------------------------------------------- links


def test_feed_keeps_every_rate_sample_and_only_the_latest_view():
    ctx = zmq.Context()
    pub = timed_socket(zmq.PUB, ctx)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    feed = MonitorFeed(f"tcp://127.0.0.1:{port}").start()
    try:
        deadline = time.monotonic() + 5
        while feed.take().counters.monitors == 0:  # the subscription takes a moment
            assert time.monotonic() < deadline
            pub.send_multipart([MONITOR_TOPIC, pack(monitor_message(rates={"singles": 1.0}))])
            time.sleep(0.05)
        time.sleep(0.2)  # a warm-up message still on its way arrives now, not among the 200
        before = feed.take()
        n0 = len(before.history_t)
        for i in range(200):
            pub.send_multipart([MONITOR_TOPIC, pack(monitor_message(
                rates={"singles": 1000.0 + i, "prompts": 10.0}, state="running"))])
        deadline = time.monotonic() + 5
        got = []
        while True:
            u = feed.take()
            if u.monitor is not None:
                got.append(u.monitor)
            if len(u.history_t) >= n0 + 200 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        singles = u.history["singles"][n0:]
        assert singles.tolist() == [1000.0 + i for i in range(200)]  # no sample lost
        assert np.isnan(u.history["necr"][n0:]).all()  # absent rate: NaN, not 0
        assert got[-1].rates["singles"] == 1199.0  # the latest view is shown
        assert len(got) < 200 and u.counters.skipped > 0  # older display frames skipped
        assert u.counters.monitors == before.counters.monitors + 200
    finally:
        feed.close()
        pub.close(0)
        ctx.term()


def test_control_client_never_blocks_and_finds_a_late_daq():
    port = free_port()
    client = ControlClient(f"tcp://127.0.0.1:{port}", timeout_s=0.3,
                           status_every_s=0.1).start()
    ctx = zmq.Context()
    try:
        t0 = time.monotonic()
        replies = []
        while not replies:
            replies = client.take_replies()
            time.sleep(0.02)
        assert time.monotonic() - t0 < 2.0
        assert replies[0].reply is None and "no reply" in replies[0].error
        assert client.timeouts >= 1
        rep = timed_socket(zmq.REP, ctx)
        rep.bind(f"tcp://127.0.0.1:{port}")
        client.request({"cmd": "start", "settings": {"scanner": "bedside-brain"}})
        seen = []
        while not seen and time.monotonic() - t0 < 10:
            if rep.poll(100):
                req = unpack(rep.recv())
                rep.send(pack({"ok": True, "error": None, "state": "running", "run": "r1"}))
                if req["cmd"] == "start":
                    seen.append(req)
        assert seen and seen[0]["settings"] == {"scanner": "bedside-brain"}
        deadline = time.monotonic() + 5
        ok = []
        while not ok and time.monotonic() < deadline:
            ok = [r for r in client.take_replies() if r.request["cmd"] == "start"]
            time.sleep(0.02)
        assert ok and ok[0].ok and ok[0].reply["run"] == "r1"
        rep.close(0)
    finally:
        client.close()
        ctx.term()


# --------------------------------------------------------------------------- the window


def test_console_shows_live_rates_histograms_and_image(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: v.rates.get("singles", 0) > 0)
    qtbot.waitUntil(lambda: console.images.updates >= 1, timeout=5000)
    assert "Mcps" in console.status.values["singles"].text()
    assert console.status.values["free"].text() == "120.00 GB"
    assert console.status.values["run"].text() == "fake-1"
    assert console.status.values["losses"].text() == "none"
    assert console.status.values["boards"].text().startswith("4 boards, ")
    assert console.status.values["message"].text() == "-"
    x, y = console.plots.energy_curve.getData()
    assert y is not None and y.max() > 0 and x[0] == 0 and x[-1] == 1024
    assert console.plots.hitmap_image.image.shape == (256, 48)  # crystals across, rings up
    assert console.plots.module_grid.getData()[0].size > 0  # 16 modules x 3 module rings
    assert console.images.items["transverse"].image.shape == (64, 64)
    assert console.images.items["mip"].image.shape == (64, 24)
    assert console.responding and console.banner_text() == ""
    qtbot.waitUntil(lambda: console.refresh_hz >= 10, timeout=5000)


def test_start_and_stop_send_the_form_and_the_dragged_window(qtbot, console, fake_daq):
    from pyqtgraph.Qt import QtCore

    _wait_monitor(qtbot, console, lambda v: True)
    qtbot.waitUntil(console.controls.start_button.isEnabled, timeout=5000)
    c = console.controls
    c.phantom.setCurrentText("nema-iq")
    c.nuclide.setCurrentText("Ga-68")
    c.activity.setValue(35.5)
    c.duration.setValue(120)
    c.patient_id.setText("p-007")
    c.weight.setValue(72.5)
    console.plots.window_region.setRegion((400.0, 650.0))  # as a drag does
    assert c.energy_window() == (400.0, 650.0)
    qtbot.mouseClick(c.start_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake_daq.state == "running", timeout=5000)
    start = next(r for r in fake_daq.requests if r["cmd"] == "start")
    assert start["settings"] == {"scanner": "bedside-brain", "phantom": "nema-iq",
                                 "nuclide": "Ga-68", "activity_mbq": 35.5, "duration_s": 120.0,
                                 "kinetic_time_scale": 1.0, "firmware": "numba",
                                 "energy_window_kev": [400.0, 650.0],
                                 "study": {"patient_id": "p-007", "weight_kg": 72.5}}
    qtbot.waitUntil(lambda: c.stop_button.isEnabled() and not c.start_button.isEnabled(),
                    timeout=5000)
    qtbot.mouseClick(c.stop_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake_daq.state == "stopped", timeout=5000)
    qtbot.waitUntil(lambda: console.status.values["state"].text() == "STOPPED", timeout=5000)
    assert "stop accepted" in console.log.toPlainText()


def test_the_form_offers_what_the_daq_can_emulate(qtbot, console):
    """The console knows no scanner, phantom or nuclide of its own: the DAQ's status reply
    offers them."""
    from hw import builtin_scanners, nuclides

    box = console.controls.scanner
    qtbot.waitUntil(lambda: box.count() > 1, timeout=5000)
    assert sorted(box.itemText(i) for i in range(box.count())) == sorted(builtin_scanners())
    offered = [console.controls.nuclide.itemText(i) for i in range(console.controls.nuclide
                                                                   .count())]
    assert offered == list(nuclides.names()) and box.currentText() == "bedside-brain"
    assert console.offer.scanners["bedside-brain"].module_grid is not None


def test_the_scanners_last_daily_qc_is_shown_before_a_scan_red_when_it_failed(
        qtbot, console, fake_daq):
    row = console.status.values["qc"]
    qtbot.waitUntil(lambda: row.text() == "none yet", timeout=5000)
    fake_daq.qc = {"bedside-brain": {"result": "FAIL", "created_utc": "2026-11-26T06:00:05+00:00",
                                     "flagged": 3, "run": "runs/qc-20261126T060000"}}
    qtbot.waitUntil(lambda: row.text() == "FAIL 2026-11-26 06:00 UTC, 3 flagged", timeout=5000)
    assert "#ff6b5a" in row.styleSheet()
    fake_daq.qc = {"bedside-brain": {"result": "PASS", "created_utc": "2026-11-27T06:00:04",
                                     "flagged": 0, "run": "runs/qc-20261127T060000"}}
    qtbot.waitUntil(lambda: row.text() == "PASS 2026-11-27 06:00 UTC", timeout=5000)
    assert row.styleSheet() == ""


def test_the_qc_tab_shows_the_latest_qcs_map_trend_and_what_to_do(qtbot, console, fake_daq,
                                                                   tmp_path):
    """A new QC in the status reply: the console asks for it in full (``qc``) and the QC tab
    draws its crystals' map, the modules' trend, and for a failed gain the Lu-176 calibration
    offer; a screenshot of the tab is saved for a person to look at."""
    from daq.qc.report import console_message

    ratio = np.ones((48, 256), np.float32)
    ratio[:, 144:160] = 0.9          # module 9 lost 10 %
    ratio[0, 17] = 0.0               # a dead crystal
    run = tmp_path / "qc-run"
    run.mkdir()
    np.save(run / "qc_ratio.npy", ratio)
    history = [{"created_utc": f"2026-11-2{d}T06:00:0{d}", "run": str(run), "result": r,
                "flagged": f, "module_rate": [1.0] * 15 + [m], "module_gain": [1.0] * 15 + [g],
                "board_offset_ps": [1.0, -2.0, 0.5, 0.5]}
               for d, r, f, m, g in ((4, "PASS", [], 1.0, 1.0), (5, "PASS", [], 0.99, 1.0),
                                     (6, "FAIL", ["crystal 17: dead", "module 3: gain",
                                                  "module 9: singles rate"], 0.9, 0.97))]
    fake_daq.qc_full = console_message("bedside-brain", history)
    fake_daq.qc = {"bedside-brain": {"result": "FAIL", "created_utc": "2026-11-26T06:00:06",
                                     "flagged": 3, "run": str(run)}}
    panel = console.qc
    qtbot.waitUntil(lambda: panel.shown is not None, timeout=5000)
    assert panel.shown.result == "FAIL" and panel.shown.picture.shape == (144, 768, 3)
    assert "petdaq calibrate QC_RUN --method lu176" in panel.title.text
    assert panel.picture.image.shape == (144, 768, 3)
    x, y = panel.rate[0].getData()
    assert list(x) == [0, 1, 2] and y[-1] == pytest.approx(0.9)
    assert [line.value() for line in panel.bands["gain"]] == pytest.approx([0.98, 1.02])
    assert [q["cmd"] for q in fake_daq.requests].count("qc") == 1   # asked once per new QC
    console.side.setCurrentWidget(console.qc_tab)
    console.resize(1600, 1000)
    qtbot.wait(200)
    assert console.grab().save(str(tmp_path / "qc_tab.png"))
    # the failed gain check's offer is a button: the DAQ calibrates from the QC's blank
    button = console.qc_calibrate
    assert button.isVisible() and button.isEnabled()
    qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "gain calibration done: calibrated 12288" in
                    console.log.toPlainText(), timeout=5000)
    assert {"cmd": "calibrate_gains", "scanner": "bedside-brain"} in fake_daq.requests
    assert button.isEnabled()


def test_choosing_a_scanner_proposes_its_energy_window(qtbot, console):
    qtbot.waitUntil(lambda: "spect-dual-head" in console.offer.scanners, timeout=5000)
    console.controls.scanner.setCurrentText("spect-dual-head")
    assert console.controls.energy_window() == (126.0, 154.0)  # Tc-99m photopeak, 20 %
    assert console.plots.energy_window() == (126.0, 154.0)
    console.controls.window_lo.setValue(120.0)  # typed: the region follows
    assert console.plots.energy_window() == (120.0, 154.0)
    console.controls.scanner.setCurrentText("my-own-scanner")  # unknown here: window kept
    assert console.controls.settings()["energy_window_kev"] == [120.0, 154.0]
    assert console.controls.settings()["scanner"] == "my-own-scanner"


def test_attaching_to_a_running_scan_fills_the_form_from_it(qtbot, fake_daq):
    from gui.window import ConsoleWindow

    fake_daq.extra = {"scanner": "small-animal", "energy_window_kev": [425.0, 650.0]}
    window = ConsoleWindow("127.0.0.1", fake_daq.monitor_port, fake_daq.control_port)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.latest is not None, timeout=5000)
        assert window.controls.scanner.currentText() == "small-animal"
        assert window.controls.energy_window() == (425.0, 650.0)
        assert [line.value() for line in window.plots.daq_window] == [425.0, 650.0]
    finally:
        window.shutdown()


def test_refused_start_is_shown(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: True)
    fake_daq.state = "running"  # started elsewhere; the console sends start anyway
    console.start_run()
    qtbot.waitUntil(lambda: "Start failed: a run is already running" in console.banner_text(),
                    timeout=5000)


def test_losses_low_disk_and_operator_message_raise_the_banner(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: True)
    fake_daq.extra = {"losses": {"frames_bad": 0, "seq_gaps": 3},
                      "boards": [{"board": 0, "singles_cps": 3e5, "seq_gaps": 0},
                                 {"board": 1, "singles_cps": 2e5, "seq_gaps": 3}],
                      "disk": {"journal_bytes": 5e9, "free_bytes": 0.4e9},
                      "message": "board 2 clock drift"}
    qtbot.waitUntil(lambda: "DATA LOST: seq_gaps 3" in console.banner_text(), timeout=5000)
    assert "Disk low: 400.00 MB free" in console.banner_text()
    assert console.status.values["losses"].text() == "seq_gaps 3"
    assert console.status.values["message"].text() == "board 2 clock drift"
    assert console.status.values["boards"].text() == \
        "2 boards, 200 k\u2013300 kcps; link errors on board 1"
    assert "DAQ: board 2 clock drift" in console.log.toPlainText()
    fake_daq.extra = {}
    qtbot.waitUntil(lambda: console.banner_text() == "", timeout=5000)


def test_an_abcd_boards_digitizer_rate_is_shown_beside_ours(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: True)
    fake_daq.extra = {"boards": [{"board": 0, "singles_cps": 3e5, "digitizer_cps": 3.2e5,
                                  "status_age_s": 0.4}]}
    qtbot.waitUntil(lambda: "digitizer" in console.status.values["boards"].text(), timeout=5000)
    assert console.status.values["boards"].text() == \
        "1 board, 300 k\u2013300 kcps (digitizer 320 k\u2013320 kcps)"


def test_missing_fields_read_dash_and_malformed_messages_are_counted(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: True)
    fake_daq.extra = {"rates": {}, "disk": None, "totals": "garbage", "hitmap": None}
    _wait_monitor(qtbot, console, lambda v: "singles" not in v.rates)
    assert console.status.values["singles"].text().startswith("-")
    assert console.status.values["free"].text() == "-"
    fake_daq.raw += [[MONITOR_TOPIC, b"\xc1 not msgpack"], [b"monitorX", pack({})],
                     [IMAGE_TOPIC, pack({"type": "image", "image": "broken"})],
                     [MONITOR_TOPIC]]
    qtbot.waitUntil(lambda: console.counters.malformed >= 4, timeout=5000)
    assert "malformed" in console.status_line.text()
    assert console.responding  # and the window lives on


def test_a_dynamic_scans_curves_grow_and_a_new_run_clears_them(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: v.run == "runs/fake-1")
    means = {"grey_matter": [10.0, 20.0, 30.0], "blood": [50.0, 40.0, 30.0]}
    msg = curves_message(start_min=[0.0, 1.0, 2.0], duration_min=[1.0, 1.0, 2.0],
                         mean_bq_ml=means, sd_bq_ml=means, frames_done=3, frames_total=8)
    fake_daq.raw.append([CURVES_TOPIC, pack(msg)])
    qtbot.waitUntil(lambda: console.curves.shown is not None, timeout=5000)
    assert set(console.curves.lines) == {"grey_matter", "blood"}
    x, y = console.curves.lines["blood"].getData()
    assert list(x) == [0.5, 1.5, 3.0] and list(y) == [50.0, 40.0, 30.0]
    assert "frame 3/8" in console.curves.plot_item.titleLabel.text
    before = console.counters.malformed
    fake_daq.raw.append([CURVES_TOPIC, pack({**msg, "start_min": [0.0]})])  # lengths differ
    qtbot.waitUntil(lambda: console.counters.malformed > before, timeout=5000)
    assert console.curves.shown.frames_done == 3  # the last good curves stay
    fake_daq.extra = {"run": "runs/fake-2"}
    qtbot.waitUntil(lambda: console.curves.shown is None, timeout=5000)
    assert console.curves.lines == {}


def test_a_cardiac_scans_bullseye_is_drawn_and_a_new_run_clears_it(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: v.run == "runs/fake-1")
    percent = [90.0] * 17
    percent[6], percent[12] = 55.0, 62.0  # mid and apical anterior: an LAD defect
    picture = np.zeros((320, 320, 3), np.uint8)
    summary = "calculated AC, F: SSS 3, TPD 4.1 %, abnormal territories LAD"
    msg = polar_map_message(percent=percent, picture=picture, abnormal_segments=[7, 13],
                            summary=summary, apex_mm=[45.0, -40.0, -25.0],
                            base_mm=[10.0, -5.0, 17.0])
    fake_daq.raw.append([POLAR_TOPIC, pack(msg)])
    qtbot.waitUntil(lambda: console.bullseye.shown is not None, timeout=5000)
    assert console.side.currentWidget() is console.bullseye
    assert "abnormal segments 7, 13" in console.bullseye.title.text
    assert summary in console.bullseye.title.text
    assert console.bullseye.picture.image.shape == (320, 320, 3)
    before = console.counters.malformed
    fake_daq.raw.append([POLAR_TOPIC, pack({**msg, "percent": [1.0, 2.0]})])  # not 17
    qtbot.waitUntil(lambda: console.counters.malformed > before, timeout=5000)
    assert console.bullseye.shown.percent[6] == 55.0  # the last good map stays
    fake_daq.extra = {"run": "runs/fake-2"}
    qtbot.waitUntil(lambda: console.bullseye.shown is None, timeout=5000)


def test_dead_daq_is_shown_and_a_restarted_one_reattached(qtbot, console, fake_daq):
    _wait_monitor(qtbot, console, lambda v: True)
    log_before = len(console.log.toPlainText())  # a stall before the close is not counted
    fake_daq.close()
    qtbot.waitUntil(lambda: "DAQ not responding since" in console.banner_text(), timeout=6000)
    assert "reconnecting..." in console.banner_text()
    assert not console.controls.start_button.isEnabled()
    assert console.status.values["state"].text() == "NO CONTACT"
    n = console.counters.monitors
    again = FakeDaq(fake_daq.monitor_port, fake_daq.control_port)
    try:
        qtbot.waitUntil(lambda: console.counters.monitors > n and console.banner_text() == "",
                        timeout=10000)
        assert console.log.toPlainText()[log_before:].count("DAQ answering") == 1
    finally:
        again.close()


def test_clicking_a_view_moves_the_slices(qtbot, console, fake_daq):
    qtbot.waitUntil(lambda: console.images.updates >= 1, timeout=5000)
    panel = console.images
    assert panel.image.filter_fwhm_mm == 5.0
    panel.filter_fwhm.setValue(0.0)  # "off": the image on screen is shown as reconstructed
    qtbot.waitUntil(lambda: panel.image.filter_fwhm_mm == 0.0, timeout=3000)
    assert panel.cursor_index().tolist() == [32, 32, 12]  # centre (rounded)
    panel.cursor_mm[:] = (-86.0, 10.0, 2.0)  # what a click at x = -86 mm, y = 10 mm does
    panel._draw()
    assert panel.cursor_index().tolist() == [10, 34, 12]
    assert "x = -86.0 mm" in panel.plots["sagittal"].titleLabel.text
    assert panel.auto_levels.isChecked()
    panel.lut.region.setRegion((0.0, 0.5))  # the operator drags the level control
    assert not panel.auto_levels.isChecked()
    assert panel.items["coronal"].levels.tolist() == [0.0, 0.5]
    im = panel.image
    assert im.mip_levels[1] > im.levels[1] * 0.99  # a MIP is at least as bright as its slices
    scale = im.mip_levels[1] / im.levels[1]
    assert panel.items["mip"].levels.tolist() == pytest.approx([0.0, 0.5 * scale])


# --------------------------------------------------------------------------- command line


def _parse(argv: list[str]) -> argparse.Namespace:
    from petdaq.acquisition.console import add_commands

    parser = argparse.ArgumentParser(prog="petdaq")
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv, message", [
    (["--after", "3"], "--after needs --screenshot"),
    (["--monitor-port", "70000"], "--monitor-port 70000"),
    (["--screenshot", "/no/such/dir/x.png"], "folder /no/such/dir does not exist"),
    (["--screenshot", "x.png", "--after", "-1"], "cannot be negative"),
])
def test_console_option_mistakes_are_one_line_user_errors(argv, message):
    args = _parse(["console", *argv])
    with pytest.raises(UserError, match=message):
        args.func(args)


def test_screenshot_option_saves_the_window(qtbot, fake_daq, tmp_path):
    from pyqtgraph.Qt import QtGui

    path = tmp_path / "console.png"
    args = _parse(["console", "--connect", "127.0.0.1", "--monitor-port",
                   str(fake_daq.monitor_port), "--control-port", str(fake_daq.control_port),
                   "--screenshot", str(path), "--after", "2"])
    assert args.func(args) == 0
    image = QtGui.QImage(str(path))
    assert image.width() >= 1600 and image.height() >= 900
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37)
               for y in range(0, image.height(), 37)}
    assert len(colours) > 50  # plots drawn, not a blank window


def test_axis_ranges_move_in_round_steps():
    from gui.plots import decade_ticks, nice_ceiling

    assert [nice_ceiling(x) for x in (0.9, 1.0, 2100, 3001, 7000, 9e5)] == \
        [1.0, 1.0, 3000, 4000, 8000, 1e6]
    major, minor = decade_ticks(3, 6)
    assert [label for _, label in major] == ["1 k", "10 k", "100 k", "1 M"]
    assert len(minor) == 3 * 8 and all(label == "" for _, label in minor)
    # a rate below 1 per second (a dynamic scan's first delayeds, NECR) has decades too
    major, _ = decade_ticks(-3, 1)
    assert [label for _, label in major] == ["0.001", "0.01", "0.1", "1", "10"]


def test_the_scan_form_chooses_how_the_boards_pack(qtbot, console):
    """The console can start a scan through the boards' firmware in QEMU (docs/firmware.md)."""
    assert console.controls.settings()["firmware"] == "numba"
    box = console.controls.firmware
    box.setCurrentIndex(box.findData("qemu"))
    assert console.controls.settings()["firmware"] == "qemu"


def test_a_worklist_pick_fills_the_study_and_the_outbox_is_shown(qtbot, console, fake_daq,
                                                                tmp_path):
    """The Worklist button asks the DAQ for today's procedures; picking one fills the patient
    and weight and the start command carries the procedure's whole study; the status row says
    what the PACS outbox holds."""
    from daq.dicomnet.worklist import Procedure

    fake_daq.procedures = [vars(Procedure(
        "P0042", "Doe^Jane", "19700101", "F", 68.0, "ACC0042", "FDG brain PET",
        "1.2.826.0.1.3680043.10.1.42", "PT", "BEDSIDEPET", "20261126", "093000"))]
    fake_daq.outbox = {"queued": 3, "sent": 12, "failed": 0, "why": "connection refused"}
    c = console.controls
    qtbot.waitUntil(c.start_button.isEnabled, timeout=5000)
    qtbot.mouseClick(c.worklist_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: c.worklist.count() == 2, timeout=5000)
    assert "ACC0042" in c.worklist.itemText(1) and "Doe^Jane" in c.worklist.itemText(1)
    c.worklist.setCurrentIndex(1)
    assert c.patient_id.text() == "P0042" and c.patient_id.isReadOnly()
    assert c.weight.value() == 68.0
    c.start_button.click()
    qtbot.waitUntil(lambda: fake_daq.state == "running", timeout=5000)
    study = fake_daq.settings["study"]
    assert study["accession_number"] == "ACC0042" and study["patient_id"] == "P0042"
    assert study["study_instance_uid"] == "1.2.826.0.1.3680043.10.1.42"
    row = console.status.values["outbox"]
    qtbot.waitUntil(lambda: row.text() == "3 queued: connection refused", timeout=5000)
    fake_daq.outbox["why"] = "no DICOM answer from 10.0.0.7:104 within 10 s"
    qtbot.waitUntil(lambda: row.text().endswith("\u2026"), timeout=5000)
    assert "10.0.0.7:104 within 10 s" in row.toolTip()
    c.worklist.setCurrentIndex(0)
    assert not c.patient_id.isReadOnly() and "accession_number" not in c.settings().get(
        "study", {})
    console.resize(1600, 1000)
    qtbot.wait(200)
    assert console.grab().save(str(tmp_path / "worklist_pick.png"))


def test_the_outbox_line_says_what_waits_for_the_pacs():
    """Queued first, then stored-but-not-committed (amber both), then all sent and committed."""
    from gui.views import outbox_line

    assert outbox_line({"outbox": {"queued": 2, "awaiting": 5, "why": "refused"}}) == (
        "2 queued: refused", True)
    assert outbox_line({"outbox": {"sent": 12, "awaiting": 12, "why": ""}}) == (
        "12 awaiting commitment", True)
    assert outbox_line({"outbox": {"sent": 12, "committed": 12}}) == (
        "all sent (12), 12 committed", False)
    assert outbox_line({}) == ("-", False)


def test_a_spect_scan_shows_its_heads_sinogram_and_counts_per_angle(qtbot, console, fake_daq):
    """A SPECT scan's monitor (a real ProjectionStage's live view): the PET panels become the
    heads' current projections, the central row's sinogram and the counts per angle; a PET
    scan after it gets its own panels back, and broken projections are counted, not drawn."""
    from daq.control.monitor import projection_fields
    from daq.pipeline.process.projections import ProjectionStage
    from hw.dtypes import SINGLE_DTYPE
    from hw.scanner import load_scanner

    camera = load_scanner("spect-dual-head")
    stage = ProjectionStage(camera, 60.0)
    rng = np.random.default_rng(3)
    singles = np.zeros(20000, SINGLE_DTYPE)
    singles["t"] = np.sort(rng.integers(0, 30 * 10**12, singles.size))
    singles["crystal"] = rng.integers(0, camera.n_crystals, singles.size)
    singles["energy"] = 140.0
    stage.feed(singles)
    fake_daq.extra = {"scanner": "spect-dual-head", "dt_hist": None, "sinogram": None,
                      **projection_fields(stage.live_view())}
    _wait_monitor(qtbot, console, lambda v: v.projections is not None)
    qtbot.waitUntil(lambda: console.plots.spect_mode, timeout=5000)
    plots = console.plots
    assert plots.hitmap.titleLabel.text.startswith("Heads now: view 30 of 60")
    assert plots.hitmap_image.image.shape == (128, 64)  # two heads' 64 columns across
    assert plots.sinogram_image.image.shape == (64, 120)  # columns x 120 angles
    x, y = plots.dt_curve.getData()
    assert x[0] == 0.0 and x[-1] == 360.0 and y.sum() == pytest.approx(
        stage.projections[1].sum())
    before = console.counters.malformed
    fake_daq.extra = {**fake_daq.extra, "projections": {"heads_now": "garbage"}}
    qtbot.waitUntil(lambda: console.counters.malformed > before, timeout=5000)
    fake_daq.extra = {}
    qtbot.waitUntil(lambda: not console.plots.spect_mode, timeout=5000)
    assert plots.hitmap.titleLabel.text == "Crystal hit map"
    assert plots.dt.titleLabel.text == "Time difference (TOF)"


def _motion(displacement: list[float], moving: bool, episodes: list[dict]) -> list[bytes]:
    return [MOTION_TOPIC, pack(motion_message(
        interval_s=0.5, displacement_mm=np.array(displacement), moving=moving,
        episodes=episodes, data_s=0.5 * len(displacement), elapsed_s=0.5 * len(displacement)))]


def test_the_console_raises_the_motion_alert_and_draws_the_signal(qtbot, console, fake_daq):
    """A moving patient: the banner turns red with "MOTION" and the Motion tab comes up with the
    signal; once the head settles the alert goes and the episode stays shaded. The form asks
    for the emulated patient's motion."""
    _wait_monitor(qtbot, console, lambda v: True)
    qtbot.waitUntil(console.controls.start_button.isEnabled, timeout=5000)
    c = console.controls
    assert [c.motion.itemText(k) for k in range(c.motion.count())] == list(MOTION_PRESETS)
    assert "motion" not in c.settings()
    c.motion.setCurrentText("restless")
    qtbot.mouseClick(c.start_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fake_daq.state == "running", timeout=5000)
    start = next(r for r in fake_daq.requests if r["cmd"] == "start")
    assert start["settings"]["motion"] == "restless"
    qtbot.waitUntil(lambda: console.state == "running", timeout=5000)
    fake_daq.raw.append(_motion([0.1, 0.2, 0.1, 3.4], True, []))
    qtbot.waitUntil(lambda: "MOTION" in console.banner_text(), timeout=5000)
    assert console.side.currentWidget() is console.motion
    assert "MOTION" in console.motion.plot_item.titleLabel.text
    assert "MOTION" in console.log.toPlainText()
    episode = {"start_s": 1.5, "end_s": 2.0, "size_mm": 3.1, "shift_mm": [3.1, 0.0, 0.0]}
    fake_daq.raw.append(_motion([0.1, 0.2, 0.1, 3.4, 0.3, 0.2, 0.1, 0.1], False, [episode]))
    qtbot.waitUntil(lambda: "MOTION" not in console.banner_text(), timeout=5000)
    x, y = console.motion.line.getData()
    assert list(x) == [0.25 + 0.5 * k for k in range(8)] and y[3] == pytest.approx(3.4)
    assert len(console.motion.spans) == 1
    assert "1 episode(s) (3.1 mm at 2 s)" in console.motion.plot_item.titleLabel.text
    fake_daq.raw.append([MOTION_TOPIC, pack({"type": "motion", "interval_s": "soon"})])
    qtbot.waitUntil(lambda: console.counters.malformed >= 1, timeout=5000)
