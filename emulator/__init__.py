"""The detector emulator: physics from phantom to singles to the digitizers' frames.

``simulate(...)`` runs a whole acquisition in memory; ``Emulator(...).run(...)`` streams it chunk
by chunk. ``phantoms`` and ``nuclides`` hold what can be put in the scanner.
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
from emulator import phantoms
from emulator.engine import Chunk, Emulator, Simulation, calibrated, simulate
from emulator.records import COUNTERS, TRUTH_DTYPE
from hw import nuclides

__all__ = ["COUNTERS", "TRUTH_DTYPE", "Chunk", "Emulator", "Simulation", "calibrated",
           "nuclides", "phantoms", "simulate"]
