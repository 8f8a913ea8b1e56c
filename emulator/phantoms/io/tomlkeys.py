"""Typed access to a phantom file's TOML tables: every error one line naming the file and the key."""

from __future__ import annotations

import math
from typing import Any

from infra.errors import UserError

_MISSING = object()


class Keys:
    """A TOML table of the phantom file ``origin``, its keys read typed and checked."""

    def __init__(self, data: dict[str, Any], origin: str, where: str) -> None:
        self.data, self.origin, self.where = data, origin, where

    def fail(self, problem: str) -> UserError:
        return UserError(f"phantom file {self.origin}: {self.where}: {problem}")

    def only(self, *allowed: str) -> Keys:
        """Refuse a key not in ``allowed`` (a misspelt key is never silently ignored)."""
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise self.fail(f"unknown key '{unknown[0]}' (known: {', '.join(allowed)})")
        return self

    def has(self, key: str) -> bool:
        return key in self.data

    def _given(self, key: str, default: Any) -> tuple[Any, bool]:
        """(the key's value or ``default``, whether the file gave it); missing without a
        default: an error."""
        if key in self.data:
            return self.data[key], True
        if default is _MISSING:
            raise self.fail(f"'{key}' is missing")
        return default, False

    def text(self, key: str, choices: tuple[str, ...] | None = None, default: Any = _MISSING
             ) -> Any:
        value, given = self._given(key, default)
        if not given:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{key}' must be a text, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(f"'{key}' must be one of {', '.join(choices)}, got '{value}'")
        return value

    def number(self, key: str, default: Any = _MISSING, low: float | None = None,
               high: float | None = None, above: float | None = None) -> Any:
        value, given = self._given(key, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise self.fail(f"'{key}' must be a number, got {value!r}")
        bad = ((low is not None and value < low) or (high is not None and value > high)
               or (above is not None and value <= above))
        if bad:
            bounds = (f"> {above:g}" if above is not None else
                      f"from {low:g} to {high:g}" if high is not None else f">= {low:g}")
            raise self.fail(f"'{key}' must be {bounds}, got {value:g}")
        return float(value)

    def vector(self, key: str, n: int = 3, default: Any = _MISSING, positive: bool = False
               ) -> Any:
        value, given = self._given(key, default)
        if not given:
            return value
        ok = (isinstance(value, list) and len(value) == n and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value))
        if not ok or (positive and min(value) <= 0):
            what = f"{n} {'positive ' if positive else ''}numbers"
            raise self.fail(f"'{key}' must be {what}, got {value!r}")
        return tuple(float(v) for v in value)

    def table(self, key: str, where: str | None = None) -> Keys | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(f"'{key}' must be a table")
        return Keys(value, self.origin, where or f"[{key}]")

    def tables(self, key: str) -> list[Keys]:
        """An array of tables (``[[key]]``)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(f"'{key}' must be an array of tables ([[{key}]])")
        return [Keys(v, self.origin, f"[[{key}]] #{i + 1}") for i, v in enumerate(value)]
