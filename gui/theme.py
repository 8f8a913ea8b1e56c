"""The console's dark theme: a Fusion palette for the Qt widgets and pyqtgraph defaults."""

from __future__ import annotations

import pyqtgraph as pg
from pyqtgraph.Qt import QtGui, QtWidgets

BACKGROUND = "#15181d"
PANEL = "#1e2228"
TEXT = "#d8dde4"
MUTED = "#8a93a0"
ACCENT = "#4aa3ff"
WARNING = "#b23b2e"
CAUTION = "#a8741a"

#: Strip-chart colour of each rate (colour-blind-safe Okabe-Ito hues).
RATE_COLOURS = {"singles": "#56b4e9", "prompts": "#e69f00", "delayeds": "#cc79a7",
                "necr": "#009e73"}

STYLE = f"""
QWidget {{ font-size: 10pt; }}
QGroupBox {{ border: 1px solid #333a44; border-radius: 4px; margin-top: 14px;
             padding: 6px 4px 4px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {MUTED};
                   font-weight: bold; }}
QLabel[role="value"] {{ color: {TEXT}; font-weight: bold; }}
QLabel[role="key"] {{ color: {MUTED}; }}
QLabel#banner {{ color: white; font-size: 12pt; font-weight: bold; padding: 6px 10px; }}
QPushButton {{ padding: 6px 14px; font-weight: bold; }}
QPushButton#start {{ background: #1f6f43; color: white; }}
QPushButton#start:disabled, QPushButton#stop:disabled {{ background: #2a2f36; color: #5d6570; }}
QPushButton#stop {{ background: #8a2a22; color: white; }}
QPlainTextEdit {{ font-family: monospace; font-size: 9pt; }}
QStatusBar QLabel {{ color: {MUTED}; }}
"""


def apply(app: QtWidgets.QApplication) -> None:
    """Dark Fusion palette, style sheet, and pyqtgraph's colours and array order."""
    app.setStyle("Fusion")
    palette = QtGui.QPalette()
    role = QtGui.QPalette.ColorRole
    for r, colour in ((role.Window, PANEL), (role.WindowText, TEXT), (role.Base, BACKGROUND),
                      (role.AlternateBase, PANEL), (role.Text, TEXT), (role.Button, "#2a2f36"),
                      (role.ButtonText, TEXT), (role.Highlight, ACCENT),
                      (role.HighlightedText, "#000000"), (role.ToolTipBase, PANEL),
                      (role.ToolTipText, TEXT), (role.PlaceholderText, MUTED)):
        palette.setColor(r, QtGui.QColor(colour))
    palette.setColor(QtGui.QPalette.ColorGroup.Disabled, role.Text, QtGui.QColor(MUTED))
    palette.setColor(QtGui.QPalette.ColorGroup.Disabled, role.ButtonText, QtGui.QColor(MUTED))
    app.setPalette(palette)
    app.setStyleSheet(STYLE)
    pg.setConfigOptions(background=BACKGROUND, foreground=TEXT, imageAxisOrder="col-major",
                        antialias=False)
