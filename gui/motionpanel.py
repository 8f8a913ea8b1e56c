"""A PET scan's head motion: the prompts' centroid's distance from its settled place over the scan,
each motion episode shaded, the title red while the patient moves."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gui import theme
from gui.views import MotionView

IDLE_TITLE = "Head motion (PET scans)"


class MotionPanel(pg.PlotWidget):
    """The displacement (mm) per interval; the episodes as shaded spans."""

    def __init__(self) -> None:
        super().__init__(title=IDLE_TITLE)
        self.setMinimumWidth(380)
        self.plot_item = self.getPlotItem()
        self.plot_item.setLabel("bottom", "time (s)")
        self.plot_item.setLabel("left", "centroid moved (mm)")
        self.plot_item.showGrid(x=True, y=True, alpha=0.15)
        self.plot_item.setMenuEnabled(False)
        self.line = self.plot_item.plot(pen=pg.mkPen("#56b4e9", width=2))
        self.spans: list[pg.LinearRegionItem] = []
        self.shown: MotionView | None = None

    def show_motion(self, v: MotionView) -> None:
        """Draw the signal so far (each view carries all of it)."""
        y = np.where(np.isfinite(v.displacement_mm), v.displacement_mm, 0.0)
        self.line.setData(v.t_s, y)
        if len(self.spans) != len(v.episodes):
            self._shade(v.episodes)
        if v.moving:
            self.plot_item.setTitle("MOTION: the patient is moving", color=theme.WARNING,
                                    size="14pt")
        else:
            sizes = ", ".join(f"{e[2]:.1f} mm at {e[0]:.0f} s" for e in v.episodes[-3:])
            self.plot_item.setTitle(f"Head motion: {len(v.episodes)} episode(s)"
                                    + (f" ({sizes})" if sizes else ""), color=theme.TEXT)
        self.shown = v

    def _shade(self, episodes: tuple[tuple[float, float, float], ...]) -> None:
        for span in self.spans:
            self.plot_item.removeItem(span)
        self.spans = []
        for start, end, _ in episodes:
            span = pg.LinearRegionItem((start, end), movable=False,
                                       brush=pg.mkBrush(178, 59, 46, 70), pen=pg.mkPen(None))
            self.plot_item.addItem(span)
            self.spans.append(span)

    def clear_motion(self) -> None:
        """Forget the signal (a new run has started)."""
        self.line.setData([], [])
        self._shade(())
        self.plot_item.setTitle(IDLE_TITLE)
        self.shown = None
