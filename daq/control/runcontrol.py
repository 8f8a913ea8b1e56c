"""Run control: the start and the finish of a run, the same steps for the command line and the
service (an emulated scan, or boards already streaming), and the run's final image."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from daq.control.boardcommands import BoardCommander
from daq.control.emulated import EmulatorSettings, free_port_block, start_emulator
from daq.control.live import warm_up_live
from daq.control.monitor import MonitorPublisher
from daq.control.session import Session
from daq.control.spectimage import SpectImage
from daq.dicomnet import atstop
from daq.pipeline.links.sources import Source, open_source
from daq.pipeline.process import calibration
from daq.pipeline.process.processor import SortSettings
from daq.pipeline.warmup import warm_up
from hw.scanner import Scanner, load_scanner
from infra.errors import UserError
from infra.study import Study
from runstore.facts import run_facts
from runstore.rundir import RunDir


@dataclass
class LiveOptions:
    """What a run produces while it runs: the live image and the monitor stream."""

    recon: bool = True
    """A live image, and the final image at the stop (PET; SPECT: the final image only)."""
    recon_interval_s: float = 2.0
    tof: bool = True
    publisher: MonitorPublisher | None = None
    frames: str | None = None
    """A dynamic scan's frame schedule (``"6x10s,8x30s"``, the kinetic clock), reconstructed
    frame by frame as the scan runs (:mod:`daq.control.liveframes`); None: a static scan."""
    spheres: tuple[str, ...] = ()
    """The live curves' regions (``NAME:X,Y,Z,R`` mm); none: the emulated phantom's."""


@dataclass
class Run:
    """A run under way: its directory, its scanner, its session and (emulated) the emulator."""

    run: RunDir
    scanner: Scanner
    session: Session
    emulator: subprocess.Popen | None = None
    recon: bool = True
    emulator_error: str | None = None
    """The emulator's last line of error output when it failed (set by :func:`finish`)."""
    commander: BoardCommander | None = None
    """The DAQ's commands to the boards' firmware (``--firmware qemu``)."""


def start_emulated(out: Path, emu: EmulatorSettings, sort: SortSettings, live: LiveOptions,
                   threads: int | None = None, name: str | None = None,
                   study: Study | None = None,
                   say: Callable[[str], None] | None = None) -> Run:
    """Start the emulator as a child process and a session acquiring from it, in a new run
    directory under ``out``; the emulated scan and the study are recorded in the start
    document (a kinetic phantom's injection: its activity, at the scan's start). ``say``
    hears, once the settings are checked, that the kernels are getting ready."""
    from emulator import phantoms

    study = study or Study()
    scanner = load_scanner(emu.scanner)
    if scanner.kind == "spect":
        from daq.pipeline.process.projections import photopeaks_of, windows_of

        if not sort.photopeaks_kev:
            sort = replace(sort, photopeaks_kev=photopeaks_of(emu.nuclide))
        windows_of(scanner, sort.photopeaks_kev)  # overlapping windows: say so now
    phantom = phantoms.get(emu.phantom, scanner)
    if study.body_part is None and phantom.body_part:  # the exam a technologist would enter
        study = replace(study, body_part=phantom.body_part)
    kinetic = phantom.kinetics is not None
    if kinetic:
        study = _kinetic_injection(study, emu)
    if say is not None:
        say("emulator and DAQ getting ready (the first run after an install compiles their "
            "kernels: a minute or two)")
    commands = (f"tcp://127.0.0.1:{free_port_block(1)}" if emu.firmware == "qemu" else None)
    proc, endpoints = start_emulator(  # once its kernels and the DAQ's are compiled
        emu, scanner.n_boards, meanwhile=lambda: _warm_up(
            scanner, sort, live, calibration.current(scanner, emulated=True), threads,
            emu.duration_s), commands=commands)
    try:
        run = RunDir.create(out, name)
        session = _session(run, scanner, [open_source(e) for e in endpoints], sort, live,
                           settings={"emulator": emu.as_dict(), "study": study.to_json(),
                                     "scanner_file": scanner.source},
                           threads=threads, scan_duration_s=emu.duration_s, emulated=True)
        if kinetic and study.injection_time_utc is None:  # the emulator injects at its t = 0
            _record_injection_at_start(run)
    except BaseException:
        proc.terminate()
        raise
    r = Run(run, scanner, session.start(), proc, live.recon)
    if commands is not None:  # the boards' firmware: the DAQ starts and stops their run
        r.commander = BoardCommander(commands, r.session.acq, scanner.n_boards, emu.duration_s,
                                     scanner.digitizer.clock_period_ps)
    threading.Thread(target=_watch_emulator, args=(r,), name="emulator-watch",
                     daemon=True).start()
    return r


