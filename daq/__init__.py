"""daq"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
