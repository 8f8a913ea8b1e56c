"""Phantoms: activity and attenuation of the object in the scanner.

``get(name, scanner)`` builds a built-in phantom sized to the scanner; ``names()`` lists them.
A :class:`Phantom` exposes its regions (``regions()``), maps of attenuation (``mu_map``) and
activity (``activity_map``), and packs itself for the emulator's kernels.
"""

from __future__ import annotations

from emulator.phantoms.library import BUILDERS
from emulator.phantoms.model import LineSource, Phantom, PointSource, Region
from emulator.phantoms.shapes import Shape, cylinder, ellipsoid, sphere
from hw.scanner import Scanner
from infra.errors import UserError

__all__ = ["BLANK", "LineSource", "Phantom", "PointSource", "Region", "Shape", "cylinder", "ellipsoid",
           "get", "is_blank", "names", "sphere"]


#: The blank phantom: nothing in the scanner, the crystals' own Lu-176 alone.
BLANK = "blank"


def is_blank(name: str) -> bool:
    """Whether ``name`` names the blank phantom (its activity is 0 whatever is asked)."""
    return str(name).strip().lower() == BLANK


def names() -> list[str]:
    """Names of the built-in phantoms."""
    return list(BUILDERS)


def get(name: str | Phantom, scanner: Scanner) -> Phantom:
    """The built-in phantom ``name`` sized to ``scanner`` (a :class:`Phantom` passes through)."""
    if isinstance(name, Phantom):
        return name
    builder = BUILDERS.get(str(name).strip().lower())
    if builder is None:
        raise UserError(f"unknown phantom '{name}': known phantoms are {', '.join(BUILDERS)}")
    return builder(scanner)
