"""A cardiac SPECT scan's bull's-eye: the AHA 17-segment polar map the DAQ sends at the stop, as
the DAQ drew it (the picture of ``petdaq recon --cardiac``: anterior at the top, septal on the left,
each segment coloured by its percent of the maximum and numbered), with its scores in a line."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gui.views import PolarView

IDLE_TITLE = "Bull's-eye (cardiac SPECT)"


class BullseyePanel(pg.GraphicsLayoutWidget):
    """The polar map picture; the title names the abnormal segments and the reading's scores."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumWidth(380)
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.picture = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.picture)
        self.title = pg.LabelItem(IDLE_TITLE)
        self.addItem(self.title, row=1, col=0)
        self.shown: PolarView | None = None

    def show_polar(self, v: PolarView) -> None:
        """Draw the bull's-eye of ``v``."""
        self.picture.setImage(np.array(v.picture), levels=(0, 255))
        self.view.autoRange(padding=0.02)
        low = ", ".join(map(str, v.abnormal_segments)) or "none"
        scored = not v.summary.startswith("not scored")
        self.title.setText(f"Bull's-eye: abnormal segments {low}<br>{v.summary}" if scored
                           else f"Bull's-eye: {v.summary}")
        self.shown = v

    def showing(self, v: PolarView) -> bool:
        """Whether ``v`` is the bull's-eye drawn now (the DAQ publishes a run's again while
        idle)."""
        s = self.shown
        return s is not None and np.array_equal(s.percent, v.percent) and \
            np.array_equal(s.picture, v.picture)

    def clear_polar(self) -> None:
        """Forget the bull's-eye (a new run has started)."""
        self.picture.clear()
        self.title.setText(IDLE_TITLE)
        self.shown = None