def _watch_emulator(r: Run) -> None:
    """End the run in an error as soon as its emulator exits with an error (killed, crashed)
    while the run acquires: its boards will send nothing more, not even their run stop."""
    while not r.session.acq.wait(0.2):
        code = r.emulator.poll()
        if code not in (None, 0):
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            r.session.acq.fail(f"the emulator {how} during the run")
            return


def _kinetic_injection(study: Study, emu: EmulatorSettings) -> Study:
    """The study of an emulated kinetic scan: its phantom is injected with ``activity_mbq`` at
    the scan's start, which a study may not contradict."""
    if study.injection_time_utc is not None or study.injected_mbq not in (None,
                                                                          emu.activity_mbq):
        raise UserError(f"phantom {emu.phantom} is injected with its --activity-mbq at the "
                        "scan's start: leave out --injected-mbq and --injection-time")
    return dataclasses.replace(study, injected_mbq=emu.activity_mbq)


def _record_injection_at_start(run: RunDir) -> None:
    start = run.start
    study = {**start.settings.get("study", {}), "injection_time_utc": start.time_utc}
    run.write_start(dataclasses.replace(start, settings={**start.settings, "study": study}))


def start_acquisition(out: Path, scanner: Scanner, sources: list[Source], sort: SortSettings,
                      live: LiveOptions, duration_s: float | None, threads: int | None = None,
                      name: str | None = None, study: Study | None = None) -> Run:
    """Start a session acquiring from boards (``sources``) in a new run directory; the study
    is recorded in the start document."""
    _warm_up(scanner, sort, live, calibration.current(scanner), threads, duration_s)
    run = RunDir.create(out, name)
    study = study or Study()
    session = _session(run, scanner, sources, sort, live, settings={"study": study.to_json()},
                       threads=threads, duration_s=duration_s)
    return Run(run, scanner, session.start(), None, live.recon)


def _warm_up(scanner: Scanner, sort: SortSettings, live: LiveOptions,
             cal: calibration.Calibration, threads: int | None, duration_s: float | None) -> None:
    """The DAQ's kernels and the live image's compiled (or loaded) before the boards stream."""
    coinc = warm_up(scanner, sort, cal, threads, scan_duration_s=duration_s)
    if live.recon and scanner.kind == "pet" and coinc.size:
        resolved = sort.resolved(scanner)
        warm_up_live(scanner, coinc, live.tof, resolved["window_ps"],
                     resolved["min_sector_difference"])


def _session(run: RunDir, scanner: Scanner, sources: list[Source], sort: SortSettings,
             live: LiveOptions, settings: dict, **kw) -> Session:
    """The run's session; its settings record the scanner's latest daily QC (``qc``: a scan
    started after a failed QC says so)."""
    from daq.qc.store import last_qc

    settings = {**settings, "qc": last_qc(scanner.name)}
    return Session(run, scanner, sources, sort=sort, publisher=live.publisher, settings=settings,
                   live_recon=live.recon, recon_interval_s=live.recon_interval_s, tof=live.tof,
                   frames=live.frames, spheres=live.spheres, **kw)


