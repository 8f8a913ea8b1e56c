"""The emulator's numba settings in one place.

Kernels release the GIL (they run on the block threads), are cached on disk, and use numpy's
error model (a float division by zero gives inf, as the geometry code expects, instead of a
per-division check) and the fast-math flags that keep infinities and NaNs meaningful.
"""

from __future__ import annotations

import numba

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: The options of every kernel (and of the typed bodies that :func:`numba.extending.overload`
#: picks when a kernel compiles).
JIT_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": FASTMATH}

kernel = numba.njit(**JIT_OPTIONS)
"""Decorator of a kernel."""

inline = numba.njit(**JIT_OPTIONS, inline="always")
"""Decorator of a small helper, inlined into its callers by numba."""
