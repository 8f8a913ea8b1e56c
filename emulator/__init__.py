"""The detector emulator: physics from phantom to singles to the digitizers' frames.

``simulate(...)`` runs a whole acquisition in memory; ``Emulator(...).run(...)`` streams it chunk
by chunk. ``phantoms`` and ``nuclides`` hold what can be put in the scanner. The rooms:
:mod:`emulator.phantoms` (objects, tracer kinetics), :mod:`emulator.physics` (decays, photon
transport), :mod:`emulator.detector` (crystals, Lu-176, electronics), :mod:`emulator.outputs` (the
boards' frames, packers, sinks, truth file); the engine, its workers and the numba helpers here.
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
from emulator import phantoms
from emulator.engine import Chunk, Emulator, Simulation, calibrated, simulate
from emulator.records import COUNTERS, TRUTH_DTYPE
from hw import nuclides

__all__ = ["COUNTERS", "TRUTH_DTYPE", "Chunk", "Emulator", "Simulation", "calibrated",
           "nuclides", "phantoms", "simulate"]
