"""The scanner as hardware: geometry, detector response, event layouts, digitizer wire protocol.

``hw`` imports nothing of the product but :mod:`infra`, whose import points numba's disk cache
at a directory of this version of the source (:mod:`infra.numbacache`); every package with
kernels imports ``hw`` first.
"""

import infra  # noqa: F401  (first: it configures numba's disk cache)
from hw.dtypes import COINC_DTYPE, RAW_DTYPE, SINGLE_DTYPE
from hw.scanner import SPEED_OF_LIGHT_MM_PER_PS, Scanner, builtin_scanners, load_scanner
from infra.errors import ScannerError, UserError

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
