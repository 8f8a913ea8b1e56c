"""The scanner, gain table and journal of an existing run, as the commands over runs find them."""

from __future__ import annotations

from pathlib import Path

from daq.pipeline.links.journal import check_journal
from daq.pipeline.process import calibration
from hw.scanner import Scanner, builtin_scanners, load_scanner
from infra.errors import UserError
from runstore.rundir import RunDir


def run_scanner(run: RunDir) -> Scanner:
    """The scanner a run was taken with: a built-in by its name, else the definition file its
    start document names (a lab's own TOML)."""
    start = run.start
    name = start.scanner if start and start.scanner else "bedside-brain"
    own = start.setting("scanner_file") if start else None
    if own and name not in builtin_scanners() and Path(own).is_file():
        return load_scanner(own)
    return load_scanner(name)


def journal_run(path: str | Path, what: str) -> tuple[RunDir, Scanner]:
    """An existing run with a readable journal to ``what`` (replay, recover from), and its
    scanner."""
    run = RunDir.open(path)
    if not run.journal.is_file():
        raise UserError(f"{run.path} has no journal to {what}")
    check_journal(run.journal)
    return run, run_scanner(run)


def run_calibration(run: RunDir, scanner: Scanner) -> calibration.Calibration:
    """The gain table for a run's events (:func:`daq.pipeline.process.calibration.current`: an
    emulated run's boards were the emulator's, as its start document records)."""
    emulated = run.start is not None and bool(run.start.settings.get("emulator"))
    return calibration.current(scanner, emulated=emulated)


def scan_duration_s(run: RunDir) -> float | None:
    """A run's planned scan time (s), which a SPECT run's gantry views share; None if none."""
    start = run.start
    return start.scan_duration_s if start else None
