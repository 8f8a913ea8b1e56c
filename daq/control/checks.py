"""Command-line and request values checked before anything is created: one clear error each
(:class:`infra.errors.UserError`, ``petdaq: error: ...`` and exit status 2)."""

from __future__ import annotations

import math
from typing import Any

from infra.errors import UserError


def positive(value: Any, option: str, unit: str = "") -> float:
    """``value`` as a finite number > 0 (``option`` and ``unit`` name it in the error)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not value > 0:
        raise UserError(f"{option} must be a finite number{' of ' + unit if unit else ''} > 0, "
                        f"got {value!r}")
    return float(value)


def optional_seconds(value: Any, option: str) -> float | None:
    """A duration in seconds (finite, > 0), or None (no limit)."""
    return None if value is None else positive(value, option, "seconds")


def tcp_port(value: Any, option: str) -> int:
    """A TCP port, 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UserError(f"{option} {value}: a TCP port is 1 to 65535")
    return value
