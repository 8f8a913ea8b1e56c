"""``replay``, ``recover`` and ``calibrate`` of runs sorted from other digitizers' records
(imported files, ABCD links): from what the run kept, as it came."""

from __future__ import annotations

from pathlib import Path

from daq.pipeline.digitizers import energyunits, keptsource
from daq.pipeline.digitizers.importer import import_into, keep_file, keep_sources
from daq.pipeline.digitizers.keptsource import KeptSource
from daq.pipeline.process.processor import SortSettings
from hw.scanner import Scanner
from infra.errors import UserError
from infra.progress import Progress
from petdaq.summary import finish_records_run
from runstore.rundir import RunDir, utc_now


def recorded_sort(run: RunDir) -> SortSettings:
    """The sort settings a run's start document recorded."""
    recorded = run.start.sort if run.start else {}
    return SortSettings(**{k: v for k, v in recorded.items()
                           if k in SortSettings.__dataclass_fields__})


def replay(kept: KeptSource, scanner: Scanner, sort: SortSettings, out: RunDir,
           recon: bool) -> int:
    """Sort the run's kept records again into the new run ``out`` with ``sort``: ``out`` keeps
    them too (its files, map, journal) and replays alone."""
    files, named = keep_sources(out.path, kept.files, kept.map_file)
    chunks = None
    if kept.links is not None:  # a live ABCD run: the records its links sent, as they came
        keep_file(kept.run.journal, out.journal)
        chunks = kept.records(scanner, out.journal)
    progress = Progress(f"replay {kept.run.path.name}", unit="records")
    result = import_into(out, files, kept.settings, scanner, named, sort, progress.update,
                         {"replay_of": str(kept.run.path)}, chunks, kept.extra())
    progress.close(result["counts"]["records"])
    return finish_records_run(out, scanner, result, recon)


def recover(kept: KeptSource, scanner: Scanner, recon: bool) -> int:
    """A killed import or ABCD acquisition's coincidences and stop document, again from its
    kept records, with the sort settings it was started with."""
    progress = Progress(f"recover {kept.run.path.name}", unit="records")
    result = keptsource.recover(kept, scanner, recorded_sort(kept.run), progress.update)
    progress.close(result["counts"]["records"])
    return finish_records_run(kept.run, scanner, result, recon)


def calibrate(kept: KeptSource, scanner: Scanner, method: str, peak_kev: float,
              no_save: bool) -> int:
    """``petdaq calibrate RUN --method photopeak`` of an imported or ABCD run: keV per raw unit
    of each crystal, stored for the run's format."""
    if method != "photopeak":
        raise UserError(f"--method {method} is for our boards' runs: a run of "
                        f"{kept.settings.format} records takes photopeak or timing")
    fmt = kept.settings.format
    table, report = energyunits.derive(kept.spectra(scanner), scanner, fmt, peak_kev,
                                       created_utc=utc_now(), from_run=str(kept.run.path))
    k = table.kev_per_unit
    print(f"calibrated {report['calibrated']} of {report['crystals']} crystals ({fmt} records, "
          f"median {report['median_counts']:.0f} counts/crystal): photopeak at "
          f"{report['peak_unit']:.4g} raw units = {peak_kev:g} keV, keV per unit "
          f"{float(k.mean()):.4g} mean, spread {100 * float(k.std() / k.mean()):.1f} % RMS")
    if report["too_few_counts"]:
        print(f"warning: {report['too_few_counts']} crystals had too few counts: they take the "
              "median")
    if not no_save:
        print(f"stored {table.save()} (used by this scanner's {fmt} imports and replays "
              "without --kev-per-unit)")
    return 0


def source_of(path: str | Path) -> tuple[RunDir, KeptSource | None]:
    """A run and, for one of other digitizers' records, what it kept."""
    run = RunDir.open(path)
    return run, KeptSource.of(run)
