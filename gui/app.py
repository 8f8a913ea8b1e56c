"""Create the Qt application and the console window, and run it (optionally: screenshot, exit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyqtgraph as pg
from pyqtgraph.Qt import QtCore

from gui import theme
from gui.link import Secure
from gui.local_daq import LocalDaq
from gui.window import ConsoleWindow


def run(*, host: str | None, monitor_port: int, control_port: int, out_dir: Path,
        screenshot: Path | None = None, after_s: float = 5.0, secure: Secure | None = None
        ) -> int:
    """Open the console on the DAQ at ``host`` (None: start a local one); the exit code."""
    app = pg.mkQApp("petdaq console")
    theme.apply(app)
    local = None
    if host is None:
        local = LocalDaq(out_dir)
        host, monitor_port, control_port = local.host, local.monitor_port, local.control_port
    window = ConsoleWindow(host, monitor_port, control_port, local_daq=local, secure=secure)
    saved = []
    if screenshot is not None:
        def shoot() -> None:
            saved.append(window.save_screenshot(screenshot))
            window.close()

        QtCore.QTimer.singleShot(round(after_s * 1000), shoot)
    window.show()
    app.exec()
    window.shutdown()
    if screenshot is not None:
        if not saved or not saved[0]:
            print(f"petdaq: error: could not write the screenshot {screenshot}", file=sys.stderr)
            return 1
        print(f"screenshot saved to {screenshot}")
    return 0
