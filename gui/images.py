"""The reconstructed image: transverse, coronal and sagittal slices through a cursor, and the
anterior maximum-intensity projection, sharing one colour table and level control.

Clicking in any view moves the cursor (the slices follow). Levels follow each new image while
"Auto levels" is ticked; dragging the level control unticks it. The MIP, brighter than any
slice, is shown at the same levels scaled by the ratio of its own automatic levels to the
slices'.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from gui import text
from gui.views import ImageView

# view name -> (title, image axes shown as (horizontal, vertical), axis labels)
VIEWS = {
    "transverse": ("Transverse", (0, 1), ("x (mm)", "y (mm)")),
    "coronal": ("Coronal", (0, 2), ("x (mm)", "z (mm)")),
    "sagittal": ("Sagittal", (1, 2), ("y (mm)", "z (mm)")),
    "mip": ("MIP (anterior)", (0, 2), ("x (mm)", "z (mm)")),
}
DEFAULT_FILTER_FWHM_MM = 5.0
_CROSSHAIR = pg.mkPen("#4aa3ff90", width=1, style=QtCore.Qt.PenStyle.DashLine)


class ImagePanel(QtWidgets.QWidget):
    """Three orthogonal slices and a MIP of the latest reconstructed image."""

    def __init__(self) -> None:
        super().__init__()
        self.info = QtWidgets.QLabel("Reconstructed image: none yet")
        self.auto_levels = QtWidgets.QCheckBox("Auto levels")
        self.auto_levels.setChecked(True)
        self.filter_fwhm = QtWidgets.QDoubleSpinBox()
        self.filter_fwhm.setRange(0.0, 30.0)
        self.filter_fwhm.setDecimals(1)
        self.filter_fwhm.setSingleStep(1.0)
        self.filter_fwhm.setSuffix(" mm FWHM")
        self.filter_fwhm.setSpecialValueText("off")
        self.filter_fwhm.setKeyboardTracking(False)
        self.filter_fwhm.setValue(DEFAULT_FILTER_FWHM_MM)
        self.filter_fwhm.setToolTip("Gaussian smoothing of the displayed image only "
                                    "(the run's images are stored as reconstructed)")
        header = QtWidgets.QHBoxLayout()
        header.setContentsMargins(6, 0, 6, 0)
        header.addWidget(self.info, 1)
        header.addWidget(QtWidgets.QLabel("Display filter"))
        header.addWidget(self.filter_fwhm)
        header.addSpacing(12)
        header.addWidget(self.auto_levels)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setSpacing(4)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.canvas, 1)

        self.plots: dict[str, pg.PlotItem] = {}
        self.items: dict[str, pg.ImageItem] = {}
        self.crosshairs: dict[str, tuple[pg.InfiniteLine, pg.InfiniteLine]] = {}
        for name, (title, _, (bottom, left)) in VIEWS.items():
            p = self.canvas.addPlot(title=title)
            p.setLabel("bottom", bottom)
            p.setLabel("left", left)
            p.setAspectLocked(True)
            p.setMenuEnabled(False)
            p.setRange(xRange=(-150, 150), yRange=(-150, 150))  # until the first image
            for axis in ("left", "bottom"):
                p.getAxis(axis).enableAutoSIPrefix(False)
            item = pg.ImageItem(axisOrder="col-major")
            p.addItem(item)
            lines = (pg.InfiniteLine(angle=90, pen=_CROSSHAIR),
                     pg.InfiniteLine(angle=0, pen=_CROSSHAIR))
            for line in lines:
                p.addItem(line)
            self.plots[name], self.items[name], self.crosshairs[name] = p, item, lines
        self.lut = pg.HistogramLUTItem(image=self.items["transverse"])
        self.lut.sigLookupTableChanged.connect(self._share_lookup_table)
        self.lut.sigLevelsChanged.connect(self._levels_moved)
        self.lut.gradient.loadPreset("inferno")
        self.canvas.addItem(self.lut)
        self.canvas.scene().sigMouseClicked.connect(self._clicked)

        self.image: ImageView | None = None
        self.cursor_mm = np.zeros(3)
        self.updates = 0
        """Images shown so far."""
        self._programmatic = False

    # ---------------------------------------------------------------- public

    def showing(self, image: ImageView) -> bool:
        """Whether ``image`` is the one drawn now (the DAQ publishes a SPECT run's image again
        while idle)."""
        old = self.image
        return old is not None and old.volume.shape == image.volume.shape and \
            old.voxel_mm == image.voxel_mm and old.origin_mm == image.origin_mm and \
            np.array_equal(old.volume, image.volume)

    def show(self, image: ImageView) -> None:
        """Show a new image; the cursor stays where it was unless the geometry changed."""
        old = self.image
        self.image = image
        new_geometry = old is None or old.volume.shape != image.volume.shape \
            or old.voxel_mm != image.voxel_mm or old.origin_mm != image.origin_mm
        if new_geometry:
            self.cursor_mm = np.asarray(image.origin_mm) + 0.5 * (
                np.asarray(image.volume.shape) - 1) * np.asarray(image.voxel_mm)
        nx, ny, nz = image.volume.shape
        self.info.setText(
            f"Reconstructed image \u2014 iteration {text.count(image.iteration)}, "
            f"{text.count(image.events)} events, {nx}\u00d7{ny}\u00d7{nz} voxels of "
            f"{image.voxel_mm[0]:g} mm, updated {text.wall(image.received_at)}")
        self.updates += 1
        self._draw()
        if new_geometry:  # frame the volume; the operator's zoom is kept afterwards
            for p in self.plots.values():
                p.vb.autoRange(padding=0.02)

    def cursor_index(self) -> np.ndarray:
        """The voxel [i, j, k] under the cursor."""
        assert self.image is not None
        im = self.image
        ijk = np.rint((self.cursor_mm - np.asarray(im.origin_mm)) / np.asarray(im.voxel_mm))
        return np.clip(ijk, 0, np.asarray(im.volume.shape) - 1).astype(int)

    def levels(self) -> tuple[float, float]:
        lo, hi = self.lut.getLevels()
        return float(lo), float(hi)

    # ---------------------------------------------------------------- drawing

    def _draw(self) -> None:
        im = self.image
        if im is None:
            return
        i, j, k = self.cursor_index()
        v = im.volume
        slices = {"transverse": v[:, :, k], "coronal": v[:, j, :], "sagittal": v[i, :, :],
                  "mip": im.mip}
        corner, extent = im.corner_mm(), im.extent_mm()
        centre = np.asarray(im.origin_mm) + np.array([i, j, k]) * np.asarray(im.voxel_mm)
        self._programmatic = True
        try:
            levels = im.levels if self.auto_levels.isChecked() else self.levels()
            for name, (title, (a, b), _) in VIEWS.items():
                item = self.items[name]
                item.setImage(slices[name], autoLevels=False, levels=self._levels_of(name, levels))
                item.setRect(QtCore.QRectF(corner[a], corner[b], extent[a], extent[b]))
                vline, hline = self.crosshairs[name]
                vline.setValue(centre[a])
                hline.setValue(centre[b])
                if name != "mip":
                    fixed = ({0, 1, 2} - {a, b}).pop()
                    title = f"{title}  {'xyz'[fixed]} = {centre[fixed]:.1f} mm"
                self.plots[name].setTitle(title)
            self.lut.setLevels(*levels)
        finally:
            self._programmatic = False

    def _share_lookup_table(self) -> None:
        lut = self.lut.getLookupTable(n=512)
        for name, item in self.items.items():
            if name != "transverse":
                item.setLookupTable(lut)

    def _levels_of(self, view: str, levels: tuple[float, float]) -> tuple[float, float]:
        im = self.image
        if view != "mip" or im is None or im.levels[1] <= 0:
            return levels
        scale = im.mip_levels[1] / im.levels[1]
        return levels[0] * scale, levels[1] * scale

    def _levels_moved(self) -> None:
        levels = self.levels()
        for name, item in self.items.items():
            if name != "transverse":
                item.setLevels(self._levels_of(name, levels))
        if not self._programmatic:
            self.auto_levels.setChecked(False)

    def _clicked(self, event) -> None:
        if self.image is None:
            return
        pos = event.scenePos()
        for name, (_, (a, b), _) in VIEWS.items():
            vb = self.plots[name].vb
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                self.cursor_mm[a], self.cursor_mm[b] = p.x(), p.y()
                self._draw()
                return
