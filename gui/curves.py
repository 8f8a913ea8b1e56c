"""The time-activity curves of a dynamic scan: each region's mean (Bq/mL) per finished frame,
growing as the DAQ reconstructs its live frames, next to the image."""

from __future__ import annotations

import pyqtgraph as pg

from gui import theme
from gui.views import CurvesView

#: Region colours in order of appearance (Okabe-Ito hues, colour-blind safe).
REGION_COLOURS = ("#e69f00", "#56b4e9", "#009e73", "#cc79a7", "#f0e442", "#0072b2",
                  "#d55e00", "#ffffff")
IDLE_TITLE = "Time-activity curves (dynamic scans)"


class CurvesPanel(pg.PlotWidget):
    """One line with markers per region; the title says how many frames are done."""

    def __init__(self) -> None:
        super().__init__(title=IDLE_TITLE)
        self.setMinimumWidth(380)
        self.plot_item = self.getPlotItem()
        self.plot_item.setLabel("bottom", "time (min, kinetic clock)")
        self.plot_item.setLabel("left", "activity (Bq/mL)")
        self.plot_item.showGrid(x=True, y=True, alpha=0.15)
        self.plot_item.setMenuEnabled(False)
        self.plot_item.getAxis("left").enableAutoSIPrefix(False)
        self.plot_item.addLegend(offset=(8, 4), labelTextColor=theme.TEXT, brush="#15181dc0")
        self.lines: dict[str, pg.PlotDataItem] = {}
        self.shown: CurvesView | None = None

    def show_curves(self, v: CurvesView) -> None:
        """Draw the curves so far (each view carries all of them)."""
        for name, mean in v.mean_bq_ml.items():
            line = self.lines.get(name)
            if line is None:
                colour = REGION_COLOURS[len(self.lines) % len(REGION_COLOURS)]
                line = self.plot_item.plot(name=name, pen=pg.mkPen(colour, width=2),
                                           symbol="o", symbolSize=6, symbolBrush=colour,
                                           symbolPen=None)
                self.lines[name] = line
            line.setData(v.mid_min, mean)
        self.plot_item.setTitle(f"Time-activity curves, frame {v.frames_done}/{v.frames_total}")
        self.shown = v

    def clear_curves(self) -> None:
        """Forget the curves (a new run has started)."""
        for line in self.lines.values():
            self.plot_item.removeItem(line)
        self.plot_item.legend.clear()
        self.lines = {}
        self.shown = None
        self.plot_item.setTitle(IDLE_TITLE)
