"""Count-rate study: trues, scatters, randoms and NECR against activity (NEMA NU 2 style).

Each activity is emulated with truth; the singles go through the product's coincidence sorter
(the scanner's energy window, coincidence window, delayed window and sector cut); each prompt is
classified from the truth of its two singles: *true* (one decay, neither photon scattered in the
phantom), *scatter* (one decay, a photon scattered), *random* (two decays). NECR = T^2 / (T + S +
R) with R the random prompts (NECR_d uses the delayed-window estimate instead). The plot is drawn
with pyqtgraph (offscreen).

Each point is a task of its own (on a Dask cluster with ``client``) that keeps its row in the
``points`` folder, written once; a study started again measures only the points it lacks
(``petdaq count-rate`` removes the folder once the table is written).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import coincidence
from emulator import phantoms
from emulator.engine import simulate
from hw.scanner import Scanner
from infra import cluster
from infra.atomic import replacing
from infra.errors import UserError, make_folder
from infra.progress import Progress

#: Default sweep (MBq), log-spaced.
DEFAULT_ACTIVITIES_MBQ = (5.0, 10.0, 20.0, 40.0, 70.0, 100.0, 150.0, 200.0, 300.0, 450.0, 650.0,
                          1000.0)
COLUMNS = ("activity_mbq", "duration_s", "singles_cps", "prompts_cps", "trues_cps",
           "scatters_cps", "randoms_cps", "delayeds_cps", "necr_cps", "necr_delayed_cps",
           "scatter_fraction", "dead_time_loss")


def classify(singles: np.ndarray, truth: np.ndarray, coinc: np.ndarray, n_crystals: int
             ) -> tuple[int, int, int]:
    """(trues, scatters, randoms) among ``coinc`` (prompts), from the truth of their singles
    (found by time and crystal among ``singles``, which ``truth`` is aligned with)."""
    keys = singles["t"].astype(np.int64) * n_crystals + singles["crystal"]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]

    def index(t: np.ndarray, crystal: np.ndarray) -> np.ndarray:
        k = t.astype(np.int64) * n_crystals + crystal
        i = np.minimum(np.searchsorted(sorted_keys, k), sorted_keys.size - 1)
        if not np.array_equal(sorted_keys[i], k):
            raise ValueError("a coincidence's single is not among the singles")
        return order[i]

    a = index(coinc["t"], coinc["crystal_a"])
    b = index(coinc["t"] + coinc["dt"], coinc["crystal_b"])
    same = truth["decay"][a] == truth["decay"][b]
    scattered = (truth["scatters"][a] > 0) | (truth["scatters"][b] > 0)
    return int((same & ~scattered).sum()), int((same & scattered).sum()), int((~same).sum())


@dataclass
class CountRate:
    """The study's table, one row per activity."""

    scanner: str
    phantom: str
    nuclide: str
    settings: dict[str, Any]
    rows: list[dict[str, float]] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return np.array([r[name] for r in self.rows])

    def peak(self) -> dict[str, float]:
        """The row of the highest NECR."""
        return max(self.rows, key=lambda r: r["necr_cps"])


@dataclass(frozen=True)
class Point:
    """One activity of the study: how long it is emulated, with which seed."""

    activity_mbq: float
    duration_s: float
    seed: int


def measure(scanner: Scanner, activity_mbq: float, duration_s: float, *,
            phantom: str = "nu2-scatter", nuclide: str = "F-18", seed: int = 0,
            threads: int | None = None) -> dict[str, float]:
    """One point of the study (rates in counts per second)."""
    sim = simulate(scanner, phantom, nuclide, activity_mbq, duration_s, seed=seed, truth=True,
                   threads=threads)
    acq = scanner.acquisition
    coinc = coincidence.sort(sim.singles, scanner=scanner, delay_ps=acq["delay_ps"])
    prompts = coinc[coinc["delayed"] == 0]
    t, s, r = classify(sim.singles, sim.truth, prompts, scanner.n_crystals)
    d = int(np.count_nonzero(coinc["delayed"]))
    p = prompts.size
    c = sim.counters
    return {
        "activity_mbq": activity_mbq, "duration_s": duration_s,
        "singles_cps": sim.raw.size / duration_s, "prompts_cps": p / duration_s,
        "trues_cps": t / duration_s, "scatters_cps": s / duration_s,
        "randoms_cps": r / duration_s, "delayeds_cps": d / duration_s,
        "necr_cps": t * t / p / duration_s if p else 0.0,
        "necr_delayed_cps": t * t / (t + s + d) / duration_s if t + s + d else 0.0,
        "scatter_fraction": s / (t + s) if t + s else 0.0,
        "dead_time_loss": c["dead_time_losses"] / max(1, c["deposits"] - c["deposits_rejected"]),
    }


def plan(activities_mbq: Sequence[float] | None = None, duration_s: float | None = None,
         decays: float = 3e6, seed: int = 0) -> list[Point]:
    """The study's points: ``activities_mbq`` (default :data:`DEFAULT_ACTIVITIES_MBQ`) in
    increasing order, each ``duration_s`` long or ``decays / activity``, seeded in turn."""
    activities = list(activities_mbq or DEFAULT_ACTIVITIES_MBQ)
    if not activities or min(activities) <= 0:
        raise UserError(f"count-rate activities must be > 0 MBq, got {activities}")
    if duration_s is not None and not duration_s > 0:
        raise UserError(f"count-rate duration must be > 0 s, got {duration_s}")
    return [Point(a, duration_s if duration_s is not None else decays / (a * 1e6), seed + k)
            for k, a in enumerate(sorted(activities))]


