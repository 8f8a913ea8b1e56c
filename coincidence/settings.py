"""Coincidence-sorting settings: resolved against the scanner's defaults and checked once.

Every bad value raises :class:`infra.errors.UserError` with one line naming it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hw.scanner import Scanner
from infra.errors import UserError

#: Multiple-coincidence policies (GATE's names), in the order of their kernel codes.
POLICIES = (
    "takeAllGoods",
    "takeWinnerOfGoods",
    "takeWinnerIfIsGood",
    "takeWinnerIfAllAreGoods",
    "killAll",
    "killAllIfMultipleGoods",
)

#: Window-opening modes.
MODES = ("single-window", "multi-window")

#: The largest window (ps) whose time differences fit ``COINC_DTYPE.dt`` (int32).
MAX_WINDOW_PS = 2**31 - 1


@dataclass(frozen=True)
class Settings:
    """Concrete, checked sorter settings (times in integer ps, energies in keV).

    ``delay_ps`` is None when no delayed window is searched; ``max_ring_difference`` is None when
    there is no axial cut. :meth:`as_dict` is what a list-mode header should record.
    """

    window_ps: int
    energy_window_kev: tuple[float, float]
    policy: str
    delay_ps: int | None
    min_sector_difference: int
    max_ring_difference: int | None
    mode: str

    @property
    def policy_code(self) -> int:
        return POLICIES.index(self.policy)

    @property
    def multi_window(self) -> bool:
        return self.mode == "multi-window"

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), e.g. for a run's metadata."""
        d = asdict(self)
        d["energy_window_kev"] = list(self.energy_window_kev)
        return d


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)
        raise UserError(f"{name} must be an integer number, got {value!r}")
    return int(value)


def resolve(
    scanner: Scanner,
    *,
    window_ps: int | None = None,
    energy_window_kev: tuple[float, float] | None = None,
    policy: str = "takeAllGoods",
    delay_ps: int | None = None,
    min_sector_difference: int | None = None,
    max_ring_difference: int | None = None,
    mode: str = "single-window",
) -> Settings:
    """Check the settings; window, energy window and minimum sector difference default to
    ``scanner.acquisition``. ``delay_ps=None`` means no delayed window (the scanner's usual delay
    is ``scanner.acquisition["delay_ps"]``)."""
    if not isinstance(scanner, Scanner):
        raise UserError(f"scanner must be a hw.Scanner (hw.load_scanner(name)), got {scanner!r}")
    if scanner.kind != "pet":
        raise UserError(f"scanner '{scanner.name}' is a {scanner.kind.upper()} scanner: "
                        "coincidence sorting needs a PET scanner (SPECT: coincidence.spect)")
    acq = scanner.acquisition
    window = _integer("window_ps", acq["coincidence_window_ps"] if window_ps is None else window_ps)
    if not 0 < window <= MAX_WINDOW_PS:
        raise UserError(f"window_ps must be in 1..{MAX_WINDOW_PS} ps, got {window}")
    ew = acq["energy_window_kev"] if energy_window_kev is None else energy_window_kev
    try:
        lo, hi = (float(v) for v in ew)
    except (TypeError, ValueError):
        raise UserError(f"energy_window_kev must be (low, high) in keV, got {ew!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserError(f"energy_window_kev must be (low, high) keV with low < high, got {ew!r}")
    if policy not in POLICIES:
        raise UserError(f"unknown policy '{policy}': valid policies are {', '.join(POLICIES)}")
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}': valid modes are {', '.join(MODES)}")
    delay = None if delay_ps is None else _integer("delay_ps", delay_ps)
    if delay is not None and not window <= delay <= 2**62:
        raise UserError(f"delay_ps must be at least the window ({window} ps), got {delay}")
    msd = _integer("min_sector_difference",
                   acq["min_sector_difference"] if min_sector_difference is None
                   else min_sector_difference)
    if not 0 <= msd <= scanner.n_modules // 2:
        raise UserError(f"min_sector_difference must be in 0..{scanner.n_modules // 2} for "
                        f"{scanner.n_modules} sectors, got {msd}")
    mrd = None if max_ring_difference is None else _integer("max_ring_difference",
                                                            max_ring_difference)
    if mrd is not None and mrd < 0:
        raise UserError(f"max_ring_difference must be >= 0 (or None), got {mrd}")
    return Settings(window, (lo, hi), policy, delay, msd, mrd, mode)
