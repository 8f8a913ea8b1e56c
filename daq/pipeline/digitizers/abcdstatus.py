"""ABCD's status messages (a ``status_abcd`` topic, a space and JSON, on its status PUB socket):
the digitizer's own per-channel rates (Hz) and counts, read tolerantly, never evaluated."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STATUS_TOPIC = b"status_abcd"


@dataclass(frozen=True)
class AbcdStatus:
    """One status message: the digitizer's rate (Hz) and count per channel, and when it came
    (``time.monotonic()``, s)."""

    received_s: float
    channel_hz: dict[int, float] = field(default_factory=dict)
    channel_counts: dict[int, float] = field(default_factory=dict)

    @property
    def total_hz(self) -> float:
        """The digitizer's rate summed over its channels (Hz)."""
        return float(sum(self.channel_hz.values()))


def parse_status(message: bytes, received_s: float) -> AbcdStatus:
    """The status in ``message`` (``acquisition.rates`` and ``counts``: lists of ``{channel,
    rate | counts}`` objects or of plain numbers, index = channel; what is missing is left out).
    Raises ValueError when it is not a ``status_abcd`` topic, a space and a JSON object."""
    topic, space, body = message.partition(b" ")
    if not space or not topic.startswith(STATUS_TOPIC):
        raise ValueError(f"not an ABCD status message: {topic[:40]!r}")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8 are ValueErrors
        raise ValueError(f"ABCD status is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("ABCD status is not a JSON object")
    acquisition = doc.get("acquisition")
    rates = acquisition.get("rates") if isinstance(acquisition, dict) else None
    return AbcdStatus(received_s, per_channel(rates, "rate"), per_channel(doc.get("counts"),
                                                                          "counts"))


def per_channel(entries: Any, key: str) -> dict[int, float]:
    """{channel: value} of a list of ``{"channel": c, key: value}`` objects or of plain numbers
    (the index is the channel); entries that are neither are left out."""
    if not isinstance(entries, list):
        return {}
    out: dict[int, float] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            channel, value = entry.get("channel"), entry.get(key)
        else:
            channel, value = i, entry
        if _number(channel) and _number(value):
            out[int(channel)] = float(value)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")
