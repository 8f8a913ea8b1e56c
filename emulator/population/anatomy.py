"""A virtual patient before it is drawn on voxels: its regions, their uptake in each scan, its truth."""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.phantoms.model import Region
from emulator.population.heart import Defect, Ventricle


@dataclass(frozen=True)
class Anatomy:
    """Regions in painting order (their density set, activity that of the first scan), each
    scan's activities by region (name -> concentration; a region missing inherits), the heart
    and its defect where there is one, and what was worked out from the drawn parameters."""

    name: str
    description: str
    body_part: str
    parts: tuple[Region, ...]
    scans: dict[str, dict[str, float]]
    """scan (the phantom file it becomes, e.g. ``phantom``, ``rest``) -> region -> uptake."""
    derived: dict[str, float | str] = field(default_factory=dict)
    ventricle: Ventricle | None = None
    defect: Defect | None = None
    defect_scans: tuple[str, ...] = ()
    """The scans the defect shows in (stress alone: reversible; stress and rest: fixed)."""
    scan_words: dict[str, str] = field(default_factory=dict)
    """Each scan's description."""
