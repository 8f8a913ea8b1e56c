"""How the console writes numbers for the operator: units always shown, "-" for unknown."""

from __future__ import annotations

import time

MISSING = "-"


def si(value: float | None, unit: str, digits: int = 3) -> str:
    """``value`` with an SI prefix: si(1.234e6, "cps") -> "1.23 Mcps"; None -> "-"."""
    if value is None:
        return MISSING
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def count(value: float | None) -> str:
    """An event count with thousands separators: 1234567 -> "1 234 567"."""
    return MISSING if value is None else f"{int(value):,}".replace(",", "\u2009")


def size(n_bytes: float | None) -> str:
    """Bytes in decimal units (disk vendors' and df -H's): 1.5e9 -> "1.50 GB"."""
    if n_bytes is None:
        return MISSING
    for factor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n_bytes) >= factor:
            return f"{n_bytes / factor:.2f} {unit}"
    return f"{int(n_bytes)} B"


def clock(seconds: float | None) -> str:
    """A duration as h:mm:ss or m:ss: 75 -> "1:15"."""
    if seconds is None:
        return MISSING
    s = round(max(0.0, seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def wall(t: float) -> str:
    """Local wall-clock time HH:MM:SS of a time.time() value."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def leaf(path: str | None) -> str:
    """The last component of a run directory path: "/data/runs/run-1" -> "run-1"."""
    if not path:
        return MISSING
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or path
