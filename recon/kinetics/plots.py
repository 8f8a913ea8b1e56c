"""PNG plots of kinetic analyses: time-activity curves and the graphical fits (pyqtgraph,
offscreen)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from infra.atomic import replacing
from recon.kinetics.models import Fit
from recon.kinetics.tacs import Curves

COLOURS = ("b", "r", "g", "m", "c", "k", (255, 128, 0), (128, 0, 255))


def figure(width: int = 900, height: int = 600):
    """An offscreen pyqtgraph window (white background) to draw plots in."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg

    app = pg.mkQApp()
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    win = pg.GraphicsLayoutWidget()
    win.resize(width, height)
    return app, win


def export_png(app, win, path: Path, width: int) -> Path:
    """The window as a PNG at ``path`` (``width`` pixels; atomically), then closed."""
    import pyqtgraph.exporters

    win.show()                                   # lays the plot out (offscreen platform)
    app.processEvents()
    exporter = pyqtgraph.exporters.ImageExporter(win.scene())
    exporter.parameters()["width"] = width
    with replacing(path) as tmp:
        exporter.export(str(tmp))
    win.close()
    return path


def plot_curves(curves: Curves, path: Path, title: str) -> Path:
    """Each region's mean (kBq/mL) against the frames' middles (min)."""
    import pyqtgraph as pg

    app, win = figure()
    ax = win.addPlot(title=title)
    ax.addLegend(offset=(-10, 10))
    ax.showGrid(x=True, y=True, alpha=0.3)
    ax.setLabel("bottom", "time after injection (min)")
    ax.setLabel("left", "activity concentration (kBq/mL)")
    for k, name in enumerate(curves.mean_bq_ml):
        colour = COLOURS[k % len(COLOURS)]
        mean = curves.mean_bq_ml[name] / 1e3
        ax.plot(curves.mid_min, mean, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                symbolBrush=colour, name=name)
    return export_png(app, win, path, 900)


def plot_fits(fits: dict[str, Fit], path: Path, title: str, x_label: str, y_label: str,
              slope_name: str) -> Path:
    """A graphical analysis: each region's points after t* and its fitted line."""
    import pyqtgraph as pg

    app, win = figure()
    ax = win.addPlot(title=title)
    ax.addLegend(offset=(10, 10))
    ax.showGrid(x=True, y=True, alpha=0.3)
    ax.setLabel("bottom", x_label)
    ax.setLabel("left", y_label)
    for k, (name, fit) in enumerate(fits.items()):
        colour = COLOURS[k % len(COLOURS)]
        ax.plot(fit.x, fit.y, pen=None, symbol="o", symbolSize=7, symbolBrush=colour)
        xs = np.array([0.0, float(fit.x.max())])
        ax.plot(xs, fit.slope * xs + fit.intercept, pen=pg.mkPen(colour, width=2),
                name=f"{name}: {slope_name} {fit.slope:.4g} (R^2 {fit.r2:.3f})")
    return export_png(app, win, path, 900)
