"""The throughput of every stage and of the whole chain, in one table (``petdaq bench``).

The data are one emulated acquisition of the default scanner (bedside-brain, NEMA NU 2 scatter
phantom, F-18) at about 20 Mcps singles, the density a compact brain scanner sees. Each stage is
timed on whole chunks after its kernels are compiled (warm-up outside the timed region); the
figure is the best of a few repeats (the machine is shared: the best is the least disturbed).
Baselines measured in the same run (a memory copy, ``np.argsort``) give ratios that do not depend
on the machine's load. The end-to-end figure is a real chain: the emulator in a child process
replays the acquisition's frames to ZeroMQ as fast as it can, the DAQ journals, decodes, gates
(calibration, histograms, energy window), merges and sorts them; it counts only if nothing was
lost (frames sent == frames journaled, sequence gaps 0). Below the table, the chain's measured
CPU split: CPU seconds of every DAQ thread (and of the parts of its loop), of the sender, of the
whole machine, and what limited it.

``--quick`` (~20 s) and ``--full`` (several minutes) change the amount of data.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZES = {"quick": 0.05, "default": 0.15, "full": 0.5}
"""Seconds of 20 Mcps acquisition emulated per mode."""

CHAIN_SECONDS = {"quick": 5.0, "default": 8.0, "full": 30.0}
"""Seconds the end-to-end chain runs per mode (``quick``: CI's, :data:`daq.perf.costper.CHAIN_S`)."""

ACTIVITY_MBQ = 40.0
"""NU 2 scatter phantom activity giving about 20 Mcps singles in bedside-brain."""

PEAK_NECR_CPS = 91e6
"""Singles rate of bedside-brain at its peak NECR (NU 2 scatter phantom, 150 MBq:
docs/count_rate.csv)."""


#: The camera whose shipped learned mu-map model is timed.
LEARNED_CAMERA = "spect-general"


@dataclass
class StageResult:
    """One line of the table."""

    stage: str
    events_per_s: float
    events: int
    seconds: float
    anchor: str = ""
    chain: bool = False
    """Part of the live chain (a candidate bottleneck)."""


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time (s) of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict[str, Any]:
    """CPU model and core count of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


class Bench:
    """Prepare the data once, then time each stage on it."""

    def __init__(self, mode: str = "default", repeats: int = 3) -> None:
        import emulator
        from hw import load_scanner

        self.mode, self.repeats = mode, repeats
        self.scanner = load_scanner("bedside-brain")
        self.duration_s = SIZES[mode]
        self._emulate = lambda: emulator.simulate(
            self.scanner, "nu2-scatter", "F-18", ACTIVITY_MBQ, self.duration_s, seed=7)
        self._emulate_warm = lambda: emulator.simulate(
            self.scanner, "nu2-scatter", "F-18", ACTIVITY_MBQ, 0.002, seed=8)
        self.results: list[StageResult] = []

    def add(self, stage: str, n: int, seconds: float, anchor: str = "", chain: bool = False
            ) -> None:
        self.results.append(StageResult(stage, n / seconds, n, seconds, anchor, chain))

    def run(self, progress: Callable[[str], None] = lambda s: None) -> list[StageResult]:
        """Every stage, in the order of the chain."""
        from daq.pipeline.process.calibration import Calibration
        from hw import wire

        s = self.scanner
        progress("emulator")
        self._emulate_warm()
        t0 = time.perf_counter()
        sim = self._emulate()
        self.add("emulator, full physics (singles)", sim.raw.size, time.perf_counter() - t0,
                 "scales with cores: petdaq bench --scaling")
        self.sim = sim
        self._phantom_files()
        boards = sim.raw_per_board
        self.boards = boards

        progress("wire")
        frames = [wire.encode(b, board=k, first_seq=0, scanner=s) for k, b in enumerate(boards)]
        n = sim.raw.size
        self.add("wire encode", n, best_time(
            lambda: [wire.encode(b, board=k, first_seq=0, scanner=s)
                     for k, b in enumerate(boards)], self.repeats), "target >= 30 M/s")
        self.add("wire decode", n, best_time(
            lambda: [wire.Decoder(s).feed(f) for f in frames], self.repeats),
            "target >= 30 M/s", chain=True)
        self.add("memory copy of the frames (baseline)", n, best_time(
            lambda: [bytes(memoryview(f)) for f in frames], self.repeats))

        progress("merge")
        frames_in_order = arrival_order(boards)
        self.add("time merge of 4 boards (watermark merger)", n, best_time(
            lambda: merge_frames(frames_in_order, len(boards), collect=False), self.repeats),
            chain=True)
        interleaved = np.concatenate([f for _b, f in frames_in_order])
        self.add("np.argsort stable of the same (baseline)", n, best_time(
            lambda: np.argsort(interleaved["t"], kind="stable"), self.repeats))

        progress("calibration")
        cal = Calibration.nominal(s)
        self.add("energy calibration", n, best_time(lambda: cal.apply(sim.raw), self.repeats),
                 chain=True)
        self.singles = cal.apply(sim.raw)
        self._sorter()
        self._import()
        self._recon()
        return self.results

    def _phantom_files(self) -> None:
        """The NEMA image-quality phantom emulated from its shapes and from 2 mm voxels (its
        voxel file's, :func:`emulator.phantoms.rasterize.voxelized`): a voxel phantom's cost."""
        import emulator
        from emulator.phantoms.rasterize import voxelized

        shapes = emulator.phantoms.get("nema-iq", self.scanner)
        voxels = voxelized(shapes, 2.0)
        for name, phantom in (("shapes", shapes), ("2 mm voxels", voxels)):
            emulator.simulate(self.scanner, phantom, "F-18", 20.0, 0.002, seed=8)

            def emulate(p=phantom) -> int:
                return emulator.simulate(self.scanner, p, "F-18", 20.0, self.duration_s,
                                         seed=7).raw.size

            n = emulate()
            self.add(f"emulator, NEMA IQ phantom from {name} (singles)", n,
                     best_time(emulate, 1),
                     "voxels: at most 2x the shapes' time" if name != "shapes" else "")

    def _sorter(self) -> None:
        import coincidence
        from daq.perf.costper import numpy_sorter_ns

        s, singles = self.scanner, self.singles
        acq = s.acquisition
        kw = {"scanner": s, "window_ps": acq["coincidence_window_ps"],
              "energy_window_kev": acq["energy_window_kev"],
              "min_sector_difference": acq["min_sector_difference"]}
        coincidence.sort(singles[:1000], delay_ps=acq["delay_ps"], **kw)
        self.coinc = coincidence.sort(singles, delay_ps=acq["delay_ps"], **kw)
        self.add("coincidence sort, takeAllGoods + delayed", singles.size, best_time(
            lambda: coincidence.sort(singles, delay_ps=acq["delay_ps"], **kw), self.repeats),
            "EXPLORER ~2.5 M/s per thread, PETsys ~15 M/s", chain=True)
        self.add("NumPy sorter, same semantics (baseline)", singles.size,
                 numpy_sorter_ns(s, self.sim.raw) * singles.size / 1e9)

    def _import(self) -> None:
        import tempfile

        from daq.perf.importbench import baseline, import_file, write_petsys

        with tempfile.TemporaryDirectory(prefix="petdaq-bench-") as work:
            path = Path(work) / "singles.ldat"
            n = write_petsys(self.singles, path)
            import_file(self.scanner, path, Path(work) / "warm.h5")
            self.add("petdaq import of a PETsys singles file", n, best_time(
                lambda: import_file(self.scanner, path, Path(work) / "lm.h5"), self.repeats),
                "target >= 20 M/s on 2 cores")
            self.add("np.fromfile + stable np.argsort of it (baseline)", n, best_time(
                lambda: baseline(path), self.repeats))

    def _recon(self) -> None:
        import recon

        prompts = self.coinc[self.coinc["delayed"] == 0]
        live = recon.LiveRecon(self.scanner)
        live.add(self.coinc)
        live.update()
        self.add("LM-OSEM update (TOF, randoms, all events)", prompts.size,
                 best_time(live.update, self.repeats))
        for tof in (False, True):
            proj = recon.Projector(self.scanner, recon.default_grid(self.scanner), tof=tof)
            ones = np.ones(proj.grid.shape, np.float32)
            proj.forward(ones, prompts[:100])
            t = best_time(lambda p=proj, o=ones: p.back(p.forward(o, prompts), prompts),
                          self.repeats)
            self.add(f"projection fwd+back, {'TOF' if tof else 'non-TOF'}", prompts.size, t,
                     "parallelproj ~0.1-0.3 M LOR/s on 2 cores")
        self._learned_map()

    def _learned_map(self) -> None:
        """The learned SPECT mu-map drawn for one scan's volume (its voxels), and the model's
        size."""
        import recon
        from hw import load_scanner
        from recon.spect import learnedmap

        model = learnedmap.model_for(LEARNED_CAMERA)
        grid = recon.default_grid(load_scanner(LEARNED_CAMERA))
        counts = np.random.default_rng(7).gamma(2.0, 1.0, grid.shape).astype(np.float32)
        image = grid.image(counts, "counts")
        learnedmap.predict(model, image, model.energy_kev)
        t = best_time(lambda: learnedmap.predict(model, image, model.energy_kev), self.repeats)
        size_mb = model.path.stat().st_size / 1e6
        self.add(f"learned SPECT mu-map, one scan ({LEARNED_CAMERA}, voxels)", counts.size, t,
                 f"{t:.2f} s a scan, model {size_mb:.2f} MB (targets <= 2 s, <= 20 MB)")

    def end_to_end(self, seconds: float) -> StageResult:
        """The emulator (child process, frame replay) -> ZeroMQ -> DAQ chain, zero loss; its
        CPU split (per thread and per part, :mod:`daq.pipeline.cpu`) is in ``self.e2e["cpu"]``,
        its cost per single against the baselines (:mod:`daq.perf.costper`) in ``self.cost``."""
        from daq.perf import costper

        self.cost, result = costper.measure(self.scanner, self.sim, seconds)
        self.add("DAQ processing thread, its serial work alone", result["singles"],
                 max(self.cost.serial_ns, 1e-3) * result["singles"] / 1e9,
                 f"{self.cost.serial_ns:.1f} ns per single (target <= 4 ns on 2 cores)")
        res = StageResult(
            f"END TO END, zero loss ({result['note']})", result["singles_per_s"],
            result["singles"], result["seconds"],
            f"scanner: {PEAK_NECR_CPS / 1e6:.0f} Mcps at its peak NECR", False)
        self.results.append(res)
        self.e2e = result
        return res


def arrival_order(boards: list[np.ndarray], frame: int = 16384) -> list[tuple[int, np.ndarray]]:
    """The boards' streams cut in messages of ``frame`` events (what a receiver reads at once:
    64 wire frames), (board, message) in the order they arrive (by their last event)."""
    frames = [(b, events[k:k + frame]) for b, events in enumerate(boards)
              for k in range(0, events.size, frame)]
    frames.sort(key=lambda bf: int(bf[1]["t"][-1]))
    return frames


def merge_frames(frames: list[tuple[int, np.ndarray]], n_boards: int, batch: int = 4,
                 collect: bool = True) -> np.ndarray | int:
    """Push frames through a :class:`daq.pipeline.process.merge.TimeMerger` in batches, as the processor does
    (``release``: the merged events in the merger's work buffers). Returns the merged events
    (``collect``: a copy of each release) or just how many (the processor's path: no copy)."""
    from daq.pipeline.process.merge import TimeMerger, as_raw

    m = TimeMerger(n_boards)
    out: list[np.ndarray] = []
    n = 0
    for i in range(0, len(frames) + batch, batch):
        for board, f in frames[i:i + batch]:
            m.push(f)
            m.advance(board, int(f["t"][-1]))
        fields = m.release(final=i >= len(frames))
        n += fields[0].size
        if collect:
            out.append(as_raw(fields))
    return np.concatenate(out) if collect else n


def format_table(results: list[StageResult], info: dict[str, Any]) -> str:
    """The table ``petdaq bench`` prints."""
    lines = [f"petdaq bench -- {info['date']}, {info['cpu']}, {info['cores']} cores, "
             f"Python {info['python']}",
             f"{'stage':52s} {'events/s':>12s}  {'events':>10s}  published anchor / target"]
    for r in results:
        lines.append(f"{r.stage:52s} {r.events_per_s / 1e6:10.2f} M  {r.events:10d}  {r.anchor}")
    chain = [r for r in results if r.chain]
    if chain:
        slowest = min(chain, key=lambda r: r.events_per_s)
        lines.append(f"slowest stage of the chain timed alone: {slowest.stage} "
                     f"({slowest.events_per_s / 1e6:.1f} M events/s; the chain's own bottleneck "
                     "is under its CPU split)")
    return "\n".join(lines)


def say_of(as_json: bool) -> Callable[[str], None]:
    """Progress on stderr ("... stage"), none with JSON output."""
    return (lambda s: None) if as_json else (lambda s: print(f"... {s}", file=sys.stderr))


def stages_report(mode: str, as_json: bool) -> int:
    """``petdaq bench``: every stage and the end-to-end chain with its CPU split; ``mode`` is
    ``quick``, ``default`` or ``full``."""
    say = say_of(as_json)
    bench = Bench(mode)
    bench.run(say)
    say("end to end")
    bench.end_to_end(CHAIN_SECONDS[mode])
    info = machine()
    if as_json:
        print(json.dumps({"machine": info, "mode": mode,
                          "stages": [asdict(r) for r in bench.results],
                          "end_to_end": bench.e2e,
                          "cost_per_single": {**asdict(bench.cost),
                                              "of_numpy_sorter": bench.cost.of_numpy_sorter,
                                              "of_frame_copy": bench.cost.of_frame_copy}},
                         indent=2))
    else:
        from daq.perf.e2e import format_cpu

        print(format_table(bench.results, info))
        print(f"\nCPU split of the end-to-end chain ({bench.e2e['singles']} singles, "
              f"{bench.e2e['seconds']:.1f} s):")
        print("\n".join(format_cpu(bench.e2e["cpu"], bench.e2e["singles"])))
        print(bench.cost.line())
    return 0


def scaling_report(mode: str, as_json: bool) -> int:
    """``--scaling``: the chain and the emulator on 1, 2, 4, ... cores (:mod:`daq.perf.scaling`)."""
    import emulator
    from daq.perf import scaling
    from hw import load_scanner
    from infra.pool import available_cores

    say = say_of(as_json)
    scanner = load_scanner("bedside-brain")
    say("recording")
    sim = emulator.simulate(scanner, "nu2-scatter", "F-18", ACTIVITY_MBQ, SIZES[mode], seed=7)
    points = scaling.measure(scanner, sim.raw_per_board, mode, available_cores(), say)
    _report("scaling", mode, as_json, points, scaling.format_table(points))
    return 0


def _report(what: str, mode: str, as_json: bool, rows: list[Any], table: list[str]) -> None:
    """Print ``petdaq bench --<what>``'s table (or its rows as JSON) with the machine."""
    info = machine()
    if as_json:
        print(json.dumps({"machine": info, "mode": mode, what: [asdict(r) for r in rows]},
                         indent=2))
    else:
        print(f"petdaq bench --{what} -- {info['cpu']}, {info['cores']} cores")
        print("\n".join(table))


def campaigns_report(mode: str, as_json: bool) -> int:
    """``--campaigns``: Dask campaigns on 1, 2, 4, ... local workers (:mod:`daq.perf.campaigns`)."""
    from daq.perf import campaigns, scaling
    from hw import load_scanner
    from infra.pool import available_cores

    times = campaigns.measure(load_scanner("bedside-brain"), mode,
                              scaling.thread_counts(available_cores()), say_of(as_json))
    _report("campaigns", mode, as_json, times, campaigns.format_table(times))
    return 0 if all(t.same for t in times) else 1
