"""The few lines a command prints about the run it made, and the end of a run sorted from other
digitizers' records."""

from __future__ import annotations

from daq.control import runcontrol
from daq.dicomnet import atstop
from hw.scanner import Scanner
from runstore.rundir import RunDir


def finish_records_run(run: RunDir, scanner: Scanner, result: dict, recon: bool,
                       at_stop: bool = False) -> int:
    """The end of a run sorted from another digitizer's records (imported, ABCD, replayed):
    the final image (with ``recon``, when there are prompts) and the summary. ``at_stop`` (a
    live acquisition): its DICOM objects sent as dicom.toml's ``[send] at_stop`` says."""
    success = run.stop is not None and not run.stop.failed
    if recon and result["counts"]["prompts"]:
        runcontrol.final_image(run, scanner, dicom=at_stop and atstop.wanted(success))
    if at_stop:
        atstop.send_at_stop(run.path, success)
    print_summary(run)
    return 0


def print_summary(run: RunDir) -> None:
    """A few lines about a run: what, how long, how many, what was lost, where the image is."""
    start, stop = run.start, run.stop
    counts = stop.counts if stop else {}
    elapsed = (stop.elapsed_s if stop else None) or 0
    print(f"run      {run.path}")
    print(f"scanner  {start.scanner if start else '?'}   "
          f"started {start.time_utc if start else '?'}")
    print(f"stopped  {stop.time_utc if stop else 'never (use petdaq recover)'}   " + (
        f"{stop.exit_status.value}: {stop.reason}" if stop else ""))
    study = start.settings.get("study") if start else None
    if study:
        print("study    " + ", ".join(f"{k} {v}" for k, v in study.items()))
    singles = counts.get("singles", 0)
    rate = f" ({singles / elapsed / 1e6:.2f} M singles/s)" if elapsed else ""
    print(f"counts   {singles} singles{rate}, {counts.get('prompts', 0)} prompts, "
          f"{counts.get('delayeds', 0)} delayeds, {counts.get('frames', 0)} frames, "
          f"journal {counts.get('journal_bytes', counts.get('bytes', 0)) / 1e6:.1f} MB")
    lost = stop.lost if stop else {}
    print("losses   " + ("not known: the run never stopped" if stop is None else
                         ", ".join(f"{k} {v}" for k, v in lost.items()) if lost else "none"))
    images = run.read().get("images")
    if images:
        print(f"image    {', '.join(images['files'])}")
        if start and start.calibration.get("method") == "nominal":
            what = "prompts" if counts.get("prompts") else "counts"
            print(f"note     energy gains not calibrated (petdaq calibrate): {what} fall out of "
                  "the energy window and the image reads low (docs/limitations.md)")
