"""Optional native libraries the kernels use where they are installed: ISA-L's zlib (``isal``).

:data:`isal_zlib` is the module (None without it); its shared library is loaded into LLVM's
symbol table, so that numba kernels call its C functions by name (``crc32_gzip_refl``) and stay
cacheable. :data:`FEATURES` names what was found: the numba cache is keyed by it
(:mod:`infra.numbacache`), as kernels compiled against a library need it when they are loaded.
"""

from __future__ import annotations

from types import ModuleType


def _isal() -> ModuleType | None:
    try:
        import llvmlite.binding
        from isal import isal_zlib
        llvmlite.binding.load_library_permanently(isal_zlib.__file__)
    except (ImportError, OSError, RuntimeError):
        return None
    return isal_zlib


isal_zlib = _isal()
FEATURES = "isal" if isal_zlib is not None else ""
