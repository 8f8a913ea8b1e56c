"""The console's QC tab: the chosen scanner's latest daily QC (its result and what it flagged),
the crystals' map of that QC (as ``petdaq qc`` drew it: rings down, blue low, red high, black
dead) and the trend of every QC so far (the lowest and highest module's rate and gain) between
their FAIL bands (dashed)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gui.views import QcView

IDLE_TITLE = "Daily QC (petdaq qc): none received"
#: What a failed gain check offers (the Lu-176 gain calibration on the QC's own blank).
GAIN_OFFER = "gain moved: petdaq calibrate QC_RUN --method lu176<br>recalibrates from this blank"


class QcPanel(pg.GraphicsLayoutWidget):
    """Title, crystals' map, and the modules' rate and gain over the QCs."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumWidth(380)
        self.title = pg.LabelItem(IDLE_TITLE)
        self.addItem(self.title, row=0, col=0)
        self.view = self.addViewBox(row=1, col=0, lockAspect=False, invertY=True,
                                    enableMouse=False)
        self.picture = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.picture)
        self.trend = self.addPlot(row=2, col=0, title="modules over the QCs (min, max)")
        self.trend.setLabel("bottom", "QC")
        self.trend.setLabel("left", "over baseline")
        self.trend.addLegend(offset=(5, 5))
        self.rate = [self._curve("#4aa3f0", "singles rate" if k == 0 else None) for k in range(2)]
        self.gain = [self._curve("#f0b54a", "gain" if k == 0 else None) for k in range(2)]
        self.bands = {key: [self._band(colour) for _ in range(2)]
                      for key, colour in (("module_rate", "#4aa3f0"), ("gain", "#f0b54a"))}
        self.shown: QcView | None = None

    def _band(self, colour: str) -> pg.InfiniteLine:
        line = pg.InfiniteLine(angle=0, pen=pg.mkPen(colour, width=1,
                                                     style=pg.QtCore.Qt.PenStyle.DashLine))
        line.setVisible(False)
        self.trend.addItem(line)
        return line

    def _curve(self, colour: str, name: str | None) -> pg.PlotDataItem:
        return self.trend.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                               symbolBrush=colour, connect="finite", name=name)

    def show_qc(self, v: QcView) -> None:
        """Draw ``v``: the title, the map (when its run is still there) and the trend."""
        flagged = ", ".join(v.flagged[:4]) + (f" (+{len(v.flagged) - 4})"
                                              if len(v.flagged) > 4 else "")
        offer = f"<br>{GAIN_OFFER}" if any(f.endswith(": gain") for f in v.flagged) else ""
        colour = {"FAIL": "#ff6b5a", "WARN": "#f0b54a"}.get(v.result, "#8fd18f")
        self.title.setText(f"<span style='color:{colour}'>QC {v.result}</span> {v.scanner} "
                           f"{v.created_utc[:16].replace('T', ' ')} UTC<br>"
                           f"{flagged or 'nothing flagged'}{offer}")
        if v.picture is not None:
            self.picture.setImage(np.array(v.picture), levels=(0, 255))
            rows, cols = v.picture.shape[:2]
            self.view.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.0)
        else:
            self.picture.clear()
        x = np.arange(len(v.results), dtype=np.float64)
        for curve, key in zip(self.rate, ("module_rate_min", "module_rate_max"), strict=True):
            curve.setData(x, v.trend[key])
        for curve, key in zip(self.gain, ("gain_min", "gain_max"), strict=True):
            curve.setData(x, v.trend[key])
        for key, lines in self.bands.items():     # the FAIL band of each figure, dashed
            half = v.fail_bands.get(key)
            for line, sign in zip(lines, (-1, 1), strict=True):
                line.setVisible(half is not None)
                if half is not None:
                    line.setValue(1 + sign * half)
        self.shown = v