def point_path(scanner: Scanner, point: Point, phantom: str, nuclide: str, points: Path
               ) -> Path:
    """Where ``points`` keeps a point's row, named for its work."""
    key = cluster.result_key(scanner.digest, phantoms.identity(phantom), nuclide, point)
    return points / f"point-{point.activity_mbq:g}MBq-{key}.json"


def measure_point(scanner: Scanner, point: Point, phantom: str, nuclide: str,
                  points: Path | None) -> dict[str, float]:
    """A point's row: read from ``points`` when an earlier run of the same work left it there,
    else measured (with the threads of the worker it runs on) and kept there."""
    path = None
    if points is not None:
        path = point_path(scanner, point, phantom, nuclide, points)
        if path.is_file():
            return json.loads(path.read_text())
    row = measure(scanner, point.activity_mbq, point.duration_s, phantom=phantom,
                  nuclide=nuclide, seed=point.seed, threads=cluster.worker_threads())
    if path is not None:
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(row) + "\n")
    return row


def study(scanner: Scanner, activities_mbq: Sequence[float] | None = None,
          duration_s: float | None = None, *, phantom: str = "nu2-scatter",
          nuclide: str = "F-18", decays: float = 3e6, seed: int = 0,
          progress: Progress | None = None, points: str | Path | None = None,
          client: object | None = None) -> CountRate:
    """Sweep ``activities_mbq``; each point lasts ``duration_s``, or ``decays / activity``.
    ``points``: a folder that keeps each point's row (a study started again reuses them);
    ``client``: a ``distributed.Client`` whose workers measure the points."""
    todo = plan(activities_mbq, duration_s, decays, seed)
    acq = scanner.acquisition
    result = CountRate(scanner.name, phantom, nuclide, {
        "energy_window_kev": list(acq["energy_window_kev"]),
        "coincidence_window_ps": acq["coincidence_window_ps"], "delay_ps": acq["delay_ps"],
        "min_sector_difference": acq["min_sector_difference"], "policy": "takeAllGoods"})
    folder = make_folder(points) if points is not None else None
    if client is not None:
        shared = client.scatter(scanner, broadcast=True, hash=False)
        result.rows = cluster.run_all(client, measure_point,
                                      [(shared, p, phantom, nuclide, folder) for p in todo],
                                      label="count-rate", unit="points", describe=_described)
        return result
    for k, point in enumerate(todo):
        result.rows.append(measure_point(scanner, point, phantom, nuclide, folder))
        if progress is not None:
            progress.update(k + 1, _described(result.rows[-1]))
    if progress is not None:
        progress.close(len(todo))
    return result


def _described(row: dict[str, float]) -> str:
    return f"{row['activity_mbq']:g} MBq: NECR {row['necr_cps'] / 1e3:.1f} kcps"


def save(result: CountRate, folder: str | Path) -> tuple[Path, Path]:
    """Write ``count_rate.csv`` and ``count_rate.png`` into ``folder``."""
    folder = make_folder(folder)
    csv_path = folder / "count_rate.csv"
    with replacing(csv_path) as tmp, tmp.open("w", newline="") as fh:
        fh.write(f"# {result.scanner}, {result.phantom}, {result.nuclide}, "
                 f"{result.settings}\n")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: f"{row[k]:.6g}" for k in COLUMNS})
    png_path = folder / "count_rate.png"
    plot(result, png_path)
    return csv_path, png_path


def plot(result: CountRate, path: Path) -> None:
    """Count rates against activity as a PNG: trues, scatters, randoms and prompts (log-log) and
    the NECR (linear, with its peak marked)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    import pyqtgraph.exporters

    app = pg.mkQApp()
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    win = pg.GraphicsLayoutWidget()
    win.resize(1400, 600)
    a = result.column("activity_mbq")
    title = f"{result.scanner}, {result.phantom} ({result.nuclide})"
    rates = win.addPlot(title=f"count rates: {title}")
    rates.setLogMode(x=True, y=True)
    necr = win.addPlot(title="noise-equivalent count rate")
    for ax, y, corner in ((rates, "rate (kcps)", (10, 10)), (necr, "NECR (kcps)", (-10, -10))):
        ax.addLegend(offset=corner)
        ax.showGrid(x=True, y=True, alpha=0.3)
        ax.setLabel("bottom", "activity (MBq)")
        ax.setLabel("left", y)
    decades = [v * 10.0**e for e in range(-1, 5) for v in (1, 2, 5)]
    shown = [v for v in decades if a.min() / 1.5 <= v <= a.max() * 1.5]
    rates.getAxis("bottom").setTicks([[(math.log10(v), f"{v:g}") for v in shown], []])
    for name, colour in (("prompts_cps", "m"), ("trues_cps", "b"), ("scatters_cps", "g"),
                         ("randoms_cps", "r")):
        ax_y = np.maximum(result.column(name) / 1e3, 1e-3)
        rates.plot(a, ax_y, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                   symbolBrush=colour, name=name.replace("_cps", ""))
    necr.plot(a, result.column("necr_cps") / 1e3, pen=pg.mkPen("k", width=2), symbol="o",
              symbolSize=6, symbolBrush="k", name="NECR = T^2 / (T + S + R)")
    peak = result.peak()
    necr.plot([peak["activity_mbq"]], [peak["necr_cps"] / 1e3], pen=None, symbol="star",
              symbolSize=16, symbolBrush="r",
              name=f"peak {peak['necr_cps'] / 1e3:.1f} kcps at {peak['activity_mbq']:g} MBq")
    win.show()                                   # lays the plots out (offscreen platform)
    app.processEvents()
    exporter = pyqtgraph.exporters.ImageExporter(win.scene())
    exporter.parameters()["width"] = 1400
    exporter.export(str(path))
    win.close()
