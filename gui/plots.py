"""The acquisition views: rate strip chart, energy spectrum with the energy window, the TOF
time-difference histogram, the crystal hit map and the sinogram (one pyqtgraph canvas)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from gui import theme
from gui.views import RATE_NAMES, Histogram, MonitorView, ProjectionsView, display_levels

STRIP_SECONDS = 120.0
RATE_LABELS = {"singles": "singles", "prompts": "prompts", "delayeds": "delayeds",
               "necr": "NECR"}


_STEPS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def nice_ceiling(x: float) -> float:
    """The smallest round number (1, 1.5, 2, 3, 4, 5, 6, 8 x 10^k) at or above ``x`` > 0."""
    decade = 10.0 ** math.floor(math.log10(x))
    return next(m * decade for m in _STEPS if m * decade >= x * (1 - 1e-12))


_DECADE_NAMES = {0: "", 3: " k", 6: " M", 9: " G"}


def decade_label(k: int) -> str:
    """The label of 10^k: "10 k", "1 M"; below 1 or from 10^12 as a number ("0.1", "1e+12")."""
    if k - k % 3 in _DECADE_NAMES:
        return f"{10 ** (k % 3)}{_DECADE_NAMES[k - k % 3]}"
    return f"{10.0 ** k:g}"


def decade_ticks(lo: int, hi: int) -> list[list[tuple[float, str]]]:
    """Ticks of a log10 axis from 10^lo to 10^hi: labelled decades ("10 k", "1 M", "0.1") and
    unlabelled minor ticks."""
    major = [(float(k), decade_label(k)) for k in range(lo, hi + 1)]
    minor = [(k + math.log10(m), "") for k in range(lo, hi) for m in range(2, 10)]
    return [major, minor]


def _plot(layout: pg.GraphicsLayout, title: str, bottom: str, left: str,
          **kwargs) -> pg.PlotItem:
    """A plot whose axes are cached as pixmaps: redrawn only when their range changes, which
    the views below keep rare by moving ranges in steps."""
    p = layout.addPlot(title=title, **kwargs)
    p.setLabel("bottom", bottom)
    p.setLabel("left", left)
    p.showGrid(x=True, y=True, alpha=0.15)
    p.setMenuEnabled(False)
    for name in ("left", "bottom"):
        p.getAxis(name).setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    return p




def _image_plot(layout: pg.GraphicsLayout, title: str, bottom: str, left: str,
                colormap: str) -> tuple[pg.PlotItem, pg.ImageItem]:
    p = _plot(layout, title, bottom, left)
    p.showGrid(x=False, y=False)
    for name in ("left", "bottom"):
        p.getAxis(name).enableAutoSIPrefix(False)
    item = pg.ImageItem(axisOrder="col-major")
    item.setColorMap(pg.colormap.get(colormap))
    p.addItem(item)
    return p, item


class AcquisitionPlots(pg.GraphicsLayoutWidget):
    """Live acquisition histograms. ``window_region`` is the energy window of the next run."""

    window_dragged = QtCore.Signal(float, float)

    def __init__(self) -> None:
        super().__init__()
        self.ci.setSpacing(6)
        self.rates = _plot(self.ci, "Count rates", "time (s)", "rate (counts/s)", colspan=2)
        self.rates.setLogMode(y=True)
        self.rates.setXRange(-STRIP_SECONDS, 0, padding=0)
        self.rates.enableAutoRange(x=False, y=False)
        self._decades = (3, 7)
        self.rates.setYRange(*self._decades, padding=0.03)
        self.rates.getAxis("left").setTicks(decade_ticks(*self._decades))
        self.rates.addLegend(offset=(8, 4), labelTextColor=theme.TEXT, brush="#15181dc0")
        self.curves = {name: self.rates.plot(name=RATE_LABELS[name],
                                             pen=pg.mkPen(theme.RATE_COLOURS[name], width=2),
                                             connect="finite")
                       for name in RATE_NAMES}

        self.energy = _plot(self.ci, "Energy spectrum", "energy (keV)", "counts")
        self.energy_curve = self.energy.plot(stepMode="center", fillLevel=0, name="energy",
                                             pen=pg.mkPen(theme.ACCENT, width=1.5),
                                             brush=(74, 163, 255, 60))
        self.window_region = pg.LinearRegionItem(
            values=(435.0, 585.0), orientation="vertical", brush=(255, 200, 60, 40),
            hoverBrush=(255, 200, 60, 70), pen=pg.mkPen("#ffc83c", width=2))
        self.window_region.setZValue(10)
        self.energy.addItem(self.window_region)
        # the window the DAQ sorts with now (dashed), next to the one the next run will use
        self.daq_window = [pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff", width=1,
                                                                  style=QtCore.Qt.PenStyle.DashLine))
                           for _ in range(2)]
        for line in self.daq_window:
            line.setVisible(False)
            self.energy.addItem(line)
        self.window_region.sigRegionChanged.connect(self._region_moved)

        self.ci.nextRow()
        self.hitmap, self.hitmap_image = _image_plot(self.ci, "Crystal hit map",
                                                     "crystal in ring", "ring", "viridis")
        self.module_grid = pg.PlotCurveItem(pen=pg.mkPen("#ffffff80", width=1), connect="pairs")
        self.hitmap.addItem(self.module_grid)
        self.sinogram, self.sinogram_image = _image_plot(self.ci, "Sinogram", "radial bin",
                                                         "angle bin (0\u2013180\u00b0)", "CET-L1")
        self.dt = _plot(self.ci, "Time difference (TOF)", "\u0394t (ps)", "coincidences")
        for p, span in ((self.energy, (0.0, 1000.0)), (self.dt, (-2000.0, 2000.0))):
            p.enableAutoRange(x=False, y=False)
            p.setXRange(*span, padding=0.02)
        self.dt_curve = self.dt.plot(stepMode="center", fillLevel=0, name="dt",
                                     pen=pg.mkPen("#e69f00", width=1.5), brush=(230, 159, 0, 60))
        self._grid_key: tuple | None = None
        self._ranges: dict[str, tuple] = {}
        #: Each PET panel's (title, bottom, left) for PET and for SPECT.
        self._titles = {
            self.hitmap: (("Crystal hit map", "crystal in ring", "ring"),
                          ("Heads now", "column (head 1 | head 2)", "row")),
            self.sinogram: (("Sinogram", "radial bin", "angle bin (0\u2013180\u00b0)"),
                            ("Sinogram (central row)", "column", "view (gantry-angle order)")),
            self.dt: (("Time difference (TOF)", "\u0394t (ps)", "coincidences"),
                      ("Counts per angle (photopeak)", "gantry angle (\u00b0)", "counts"))}
        self.spect_mode = False

    # ---------------------------------------------------------------- energy window

    def energy_window(self) -> tuple[float, float]:
        lo, hi = self.window_region.getRegion()
        return float(lo), float(hi)

    def set_energy_window(self, lo: float, hi: float) -> None:
        """Move the region without echoing it back as a drag."""
        self.window_region.blockSignals(True)
        self.window_region.setRegion((lo, hi))
        self.window_region.blockSignals(False)
        self._title_window()

    def _region_moved(self) -> None:
        self._title_window()
        self.window_dragged.emit(*self.energy_window())

    def _title_window(self) -> None:
        lo, hi = self.energy_window()
        self.energy.setTitle(f"Energy spectrum \u2014 next run window {lo:.0f}\u2013{hi:.0f} keV")

    # ---------------------------------------------------------------- updates

    def show_rates(self, t: np.ndarray, history: dict[str, np.ndarray], now: float) -> None:
        """Redraw the strip chart: the last STRIP_SECONDS of samples, time relative to now."""
        keep = t > now - STRIP_SECONDS
        x = t[keep] - now
        shown = []
        for name, curve in self.curves.items():
            y = history[name][keep]
            y = np.where(y > 0, y, np.nan)
            curve.setData(x, y)
            shown.append(y)
        values = np.concatenate(shown) if shown else np.empty(0)
        values = values[np.isfinite(values)]
        if values.size:
            lo = math.floor(math.log10(values.min()))
            hi = max(lo + 1, math.ceil(math.log10(values.max()) + 0.15))  # headroom
            if (lo, hi) != self._decades:
                self._decades = (lo, hi)
                self.rates.setYRange(lo, hi, padding=0.03)
                self.rates.getAxis("left").setTicks(decade_ticks(lo, hi))

    def show_monitor(self, v: MonitorView, grid: tuple[int, int] | None) -> None:
        """Histograms and images of one monitor view; ``grid`` = (module rings, modules per
        ring) to outline modules on the hit map."""
        self._show_histogram(self.energy, self.energy_curve, v.energy)
        self._show_histogram(self.dt, self.dt_curve, v.dt)
        if v.energy_window_kev is not None:
            for line, e in zip(self.daq_window, v.energy_window_kev, strict=True):
                line.setValue(e)
                line.setVisible(True)
        if v.hitmap is not None:
            self.hitmap_image.setImage(v.hitmap.T, levels=v.hitmap_levels, autoLevels=False)
            self._outline_modules(v.hitmap.shape, grid)
        if v.sinogram is not None:
            self.sinogram_image.setImage(v.sinogram.T, levels=v.sinogram_levels,
                                         autoLevels=False)
        self._show_spect(v.projections)

    def _show_spect(self, p: ProjectionsView | None) -> None:
        """A SPECT scan's panels where PET's hit map, sinogram and time difference stand: each
        head's current projection, the central row's sinogram and the counts per gantry angle;
        PET's titles back when a PET scan follows."""
        spect = p is not None
        if spect != self.spect_mode:
            self.spect_mode = spect
            for plot, titles in self._titles.items():
                title, bottom, left = titles[spect]
                plot.setTitle(title)
                plot.setLabel("bottom", bottom)
                plot.setLabel("left", left)
            self.module_grid.setVisible(not spect)
        if p is None:
            return
        self.hitmap.setTitle(f"Heads now: view {p.view + 1} of {p.views}")
        self.hitmap_image.setImage(p.heads_now.T, levels=display_levels(p.heads_now),
                                   autoLevels=False)
        self.sinogram_image.setImage(p.sinogram.T, levels=display_levels(p.sinogram),
                                     autoLevels=False)
        n = p.counts_per_angle.size
        self._show_histogram(self.dt, self.dt_curve,
                             Histogram(np.linspace(0.0, 360.0, n + 1), p.counts_per_angle))

    def _outline_modules(self, shape: tuple[int, int], grid: tuple[int, int] | None) -> None:
        if (shape, grid) == self._grid_key:
            return
        self._grid_key = (shape, grid)
        rings, per_ring = shape
        if grid is None or rings % grid[0] or per_ring % grid[1]:
            self.module_grid.setData([], [])
            return
        xs = np.arange(1, grid[1]) * (per_ring // grid[1])
        ys = np.arange(1, grid[0]) * (rings // grid[0])
        x = np.concatenate([np.repeat(xs, 2), np.tile([0, per_ring], len(ys))])
        y = np.concatenate([np.tile([0, rings], len(xs)), np.repeat(ys, 2)])
        self.module_grid.setData(x.astype(float), y.astype(float))

    def _show_histogram(self, plot: pg.PlotItem, curve: pg.PlotDataItem,
                        h: Histogram | None) -> None:
        """Draw a histogram; the y range steps through round values as the counts grow."""
        if h is None:
            curve.clear()
            return
        curve.setData(h.edges, h.counts)
        top = nice_ceiling(max(1.0, float(h.counts.max()) * 1.05))
        span = (float(h.edges[0]), float(h.edges[-1]), top)
        if self._ranges.get(curve.name()) != span:  # set only on change: axes stay cached
            self._ranges[curve.name()] = span
            plot.setXRange(span[0], span[1], padding=0.02)
            plot.setYRange(0.0, top, padding=0.02)
