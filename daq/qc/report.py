"""A QC's report: ``qc.json`` in the run directory, the printed table of what was flagged and
what to do, the crystals' map (PNG) and the history line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from daq.qc.checks import Verdict
from daq.qc.figures import Figures
from hw.scanner import Scanner
from infra.atomic import replacing

#: The crystals' map colours a crystal's singles rate over its baseline's from blue (this low)
#: through white (1) to red (as high); black: dead.
MAP_RANGE = 0.3
#: Pixels a crystal takes in the map, across and along.
MAP_PIXELS = 3
#: The crystals' rate ratios beside the map, in the QC's run directory.
RATIO_FILE = "qc_ratio.npy"
#: QCs in the console's trend.
TREND_QCS = 60


def write_json(run_path: Path, verdict: Verdict, facts: dict[str, Any]) -> Path:
    """``RUN/qc.json``: ``result``, ``findings`` and how the QC was made (``facts``)."""
    path = run_path / "qc.json"
    with replacing(path) as tmp:
        tmp.write_text(json.dumps({**verdict.to_json(), **facts}, indent=1) + "\n")
    return path


def table(verdict: Verdict) -> list[str]:
    """The flagged findings, one line each with what to do, worst first."""
    order = {"FAIL": 0, "WARN": 1, "PASS": 2}
    flagged = sorted(verdict.flagged, key=lambda f: (order[f.status], f.component))
    if not flagged:
        return ["  nothing flagged"]
    width = max(len(f.component) for f in flagged)
    return [f"  {f.status}  {f.component:<{width}}  {f.check}: {f.value:.4g} "
            f"({f.tolerance}): {f.action}" for f in flagged]


def crystal_map(now: Figures, base: Figures, scanner: Scanner, path: Path) -> Path:
    """A PNG of every crystal's singles rate over its baseline's (:func:`crystal_picture`), and
    the ratios themselves beside it (``qc_ratio.npy``, for the console's QC tab)."""
    from recon.outputs.png import write_png

    ratio = (now.crystal_cps / np.maximum(base.crystal_cps, 1e-9)).astype(np.float32)
    grid = ratio.reshape(scanner.n_rings, scanner.crystals_per_ring)
    with replacing(path.with_name(RATIO_FILE)) as tmp, tmp.open("wb") as fh:
        np.save(fh, grid)
    return write_png(path, crystal_picture(grid))


def crystal_picture(grid: np.ndarray) -> np.ndarray:
    """[row, column, RGB] uint8 of the crystals' rate ratios [ring, crystal around the ring]:
    blue low, white 1, red high (:data:`MAP_RANGE`), black dead."""
    x = np.clip((grid - 1.0) / MAP_RANGE, -1.0, 1.0)
    rgb = np.empty((*grid.shape, 3))
    rgb[..., 0] = np.where(x < 0, 1 + x, 1.0)
    rgb[..., 1] = 1 - np.abs(x)
    rgb[..., 2] = np.where(x > 0, 1 - x, 1.0)
    rgb[grid < 0.05] = 0.0
    return np.repeat(np.repeat((rgb * 255).astype(np.uint8), MAP_PIXELS, 0), MAP_PIXELS, 1)


def console_message(scanner: str, entries: list[dict[str, Any]], most: int = TREND_QCS
                    ) -> dict[str, Any] | None:
    """The QC tab's message (:func:`daq.messages.qc_message`) of a scanner's history: the
    latest QC, its run's crystal map when the run is still there, the trend of the last
    ``most``."""
    from daq.messages import qc_message

    if not entries:
        return None
    last = entries[-1]
    ratio = Path(str(last.get("run", ""))) / RATIO_FILE
    picture = crystal_picture(np.load(ratio)) if ratio.is_file() else None
    recent = entries[-most:]

    def column(key: str, pick) -> list[Any]:
        return [pick(v) if (v := [x for x in e.get(key) or [] if x is not None]) else None
                for e in recent]

    trend = {"created_utc": column("created_utc", str), "result": column("result", str),
             "module_rate_min": column("module_rate", min),
             "module_rate_max": column("module_rate", max),
             "gain_min": column("module_gain", min), "gain_max": column("module_gain", max),
             "board_worst_ps": column("board_offset_ps", lambda b: max(b, key=abs))}
    return qc_message(scanner=scanner, result=str(last.get("result")),
                      created_utc=str(last.get("created_utc")),
                      flagged=list(last.get("flagged", [])), picture=picture, trend=trend,
                      fail_bands=last.get("fail_bands") or fail_bands())


def fail_bands(tolerances: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """The FAIL bands the QC tab draws about 1 (the modules' rate and gain): those of the
    tolerances a QC was judged with (None: the default file's)."""
    from daq.qc.checks import load_tolerances

    module = (tolerances or load_tolerances())["module"]
    return {"module_rate": module["rate_fail"], "gain": module["gain_fail"]}


def scanner_boards(verdict: Verdict) -> int:
    """How many boards a verdict checked."""
    return sum(f.component.startswith("board ") for f in verdict.findings)


def history_entry(now: Figures, base: Figures, verdict: Verdict, run: str,
                  tolerances: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """One line of the scanner's QC history: the result, each module's and board's figures
    (the trends a single day does not show) and the FAIL bands of the ``tolerances`` it was
    judged with (None: the default file's)."""
    by = {(f.component, f.check): f.value for f in verdict.findings}
    modules = now.module_spectra.shape[0]
    return {"created_utc": now.created_utc, "run": run, "result": verdict.result,
            "seconds": now.seconds, "flagged": [f"{f.component}: {f.check}"
                                                 for f in verdict.flagged],
            "module_rate": [_num(by[(f"module {m}", "singles rate")], 5)
                            for m in range(modules)],
            "module_gain": [_num(by[(f"module {m}", "gain")], 5) for m in range(modules)],
            "module_resolution": [_num(by[(f"module {m}", "energy resolution")], 4)
                                  for m in range(modules)],
            "board_offset_ps": [_num(by[(f"board {b}", "time offset (ps)")], 1)
                                for b in range(scanner_boards(verdict))],
            "intrinsic_cps": _num(now.intrinsic_cps, 1),
            "module_sensitivity": [_num(v, 5) if (v := by.get(
                (f"module {m}", "sensitivity (intrinsic coincidences)"))) is not None else None
                for m in range(modules)],
            "fail_bands": fail_bands(tolerances)}


def _num(value: float, digits: int) -> float | None:
    """``value`` rounded, or None when it could not be had (not finite)."""
    return round(float(value), digits) if np.isfinite(value) else None
