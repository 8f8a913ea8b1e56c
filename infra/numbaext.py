"""numba without the third-party extensions it would load at its first compile or cache load.

numba imports every installed ``numba_extensions`` entry point the first time a process compiles
or loads a kernel: awkward's (installed for uproot, the ROOT file reader) imports all of awkward,
about 0.1-0.3 s of every command's start. The product's kernels use no extension type, so
:func:`skip` marks the extensions as loaded before any kernel runs.
"""

from __future__ import annotations

from numba.core import entrypoints


def skip() -> None:
    """Never load the installed numba extensions in this process."""
    entrypoints._already_initialized = True
