"""The scanner as hardware: geometry, detector response, event layouts, digitizer wire protocol.

``hw`` imports nothing else of the product. Importing it points numba's disk cache at a directory
of this version of the source (:mod:`hw.numbacache`); every package with kernels imports ``hw``
first.
"""

from hw import numbacache

numbacache.configure()

# ruff: noqa: E402  (the cache is configured before any kernel is defined)
from hw.dtypes import COINC_DTYPE, RAW_DTYPE, SINGLE_DTYPE
from hw.errors import ScannerError, UserError
from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner, builtin_scanners, load_scanner

__all__ = [
    "COINC_DTYPE",
    "RAW_DTYPE",
    "SINGLE_DTYPE",
    "SPEED_OF_LIGHT_MM_PER_PS",
    "Scanner",
    "ScannerError",
    "UserError",
    "builtin_scanners",
    "load_scanner",
]
