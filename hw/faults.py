"""Faults injected into an emulated scanner (``--faults FILE.toml``): dead and noisy channels, a
module's gain, efficiency or energy resolution, a board's time skew; the truth a daily QC must
find.

A module is a ``crystal_module`` sector around the ring, all its module rings. The faults are
part of the emulated unit's truth (:meth:`hw.scanner.Scanner.crystal_gains`,
``crystal_acceptance``, ``crystal_time_offset_ps``, ``noisy_channels``), never of its definition:
the scanner's digest and calibrations stay those of the healthy unit.

The file::

    [[dead]]
    crystal = 17
    [[noisy]]
    crystal = 300
    rate_cps = 5000.0
    [[gain]]
    module = 3
    factor = 0.97
    [[efficiency]]
    module = 5
    factor = 0.9
    [[resolution]]
    module = 7
    factor = 1.2
    [[skew]]
    board = 1
    ps = 200.0
    [[skew]]
    module = 6
    ps = 150.0
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.errors import UserError

#: Each kind of fault: (the key naming what is faulty, the key of its size, its bounds).
KINDS: dict[str, tuple[str, str | None, tuple[float, float]]] = {
    "dead": ("crystal", None, (0.0, 0.0)),
    "noisy": ("crystal", "rate_cps", (0.0, 1e7)),
    "gain": ("module", "factor", (0.2, 5.0)),
    "efficiency": ("module", "factor", (0.0, 1.0)),
    "resolution": ("module", "factor", (0.2, 5.0)),
    "skew": ("board", "ps", (-1e6, 1e6)),
}


@dataclass(frozen=True)
class Faults:
    """The faults of one emulated unit (empty: a healthy one)."""

    dead: tuple[int, ...] = ()
    noisy: tuple[tuple[int, float], ...] = ()
    """(crystal, noise triggers per second)."""
    gain: tuple[tuple[int, float], ...] = ()
    """(module, factor on its crystals' gains)."""
    efficiency: tuple[tuple[int, float], ...] = ()
    """(module, factor on its crystals' acceptance)."""
    resolution: tuple[tuple[int, float], ...] = ()
    """(module, factor on its crystals' energy resolution, FWHM)."""
    skew: tuple[tuple[int, float], ...] = ()
    """(board, ps added to its singles' times)."""
    module_skew: tuple[tuple[int, float], ...] = ()
    """(module, ps added to its singles' times): ``[[skew]]`` with ``module`` for ``board``."""

    def __bool__(self) -> bool:
        return any((self.dead, self.noisy, self.gain, self.efficiency, self.resolution,
                    self.skew, self.module_skew))

    def to_json(self) -> dict[str, Any]:
        """The faults as the run records them (``settings.emulator.faults``)."""
        return {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                for k, vs in asdict(self).items() if vs}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Faults:
        data = data or {}
        return cls(dead=tuple(int(c) for c in data.get("dead", ())),
                   **{k: tuple((int(a), float(b)) for a, b in data.get(k, ()))
                      for k in ("noisy", "gain", "efficiency", "resolution", "skew",
                                "module_skew")})


def load_faults(path: str | Path, counts: dict[str, int]) -> Faults:
    """The faults of a TOML file (see the module docstring); ``counts`` bounds the numbers
    (``crystal``, ``module``, ``board``: how many the scanner has). One-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--faults {path}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--faults {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise UserError(f"--faults {path}: unknown fault [[{unknown[0]}]] (known: "
                        f"{', '.join(KINDS)})")
    parsed = {kind: tuple(_entry(path, kind, e, counts) for e in _entries(path, kind, data)
                          if not (kind == "skew" and "module" in e))
              for kind in KINDS}
    module_skew = tuple(_entry(path, "skew", e, counts, "module")
                        for e in _entries(path, "skew", data) if "module" in e)
    return Faults(dead=tuple(e[0] for e in parsed["dead"]), module_skew=module_skew,
                  **{k: parsed[k] for k in ("noisy", "gain", "efficiency", "resolution",
                                            "skew")})


def _entries(path: Path, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    entries = data.get(kind, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UserError(f"--faults {path}: '{kind}' must be [[{kind}]] tables")
    return entries


def _entry(path: Path, kind: str, entry: dict[str, Any], counts: dict[str, int],
           what: str | None = None) -> tuple:
    default, size, (lo, hi) = KINDS[kind]
    what = what or default
    keys = {what} | ({size} if size else set())
    if set(entry) != keys:
        raise UserError(f"--faults {path}: [[{kind}]] takes {' and '.join(sorted(keys))}, got "
                        f"{', '.join(sorted(entry)) or 'nothing'}")
    number = entry[what]
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < counts[what]:
        raise UserError(f"--faults {path}: [[{kind}]] {what} = {number!r}: the scanner has "
                        f"{counts[what]} ({what}s 0 to {counts[what] - 1})")
    if size is None:
        return (number,)
    value = entry[size]
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise UserError(f"--faults {path}: [[{kind}]] {size} = {value!r} must be a number from "
                        f"{lo:g} to {hi:g}")
    return (number, float(value))
