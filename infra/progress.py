"""A progress line for long jobs: units done, rate, elapsed and remaining time, at most a few
updates a second.

On a terminal the line is rewritten in place; otherwise (logs, CI) one line is printed per update.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Report ``done`` of ``total`` units (``total`` may be None) with a rate in units/s."""

    def __init__(self, label: str, total: float | None = None, unit: str = "events",
                 stream: TextIO | None = None, interval_s: float = 0.5,
                 enabled: bool = True) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s, self.enabled = interval_s, enabled
        self.start = time.monotonic()
        self._last = 0.0
        self._first: tuple[float, float] | None = None
        """(time, done) of the first update with something done: the rate is taken from there,
        so that a long set-up before the first unit does not slow the estimate."""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: float, extra: str = "", force: bool = False) -> None:
        """Show progress if the last update is older than the interval (or ``force``)."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.interval_s):
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self._first is None and done > 0:
            self._first = (now, done)
        elif self._first is not None and now > self._first[0] and done > self._first[1]:
            rate = (done - self._first[1]) / (now - self._first[0])
        of = f"/{_si(self.total)}" if self.total else ""
        # slow units (a reconstruction's subsets) read as seconds each, not "0.0 .../s"
        speed = (f"{_si(rate)} {self.unit}/s" if rate >= 1.0 or rate <= 0
                 else f"{1.0 / rate:.1f} s each")
        left = (f", about {(self.total - done) / rate:.0f} s left"
                if self.total and 0 < done < self.total and rate > 0 else "")
        text = (f"{self.label}: {_si(done)}{of} {self.unit}, {speed}, "
                f"{elapsed:.1f} s elapsed{left}{('  ' + extra) if extra else ''}")
        if self._tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, done: float, extra: str = "") -> None:
        """Print the final line."""
        self.update(done, extra, force=True)
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
