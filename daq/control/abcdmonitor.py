"""The monitor documents of an ABCD acquisition: our rates beside each digitizer's own (the rate
ABCD's status messages report)."""

from __future__ import annotations

import time
from typing import Any

from daq import messages
from daq.control.monitor import RateMeter, necr
from daq.pipeline.digitizers.abcdlive import LinkCounters


class AbcdMonitor:
    """Monitor documents (:func:`daq.messages.monitor_message`) read from the counters of a
    running :func:`daq.pipeline.digitizers.abcdlive.acquire`; a board is a link, its ``singles_cps`` the
    records/s it received, ``digitizer_cps`` ABCD's latest status rate (Hz, summed over
    channels) and ``status_age_s`` how old that status is."""

    def __init__(self, counters: LinkCounters, run: str, scanner: str,
                 duration_s: float | None) -> None:
        self.counters, self.run, self.scanner, self.duration_s = counters, run, scanner, duration_s
        self._meter = RateMeter()

    def snapshot(self) -> dict[str, Any]:
        """The monitor document of this moment."""
        c, now = self.counters, time.monotonic()
        sorted_ = dict(c.importer)
        boards = range(len(c.links))
        rates = self._meter.rates({
            **{k: float(sorted_.get(k, 0)) for k in ("singles", "prompts", "delayeds")},
            **{f"b{b}": float(c.link_records.get(b, 0)) for b in boards}})
        losses = {"bad_channel": sorted_.get("bad_channel", 0),
                  "late_events": sorted_.get("late_events", 0), "bad_messages": c.bad_messages}
        lost = ", ".join(f"{k} {v}" for k, v in losses.items() if v)
        return messages.monitor_message(
            run=self.run, state=c.state, scanner=self.scanner, duration_s=self.duration_s,
            elapsed_s=now - c.started_s if c.started_s is not None else 0.0,
            rates={"singles": rates["singles"], "prompts": rates["prompts"],
                   "delayeds": rates["delayeds"],
                   "necr": necr(rates["prompts"], rates["delayeds"])},
            boards=[self._board(b, rates[f"b{b}"], now) for b in boards],
            totals=self._totals(sorted_), losses=losses,
            message=f"LOSSES: {lost}" if lost else "")

    def _board(self, board: int, records_cps: float, now: float) -> dict[str, Any]:
        entry: dict[str, Any] = {"board": board, "singles_cps": records_cps}
        status = self.counters.statuses.get(board)
        if status is not None:
            entry.update(digitizer_cps=status.total_hz, status_age_s=now - status.received_s)
        return entry

    def _totals(self, sorted_: dict[str, int]) -> dict[str, int]:
        c = self.counters
        return {**{k: sorted_.get(k, 0) for k in ("records", "singles", "prompts", "delayeds")},
                "messages": c.event_messages, "waveform_messages": c.waveform_messages,
                "status_messages": c.status_messages,
                "bad_status_messages": c.bad_status_messages}
