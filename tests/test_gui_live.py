"""The console on the real DAQ: ``petdaq serve`` as a child process (as ``petdaq console``
without --connect starts it), emulated scans started and stopped from the window, offscreen.

Saves docs/console.png (a screenshot mid-acquisition), docs/console_dynamic.png (a dynamic
scan with its live curves), docs/console_cardiac.png (a cardiac SPECT scan's image and
bull's-eye) and, in the soak run, docs/console_motion.png (a head that moves, the alert up), and
measures the console's refresh rate while the DAQ takes >= 1 M singles/s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pyqtgraph.Qt import QtCore, QtWidgets

from gui import theme
from gui.local_daq import LocalDaq, free_port
from gui.window import ConsoleWindow

DOCS = Path(__file__).resolve().parents[1] / "docs"
LEFT = QtCore.Qt.MouseButton.LeftButton


@pytest.fixture
def console(qtbot, tmp_path):
    theme.apply(QtWidgets.QApplication.instance())
    daq = LocalDaq(tmp_path / "runs")
    window = ConsoleWindow(daq.host, daq.monitor_port, daq.control_port, local_daq=daq)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.responding, timeout=60_000)
    yield window
    daq.stop(timeout_s=300)  # the run's final image first (on a cold numba cache: compiled)
    window.shutdown()
    assert daq.exit_code() == 0, daq.last_words()


def _start_scan(qtbot, console, *, phantom: str, activity_mbq: float, duration_s: float,
                scanner: str = "bedside-brain", nuclide: str = "F-18", motion: str = "still"
                ) -> None:
    c = console.controls
    c.motion.setCurrentText(motion)
    c.scanner.setCurrentText(scanner)
    c.phantom.setCurrentText(phantom)
    c.nuclide.setCurrentText(nuclide)
    c.activity.setValue(activity_mbq)
    c.duration.setValue(duration_s)
    qtbot.waitUntil(c.start_button.isEnabled, timeout=10_000)
    qtbot.mouseClick(c.start_button, LEFT)
    # the service first loads (on a fresh clone compiles) the emulator's kernels: "starting"
    qtbot.waitUntil(lambda: console.state == "running", timeout=120_000)


def _stop_scan(qtbot, console) -> None:
    c = console.controls
    qtbot.waitUntil(c.stop_button.isEnabled, timeout=10_000)
    qtbot.mouseClick(c.stop_button, LEFT)
    qtbot.waitUntil(lambda: console.state == "stopped", timeout=30_000)


def _head_to_background(image) -> float:
    """Mean activity inside the head (r < 60 mm of the axis, central 60 mm axially) over the mean
    outside it (r > 100 mm): >> 1 when the phantom is visibly reconstructed."""
    nx, ny, nz = image.volume.shape
    x, y, z = (np.asarray(image.origin_mm)[:, None] + np.arange(max(nx, ny, nz))[None, :]
               * np.asarray(image.voxel_mm)[:, None])
    r = np.hypot(*np.meshgrid(x[:nx], y[:ny], indexing="ij"))
    central = np.abs(z[:nz]) < 30
    v = image.volume[:, :, central].mean(axis=2)
    return float(v[r < 60].mean() / max(v[r > 100].mean(), 1e-9 * v.max()))


@pytest.mark.slow
def test_scan_started_watched_and_stopped_from_the_window(qtbot, console, tmp_path):
    """A virtual patient's head (a phantom file of the head population) typed in the form."""
    from emulator.population.draw import DEFAULT_VOXEL_MM, population

    population("head", 1, 7, tmp_path / "heads", DEFAULT_VOXEL_MM["head"], threads=1)
    patient = str(tmp_path / "heads" / "head-001" / "phantom.toml")
    _start_scan(qtbot, console, phantom=patient, activity_mbq=20.0, duration_s=300.0)
    start = next(r for r in console.command_replies if r.request["cmd"] == "start")
    assert start.ok and start.request["settings"]["energy_window_kev"] == [435.0, 585.0]
    assert start.request["settings"]["phantom"] == patient
    t0 = time.monotonic()
    # the first events come once the emulator's kernels are compiled (tens of seconds on two
    # cores after the source changed: numba's cache is per source version)
    qtbot.waitUntil(lambda: console.latest is not None
                    and console.latest.rates.get("singles", 0) > 0
                    and console.latest.rates.get("prompts", 0) > 0, timeout=90_000)
    print(f"non-zero rates {time.monotonic() - t0:.1f} s after the run started")
    qtbot.waitUntil(lambda: all(h is not None and h.sum() > 0 for h in (
        console.latest.energy and console.latest.energy.counts,
        console.latest.dt and console.latest.dt.counts,
        console.latest.hitmap, console.latest.sinogram)), timeout=15_000)
    qtbot.waitUntil(lambda: console.images.updates >= 2, timeout=60_000)
    first = console.images.image
    qtbot.waitUntil(lambda: console.images.image.events >= max(150_000, first.events + 1),
                    timeout=90_000)
    image = console.images.image
    assert image is not first and image.events > first.events  # the image view updates
    contrast = _head_to_background(image)
    print(f"image of {image.events:.0f} events after {time.monotonic() - t0:.0f} s, "
          f"head/background {contrast:.1f}")
    assert contrast > 5.0
    qtbot.waitUntil(lambda: not console.status.values["singles"].text().startswith("0 "),
                    timeout=10_000)  # a moment the DAQ's rate meter saw events arrive
    DOCS.mkdir(exist_ok=True)
    assert console.save_screenshot(DOCS / "console.png")
    _stop_scan(qtbot, console)
    assert console.latest.elapsed_s < 300.0
    assert console.banner_text() == ""