def finish(r: Run) -> int:
    """Wait for the run's acquisition to end (its duration, the end of the stream, a stop), then
    stop the emulator, close the session (losses, stop document) and reconstruct the final
    image. Returns the exit status: 1 when the run ended in an error, else 0."""
    r.session.acq.wait()
    if r.emulator is not None:
        if r.emulator.poll() is None:
            r.emulator.terminate()
        try:
            _, err = r.emulator.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # an emulator that ignores SIGTERM
            r.emulator.kill()
            _, err = r.emulator.communicate()
        if r.emulator.returncode not in (0, -15) and err and err.strip():
            r.emulator_error = last_words(err)
    stop = r.session.finish()
    if r.recon:
        final_image(r.run, r.scanner, r.session.publisher, dicom=atstop.wanted(not stop.failed))
    atstop.send_at_stop(r.run.path, not stop.failed)
    return 1 if stop.failed else 0


def last_words(stderr: str) -> str:
    """A failed emulator's error in one line: its last line, or for a crash the fault and the
    innermost frame of the thread that crashed (``faulthandler``'s report)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    fatal = next((i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")), None)
    if fatal is None:
        return lines[-1]
    frame = next((ln for ln in lines[fatal + 1:] if ln.startswith("File ")), None)
    return f"{lines[fatal]} ({frame})" if frame else lines[fatal]


def final_image(run: RunDir, scanner: Scanner, publisher: MonitorPublisher | None = None,
                dicom: bool = False) -> Path | None:
    """Reconstruct the run's list-mode data (SPECT: its projections,
    :func:`daq.control.spectimage.spect_image`, published on ``publisher`` with a cardiac scan's
    bull's-eye); NIfTI + PNG slices and MIP in RUN/images, with ``dicom`` a PET DICOM series in
    RUN/images/dicom (when the run is quantified; SPECT: the NM object RUN/images/image_nm.dcm).
    None when the run has no prompts (SPECT: no singles) to reconstruct."""
    import recon
    from recon.pet.runimage import reconstruct_run
    from runstore.listmode import read_listmode, read_singles_rates

    stop = run.stop
    counts = stop.counts if stop is not None else {}
    if scanner.kind == "spect":
        from daq.control.spectimage import spect_image

        if not counts.get("singles"):
            return None
        result = spect_image(run, scanner, dicom=dicom)
        if publisher is not None:
            _publish_spect(publisher, result, int(counts["singles"]))
        return run.images
    if not counts.get("prompts"):
        return None
    coinc, header = read_listmode(run.listmode)
    t0 = time.monotonic()
    facts = replace(run_facts(run), singles_rates=read_singles_rates(run.listmode))
    made = reconstruct_run(coinc, header, facts, scanner)  # Bq/mL, as petdaq recon
    image = made.image
    paths = recon.save_outputs(image, run.images / "image")
    if made.mu_map is not None and made.mu_map.image is not None:
        paths += recon.save_mu_map(image, made.mu_map.image, run.images)
    if dicom and made.quantified is not None:
        recon.write_dicom_pet(image, run.images / "dicom", *made.quantified)
        paths.append(run.images / "dicom")
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "seconds": round(time.monotonic() - t0, 2),
                       "normalization": image.meta.get("normalization", "none"),
                       "normalization_table": image.meta.get("normalization_table"),
                       "attenuation": image.meta.get("attenuation_method", "none")})
    return run.images


def _publish_spect(publisher: MonitorPublisher, result: SpectImage, singles: int) -> None:
    """The SPECT image at the stop, and a cardiac scan's bull's-eye, on the monitor stream
    (lasting: published again while the service is idle, until the next run)."""
    from daq import messages

    image = result.image
    publisher.send_lasting(messages.IMAGE_TOPIC, messages.image_message(
        image.array, voxel_mm=tuple(image.voxel_mm), origin_mm=tuple(image.origin_mm),
        events=singles, iteration=int(image.meta.get("iterations", 0))))
    reading = result.reading
    if reading is not None:
        from recon.spect.polarmap import render_bullseye

        publisher.send_lasting(messages.POLAR_TOPIC, messages.polar_map_message(
            percent=[float(v) for v in reading.polar.percent],
            picture=render_bullseye(reading.polar.percent),
            abnormal_segments=reading.abnormal_segments, summary=reading.summary(),
            apex_mm=[float(v) for v in reading.lv.apex_mm],
            base_mm=[float(v) for v in reading.lv.base_mm]))
