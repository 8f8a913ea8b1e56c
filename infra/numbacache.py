"""numba's on-disk cache of compiled kernels, keyed floor by floor by the product's source.

numba checks a cached kernel against its own file only: a kernel that inlines a helper from
another module (the emulator's photon kernels inline the random numbers, the flight and the
ring) would keep its old machine code when only the helper changes, and then compute with the
old helper. A module uses only its own floor and those below it (``docs/architecture.md``;
``tests/test_import_graph.py`` holds it), so each floor's kernels are cached in a directory named
by a hash of the source of that floor and of every floor below it, and of the native libraries
the kernels link (:mod:`infra.accel`):
``$XDG_CACHE_HOME/bedside-pet/numba/<floor>-<hash>`` (``~/.cache`` when XDG_CACHE_HOME is unset),
a package's kernels in a folder named by the package (``recon.pet``), not by its absolute path:
another clone of the same source, anywhere, finds them compiled.
A change to the reconstruction compiles the reconstruction's and the DAQ's kernels again, not
the emulator's. Kernels outside the floors (a test's own) go under ``other-<hash of every
floor>``. Of each floor's older directories the newest :data:`KEEP_OLD` are kept. A
``NUMBA_CACHE_DIR`` set by the user is left as it is (and numba keys by the kernel's file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import numba
from numba.core import caching

from infra import accel

#: The packages whose source the kernels are compiled from: the floors, bottom to top.
PACKAGES = ("infra", "hw", "coincidence", "emulator", "runstore", "recon", "daq")
#: The product's root (the folder of the packages).
ROOT = Path(__file__).resolve().parent.parent
#: Cache directories of other source versions kept besides the current one, per floor.
KEEP_OLD = 2
#: numba's cache implementation, whose locators find a kernel's cache directory.
_IMPL = getattr(caching, "CacheImpl", None) or caching._CacheImpl


def floor_digests(root: Path) -> dict[str, str]:
    """Each floor of :data:`PACKAGES` under ``root``: a short hash of its Python files, of those
    of every floor below it and of the native libraries found (:data:`infra.accel.FEATURES`)."""
    h = hashlib.sha256(accel.FEATURES.encode())
    digests = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
        digests[package] = h.copy().hexdigest()[:16]
    return digests


def source_digest(root: Path) -> str:
    """A short hash of every Python file of :data:`PACKAGES` under ``root`` and of the native
    libraries found: the top floor's."""
    return floor_digests(root)[PACKAGES[-1]]


def floor_of(py_file: str | Path) -> str | None:
    """The floor (a package of :data:`PACKAGES`) a source file of the product belongs to."""
    try:
        parts = Path(py_file).resolve().relative_to(ROOT).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in PACKAGES else None


def package_of(py_file: str | Path) -> str:
    """The dotted package of a source file of the product (``recon.pet``): its kernels' folder in
    their floor's directory. numba's own name for it hashes the folder's absolute path, so that
    each clone of the source compiled every kernel again; the floor's directory is already keyed
    by the source, so its path inside the product is enough."""
    return ".".join(Path(py_file).resolve().parent.relative_to(ROOT).parts)


class FloorLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """numba's cache locator for the product's kernels: the directory of the kernel's floor."""

    dirs: ClassVar[dict[str, Path]] = {}

    def __init__(self, py_func, py_file: str, folder: Path) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(folder / package_of(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        folder = cls.dirs.get(floor_of(py_file) or "")
        if folder is None:
            return None
        locator = cls(py_func, py_file, folder)
        try:
            locator.ensure_cache_path()
        except OSError:
            return None
        return locator


def _base() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home) / "bedside-pet" / "numba"


def _folders(base: Path, digests: dict[str, str]) -> dict[str, Path]:
    """Each floor's cache directory under ``base``, and ``other`` for kernels outside them."""
    return {**{p: base / f"{p}-{d}" for p, d in digests.items()},
            "other": base / f"other-{digests[PACKAGES[-1]]}"}


def configure() -> str | None:
    """Point numba's cache for each floor's kernels at that floor's directory; returns their
    parent (None when the user chose a directory with NUMBA_CACHE_DIR)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    digests = floor_digests(ROOT)
    for base in (_base(), Path(tempfile.gettempdir()) / "bedside-pet-numba"):
        folders = _folders(base, digests)
        try:
            for folder in folders.values():
                folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if all(os.access(folder, os.W_OK) for folder in folders.values()):
            _prune(base, keep=set(folders.values()))
            FloorLocator.dirs = folders
            locators = _IMPL._locator_classes
            if FloorLocator not in locators:
                locators.insert(0, FloorLocator)
            numba.config.CACHE_DIR = str(folders["other"])
            return str(base)
    return None


def _prune(base: Path, keep: set[Path]) -> None:
    """Of each floor's directories of other source versions, remove all but the newest
    :data:`KEEP_OLD` (a directory of the whole source, named by its hash alone, is its own
    kind)."""
    kinds: dict[str, list[Path]] = {}
    for p in base.iterdir():
        if p.is_dir() and p not in keep:
            kinds.setdefault(p.name.rpartition("-")[0], []).append(p)
    for old in kinds.values():
        old.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for p in old[KEEP_OLD:]:
            shutil.rmtree(p, ignore_errors=True)