@pytest.mark.soak  # a live scan paced in real time; test_gui_console draws the curves fast
def test_a_dynamic_scan_shows_its_curves_growing_next_to_the_image(qtbot, console):
    """brain-fdg with its model clock 60 times the scan's: 12 s of scan, 12 model minutes in 8
    frames reconstructed by the DAQ as each completes; the console draws the grey matter, white
    matter and blood curves as they grow."""
    c = console.controls
    c.time_scale.setValue(60.0)
    c.frames.setText("4x1min,4x2min")
    _start_scan(qtbot, console, phantom="brain-fdg", activity_mbq=20.0, duration_s=12.0)
    start = next(r for r in console.command_replies if r.request["cmd"] == "start")
    assert start.ok and start.request["settings"]["frames"] == "4x1min,4x2min"
    qtbot.waitUntil(lambda: console.curves.shown is not None
                    and console.curves.shown.frames_done >= 5, timeout=240_000)
    qtbot.waitUntil(lambda: console.images.updates >= 2, timeout=60_000)
    shown = console.curves.shown
    assert set(shown.mean_bq_ml) == {"grey_matter", "white_matter", "blood"}
    assert shown.frames_total == 8
    DOCS.mkdir(exist_ok=True)
    assert console.save_screenshot(DOCS / "console_dynamic.png")
    qtbot.waitUntil(lambda: console.state == "stopped", timeout=240_000)
    qtbot.waitUntil(lambda: console.curves.shown.frames_done == 8, timeout=30_000)
    curves = console.curves.shown
    assert list(curves.mid_min) == [0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 9.0, 11.0]
    grey, blood = curves.mean_bq_ml["grey_matter"], curves.mean_bq_ml["blood"]
    assert grey[-1] > grey[0] and blood.argmax() < 4  # uptake rises; the bolus passes early


@pytest.mark.soak  # a live scan paced in real time; test_gui_console draws the bullseye fast
def test_a_cardiac_spect_scan_ends_with_its_image_and_bullseye(qtbot, console):
    """Tc-99m on the dual-head camera, the cardiac phantom, 800 MBq for 10 s: at the stop the DAQ
    reconstructs the projections, finds the ventricle's axis in the image and sends the image
    and the bull's-eye; the console shows both, the lowest segment in the phantom's anterior
    defect, and SPECT's panels (the heads now, the sinogram, counts per angle)."""
    _start_scan(qtbot, console, phantom="cardiac", activity_mbq=800.0, duration_s=10.0,
                scanner="spect-dual-head", nuclide="Tc-99m")
    qtbot.waitUntil(lambda: console.bullseye.shown is not None, timeout=240_000)
    qtbot.waitUntil(lambda: console.images.image is not None, timeout=10_000)
    percent = console.bullseye.shown.percent
    assert int(np.argmin(percent)) + 1 in (7, 13, 17)  # the defect's segments (LAD)
    assert console.side.currentWidget() is console.bullseye
    # SPECT's panels, not PET's empty ones; no normal limits for this camera, and it says so
    assert console.plots.spect_mode
    assert console.plots.hitmap.titleLabel.text.startswith("Heads now: view")
    assert "not scored: no normal limits for spect-dual-head" in console.bullseye.title.text
    DOCS.mkdir(exist_ok=True)
    assert console.save_screenshot(DOCS / "console_cardiac.png")
    qtbot.waitUntil(lambda: console.state == "stopped", timeout=30_000)


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    """20 s of a NEMA IQ phantom at 2.5 MBq (about 4.5 M singles/s) recorded by the emulator:
    enough for the DAQ (30-60 M singles/s from a file on 2 cores) to run for the second or
    more the test measures."""
    path = tmp_path_factory.mktemp("frames") / "nema-iq.frames"
    subprocess.run([sys.executable, "-m", "petdaq", "emulate", "--fast", "--duration", "20",
                    "--activity-mbq", "2.5", "--phantom", "nema-iq", "--to", str(path),
                    "--quiet"], check=True, timeout=300)
    return path


