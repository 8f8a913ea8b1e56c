"""What a reconstruction needs to know of a run: its scanner, times, nuclide, phantom and study."""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.deadtime import RateTable
from infra.study import Study
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus


@dataclass(frozen=True)
class RunFacts:
    """What the reconstruction of a run needs to know of it (from its start and stop documents,
    :func:`runstore.rundir.run_facts`, and its list-mode file's singles rates; all None for a bare
    list-mode file)."""

    scanner: str = ""
    start_utc: str | None = None
    """ISO 8601 UTC time the acquisition started."""
    duration_s: float | None = None
    """Acquisition time (s): the stop document's elapsed time, else the planned duration."""
    nuclide: str | None = None
    activity_mbq: float | None = None
    """Activity at the start of the scan (MBq), an emulated scan's."""
    phantom: str | None = None
    """The emulated phantom's name (None: a run from real detectors)."""
    study: Study = field(default_factory=Study)
    """The patient and the injection (:class:`infra.study.Study`)."""
    singles_rates: RateTable | None = field(default=None, compare=False)
    """The singles per module and time bin of the run's list-mode file, for the dead-time
    correction (None: not kept, not corrected)."""
    kinetic_time_scale: float = 1.0
    """An emulated kinetic phantom's model minutes per minute of acquisition."""



def run_facts(run: RunDir) -> RunFacts:
    """What a reconstruction needs to know of a run, from its start and stop documents."""
    start, stop = run.start, run.stop
    if start is None:
        return RunFacts()
    # the data's own clock, else the wall clock (a run from boards reads them as they come)
    elapsed = stop.data_end_s or stop.elapsed_s if stop is not None else None
    emulated = (start.settings.get("emulator") or {}).get("duration_s")
    # an emulated scan's events span its emulated time however fast it was emulated (a --fast
    # SPECT scan ends long before its duration), or less when it was stopped early
    whole = stop is not None and stop.exit_status is ExitStatus.SUCCESS
    duration = (emulated if emulated and whole else
                min(emulated, elapsed) if emulated and elapsed else
                emulated or elapsed or start.scan_duration_s)
    activity = start.setting("activity_mbq")
    return RunFacts(scanner=start.scanner, start_utc=start.time_utc or None,
                    duration_s=float(duration) if duration else None,
                    nuclide=start.setting("nuclide"),
                    activity_mbq=float(activity) if activity else None,
                    phantom=start.setting("phantom"),
                    study=Study.from_json(start.settings.get("study")),
                    kinetic_time_scale=float(start.setting("kinetic_time_scale") or 1.0))
