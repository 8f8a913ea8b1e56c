"""The throughput of ``petdaq import`` on a PETsys singles file, against reading it with
``np.fromfile`` and ordering it with a stable ``np.argsort`` (the baseline of the same run).

``python -m daq.perf.importbench [--records N]`` writes N emulated singles (bedside-brain, NEMA
NU 2 scatter phantom at about 20 Mcps, the recording repeated later in time until N) as a PETsys
singles file, then times ``petdaq import --no-recon`` of it in a child process (read, channel map,
keV, time order, coincidence sort, list-mode written) and the baseline on the same file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from daq.pipeline.digitizers.importer import ImportSettings, file_records, sort_records
from daq.pipeline.process.processor import SortSettings
from hw import channelmap
from hw.formats import petsys
from hw.scanner import Scanner


def write_petsys(singles: np.ndarray, path: Path, records: int | None = None) -> int:
    """``singles`` (SINGLE_DTYPE, keV) as a PETsys singles file (channelID = crystal, energy in
    keV), repeated after themselves in time until ``records`` (default: once); returns the
    records written."""
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["energy"], rows["channel_id"] = singles["energy"], singles["crystal"]
    span_ps = int(singles["t"][-1]) + 1
    total = singles.size if records is None else int(records)
    with path.open("wb") as fh:
        written, k = 0, 0
        while written < total:
            rows["time"] = singles["t"] + k * span_ps
            part = rows[: total - written]
            part.tofile(fh)
            written, k = written + part.size, k + 1
    return total


def import_file(scanner: Scanner, path: Path, listmode: Path) -> dict:
    """What ``petdaq import`` does to the file past its run directory: records -> crystals
    (board 0, channelID = crystal) -> keV (1 a unit) -> time order -> sorter -> list-mode."""
    settings = ImportSettings("petsys", kev_per_unit=1.0)
    return sort_records(file_records([path], settings, scanner), settings, scanner,
                        channelmap.identity(scanner), SortSettings(), listmode, read_ahead=True)


def baseline(path: Path) -> int:
    """The file read with ``np.fromfile`` and put in order with a stable ``np.argsort``."""
    rows = np.fromfile(path, petsys.SINGLE)
    order = np.argsort(rows["time"], kind="stable")
    return int(order.size)


@dataclass(frozen=True)
class ImportTiming:
    """One ``petdaq import`` of a PETsys singles file, timed whole, and its baseline."""

    records: int
    import_s: float
    """Wall seconds of the command, Python's start included."""
    import_records_per_s: float
    baseline_s: float
    baseline_records_per_s: float
    ratio: float
    """Import over baseline, in records/s."""


def measure(scanner: Scanner, records: int, work: Path) -> ImportTiming:
    """Write ``records`` singles as PETsys, time ``petdaq import`` of them and the baseline."""
    import emulator

    sim = emulator.simulate(scanner, "nu2-scatter", "F-18", 40.0, 0.1, seed=7)
    path = work / "singles.ldat"
    n = write_petsys(sim.singles, path, records)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "petdaq", "import", str(path), "--format", "petsys",
                        "--scanner", scanner.source, "--kev-per-unit", "1", "--no-recon",
                        "--out", str(work), "--name", "imported"],
                       capture_output=True, text=True, check=False)
    import_s = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"petdaq import failed: {r.stderr.strip()}")
    t0 = time.perf_counter()
    baseline(path)
    baseline_s = time.perf_counter() - t0
    return ImportTiming(n, import_s, n / import_s, baseline_s, n / baseline_s,
                        baseline_s / import_s)


def main(argv: list[str] | None = None) -> int:
    from hw import load_scanner

    p = argparse.ArgumentParser(prog="python -m daq.perf.importbench", description=__doc__)
    p.add_argument("--records", type=float, default=50e6, help="singles in the file (50e6)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="petdaq-import-") as work:
        t = measure(load_scanner("bedside-brain"), int(args.records), Path(work))
    if args.json:
        print(json.dumps(asdict(t), indent=2))
    else:
        print(f"petdaq import of {t.records / 1e6:.0f} M PETsys singles: {t.import_s:.1f} s, "
              f"{t.import_records_per_s / 1e6:.1f} M records/s (Python's start included); "
              f"np.fromfile + stable np.argsort of the same file: {t.baseline_s:.1f} s, "
              f"{t.baseline_records_per_s / 1e6:.1f} M records/s; ratio {t.ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
