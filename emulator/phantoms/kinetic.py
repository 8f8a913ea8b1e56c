"""Kinetic phantoms: regions grouped in tissue classes whose activity follows a compartment model.

A phantom with :class:`emulator.phantoms.compartments.Kinetics` is emulated as a mixture: one
static phantom per class (its regions at concentration 1, every other region at 0, the same
attenuation), drawn with weights
concentration x visible volume at each moment of the scan (:class:`Mixture`). The class volumes
are measured on a 1 mm grid of the painted regions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emulator.jit import kernel
from emulator.phantoms import compartments as kinetics
from emulator.phantoms.compartments import TissueClass
from emulator.phantoms.model import PackedPhantom, Phantom, Region
from emulator.phantoms.shapes import pack_row, row_contains
from infra.errors import UserError

#: Edge (mm) of the grid the classes' volumes are measured on.
VOLUME_GRID_MM = 1.0


def class_phantom(phantom: Phantom, tissue: TissueClass) -> Phantom:
    """The phantom with the class's regions at concentration 1 and every other at 0."""
    parts = tuple(dataclasses.replace(r, activity=1.0 if r.name in tissue.regions else
                                      (0.0 if r.activity is not None else None))
                  for r in phantom.parts)
    return Phantom(f"{phantom.name}:{tissue.name}", tissue.name, parts=parts)


@kernel
def _label_counts(shapes, labels, lo, step, n, counts):
    """Count the grid's points (``n`` per axis from ``lo``, ``step`` mm apart) by the label of
    the last region (row of ``shapes``; label -1: undefined, inherits) that contains them."""
    for i in range(n[0]):
        x = lo[0] + i * step
        for j in range(n[1]):
            y = lo[1] + j * step
            for k in range(n[2]):
                z = lo[2] + k * step
                label = 0
                for q in range(shapes.shape[0]):
                    if labels[q] >= 0 and row_contains(shapes, q, x, y, z):
                        label = labels[q]
                counts[label] += 1


def painted_volumes_ml(parts: tuple[Region, ...], index: dict[str, int]) -> np.ndarray:
    """The volume (mL) each label covers once the regions ``parts`` are painted (a region
    labelled ``index[name]`` from 1, the others with an activity 0, those without inheriting),
    on a grid of :data:`VOLUME_GRID_MM`; entry 0 is what no label covers."""
    labels = np.array([index.get(r.name, 0 if r.activity is not None else -1)
                       for r in parts], dtype=np.int64)
    shapes = np.array([pack_row(r.shape) for r in parts], dtype=np.float64)
    boxes = np.array([r.shape.bounding_box() for r in parts])
    lo, hi = boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)
    n = np.ceil((hi - lo) / VOLUME_GRID_MM).astype(np.int64)
    counts = np.zeros(max(index.values(), default=0) + 1, np.int64)
    _label_counts(shapes, labels, lo + VOLUME_GRID_MM / 2, VOLUME_GRID_MM, n, counts)
    return counts * VOLUME_GRID_MM ** 3 / 1000.0


def class_volumes_ml(phantom: Phantom) -> dict[str, float]:
    """The visible volume (mL) of each tissue class: what its regions cover once painted (on a
    grid of :data:`VOLUME_GRID_MM`)."""
    classes = phantom.kinetics.classes
    index = {r: k + 1 for k, c in enumerate(classes) for r in c.regions}
    volumes = painted_volumes_ml(phantom.parts, index)
    return {c.name: float(volumes[k + 1]) for k, c in enumerate(classes)}


class Mixture:
    """A kinetic phantom ready to emulate: each class's packed phantom and visible volume, and
    its activity at any moment for an injected activity."""

    def __init__(self, phantom: Phantom, injected_bq: float, time_scale: float) -> None:
        """``time_scale``: model minutes per minute of acquisition (the model's clock runs that
        much faster)."""
        if phantom.kinetics is None:
            raise UserError(f"phantom '{phantom.name}' has no kinetics")
        if not (np.isfinite(time_scale) and time_scale > 0):
            raise UserError(f"the kinetic time scale must be a number > 0, got {time_scale}")
        self.kinetics = phantom.kinetics
        self.names = [c.name for c in self.kinetics.classes]
        self.packed: list[PackedPhantom] = [class_phantom(phantom, c).packed()
                                            for c in self.kinetics.classes]
        volumes = class_volumes_ml(phantom)
        self.volumes_ml = np.array([volumes[n] for n in self.names])
        self.injected_bq, self.time_scale = float(injected_bq), float(time_scale)
        self._t = np.zeros(1)
        self._curves = np.zeros((len(self.names), 1))

    def model_min(self, t_s: np.ndarray | float) -> np.ndarray:
        """Model time (min) of acquisition time ``t_s`` (s after injection)."""
        return np.asarray(t_s, dtype=np.float64) * self.time_scale / 60.0

    def concentrations(self, t_s: np.ndarray) -> np.ndarray:
        """(classes, times) decay-corrected concentrations (Bq/mL) at acquisition times (s)."""
        t_min = self.model_min(t_s)
        end = float(np.max(t_min, initial=0.0))
        if end > self._t[-1]:
            self._t, named = kinetics.curves(self.kinetics.input, self.kinetics.models(),
                                             self.injected_bq, 1.25 * end + 1.0)
            self._curves = np.array([named[n] for n in self.names])
        return np.array([np.interp(t_min, self._t, c) for c in self._curves])

    def activities_bq(self, t_s: np.ndarray) -> np.ndarray:
        """(classes, times) decay-corrected activities (Bq) of the classes."""
        return self.concentrations(t_s) * self.volumes_ml[:, None]