@pytest.mark.slow
@pytest.mark.serial  # a refresh rate: measured alone, after the parallel tests
def test_refresh_rate_while_the_daq_takes_a_million_singles_per_second(qtbot, frames_file,
                                                                       tmp_path):
    """The console attached (--connect) to ``petdaq acquire`` reading recorded frames as fast
    as the DAQ can take them: the DAQ's singles rate and the console's display rate, measured
    over the same seconds."""
    theme.apply(QtWidgets.QApplication.instance())
    monitor_port = free_port()
    console = ConsoleWindow("127.0.0.1", monitor_port, free_port())
    qtbot.addWidget(console)
    console.show()
    daq = subprocess.Popen([sys.executable, "-m", "petdaq", "acquire", "--from", str(frames_file),
                            "--monitor-port", str(monitor_port), "--out", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    try:
        deadline = time.monotonic() + 120
        while daq.poll() is None and time.monotonic() < deadline:
            qtbot.wait(100)
            v = console.latest
            if v is not None and v.state == "running" and "singles" in v.totals:
                samples.append((time.monotonic(), console.frames, v.totals["singles"],
                                v.elapsed_s))
        assert daq.wait(60) == 0, daq.stderr.read()
    finally:
        console.shutdown()
        if daq.poll() is None:
            daq.kill()
    assert len(samples) >= 2, "the console never showed the run running"
    (t0, f0, n0, e0), (t1, f1, n1, e1) = samples[0], samples[-1]
    singles_per_s = (n1 - n0) / (e1 - e0)
    hz = (f1 - f0) / (t1 - t0)
    print(f"console refresh {hz:.1f} frames/s over {t1 - t0:.1f} s while the DAQ took "
          f"{singles_per_s / 1e6:.2f} M singles/s")
    assert t1 - t0 >= 1.0
    # live, not a timing: the console keeps redrawing while the DAQ works both cores
    assert singles_per_s > 0
    assert hz >= 4.0


@pytest.mark.soak  # minutes of a fresh clone's make test; the fast console test shows the alert
def test_a_head_that_moves_raises_the_alert_at_the_console(qtbot, console, tmp_path):
    """The brain phantom, 2 MBq, a 6 mm step at 3 s typed as a trace file in the form: the
    console's banner says MOTION and its Motion tab shows the jump; at the stop the episode."""
    trace = tmp_path / "step.csv"
    trace.write_text("t_s,tx_mm,ty_mm,tz_mm,rx_deg,ry_deg,rz_deg\n0,0,0,0,0,0,0\n"
                     "3,0,0,0,0,0,0\n3.3,2,-5,3,0,0,0\n")
    _start_scan(qtbot, console, phantom="brain", activity_mbq=2.0, duration_s=6.0,
                motion=str(trace))
    qtbot.waitUntil(lambda: "MOTION" in console.banner_text(), timeout=120_000)
    assert console.side.currentWidget() is console.motion
    qtbot.waitUntil(lambda: console.images.image is not None, timeout=30_000)
    DOCS.mkdir(exist_ok=True)
    assert console.save_screenshot(DOCS / "console_motion.png")
    qtbot.waitUntil(lambda: console.state == "stopped", timeout=240_000)
    qtbot.waitUntil(lambda: console.motion.shown is not None
                    and len(console.motion.shown.episodes) == 1, timeout=30_000)
    start, _end, size = console.motion.shown.episodes[0]
    assert 2.5 <= start <= 3.5 and size == pytest.approx(np.linalg.norm([2, 5, 3]), abs=1.0)
