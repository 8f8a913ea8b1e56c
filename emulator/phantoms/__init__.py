"""Phantoms: activity and attenuation of the object in the scanner.

``get(name, scanner)`` builds a built-in phantom sized to the scanner, or reads a phantom file
(``FILE.toml``, or a folder holding ``phantom.toml``: :mod:`emulator.phantoms.io.files`) and checks
that it fits the scanner's bore; ``names()`` lists the built-in ones.
A :class:`Phantom` exposes its regions (``regions()``), maps of attenuation (``mu_map``) and
activity (``activity_map``), and packs itself for the emulator's kernels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from emulator.phantoms.fit import check_fits
from emulator.phantoms.io import files
from emulator.phantoms.library import BUILDERS
from emulator.phantoms.model import LineSource, Phantom, PointSource, Region
from emulator.phantoms.shapes import Shape, cylinder, ellipsoid, sphere
from hw.scanner import Scanner
from infra.errors import UserError

__all__ = ["BLANK", "PHANTOM_FILE", "LineSource", "Phantom", "PointSource", "Region", "Shape",
           "cylinder", "ellipsoid", "file_path", "get", "identity", "is_blank", "is_file", "names", "read",
           "sphere"]


#: The blank phantom: nothing in the scanner, the crystals' own Lu-176 alone.
BLANK = "blank"
#: The phantom file a folder given as a phantom holds.
PHANTOM_FILE = "phantom.toml"
_READ: dict[str, tuple[tuple, Phantom]] = {}


def is_blank(name: str) -> bool:
    """Whether ``name`` names the blank phantom (its activity is 0 whatever is asked)."""
    return str(name).strip().lower() == BLANK


def names() -> list[str]:
    """Names of the built-in phantoms."""
    return list(BUILDERS)


def is_file(name: str | Path) -> bool:
    """Whether ``name`` names a phantom file (``.toml``) or a folder holding one, not a
    built-in phantom (a built-in name wins over a folder of that name here: ``./NAME`` for
    the folder)."""
    text = str(name).strip()
    return (text.lower().endswith(".toml") or "/" in text
            or (text.lower() not in BUILDERS and Path(text).is_dir()))


def file_path(name: str | Path) -> Path:
    """The phantom file ``name`` names (a folder: its ``phantom.toml``), made absolute."""
    path = Path(str(name).strip()).expanduser()
    return (path / PHANTOM_FILE if path.is_dir() else path).resolve()


def _stamp(path: Path) -> tuple:
    """What says a phantom file and its folder's files are unchanged: names, times, sizes."""
    if not path.is_file():
        return ()
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                 for p in sorted(path.parent.iterdir()) if p.is_file())


def identity(name: str | Path) -> str:
    """A key for work done on a phantom: a built-in one's name, or a file's path and a digest
    of its folder's files' names, times and sizes (a changed file is other work)."""
    if not is_file(name):
        return str(name).strip().lower()
    path = file_path(name)
    return f"{path}#{hashlib.sha256(repr(_stamp(path)).encode()).hexdigest()[:12]}"


def read(name: str | Path) -> Phantom:
    """The phantom of a file, read once while it and its folder's files stay unchanged."""
    path = file_path(name)
    stamp = _stamp(path)
    kept = _READ.get(str(path))
    if kept is not None and kept[0] == stamp:
        return kept[1]
    phantom = files.read(path)
    _READ[str(path)] = (stamp, phantom)
    return phantom


def get(name: str | Path | Phantom, scanner: Scanner) -> Phantom:
    """The built-in phantom ``name`` sized to ``scanner``, or the phantom of a file checked to
    fit its bore (a :class:`Phantom` passes through)."""
    if isinstance(name, Phantom):
        return name
    if is_file(name):
        return check_fits(read(name), scanner)
    builder = BUILDERS.get(str(name).strip().lower())
    if builder is None:
        raise UserError(f"unknown phantom '{name}': known phantoms are {', '.join(BUILDERS)}, "
                        "or a phantom file (FILE.toml)")
    return builder(scanner)
