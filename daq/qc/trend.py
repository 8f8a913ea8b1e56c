"""The QC history as a picture (``petdaq qc --history``): each module figure's lowest and highest
module per QC, and the worst board's offset, between their WARN and FAIL bands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: (history key, how a QC's values reduce to the points drawn, the tolerance keys, the panel's
#: half height about its centre).
PANELS = (("module_rate", (min, max), ("module", "rate"), 0.12, 1.0),
          ("module_gain", (min, max), ("module", "gain"), 0.05, 1.0),
          ("module_resolution", (min, max), ("module", "resolution"), 0.25, 1.0),
          ("board_offset_ps", (lambda b: max(b, key=abs),), ("board", "offset"), 250.0, 0.0))
PANEL_PX, STEP_PX, MARGIN_PX = 120, 16, 10
COLOURS = {"point": (74, 163, 240), "fail_point": (255, 60, 60), "warn": (240, 181, 74),
           "fail": (190, 90, 80), "centre": (120, 120, 120), "background": (24, 26, 32)}


def picture(entries: list[dict[str, Any]], tolerances: dict[str, dict[str, float]]
            ) -> np.ndarray:
    """[row, column, RGB] uint8: a panel per figure, a column of points per QC."""
    width = max(400, 2 * MARGIN_PX + STEP_PX * len(entries))
    panels = [_panel(entries, tolerances, p, width) for p in PANELS]
    gap = np.zeros((4, width, 3), np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1])


def _panel(entries, tolerances, panel, width) -> np.ndarray:
    key, reduce, (table, name), half, centre = panel
    img = np.empty((PANEL_PX, width, 3), np.uint8)
    img[:] = COLOURS["background"]

    def row(value: float) -> int:
        y = (value - centre) / half
        return int(np.clip(round((0.5 - 0.5 * y) * (PANEL_PX - 1)), 0, PANEL_PX - 1))

    suffix = "_ps" if table == "board" else ""
    img[row(centre)] = COLOURS["centre"]
    for level in ("warn", "fail"):
        band = tolerances[table][f"{name}_{level}{suffix}"]
        for sign in (-1, 1):
            img[row(centre + sign * band), ::3] = COLOURS[level]
    for i, e in enumerate(entries):
        values = [v for v in e.get(key) or [] if v is not None]
        if not values:
            continue
        x = MARGIN_PX + STEP_PX * i
        colour = COLOURS["fail_point" if e.get("result") == "FAIL" else "point"]
        for f in reduce:
            y = row(float(f(values)))
            img[max(y - 2, 0):y + 3, x:x + 5] = colour
    return img


def write(entries: list[dict[str, Any]], tolerances: dict[str, dict[str, float]], path: Path
          ) -> Path:
    """The picture as a PNG."""
    from recon.outputs.png import write_png

    return write_png(path, picture(entries, tolerances))
