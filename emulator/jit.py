"""The emulator's numba settings in one place.

Kernels release the GIL (they run on the block threads), are cached on disk, and use numpy's
error model (a float division by zero gives inf, as the geometry code expects, instead of a
per-division check) and the fast-math flags that keep infinities and NaNs meaningful.
"""

from __future__ import annotations

import numba

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

kernel = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)
"""Decorator of a kernel."""

inline = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH,
                    inline="always")
"""Decorator of a small helper, inlined into its callers by numba."""
