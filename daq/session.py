"""A DAQ session: an acquisition with its live image and monitor stream, and the CLI around it.

``petdaq run`` starts the emulator as a child process and acquires from it; ``petdaq acquire``
acquires from real boards; both show a progress line, reconstruct the final image from the
list-mode file within seconds of the stop, and print a summary of the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from daq import calibration, messages
from daq.acquisition import Acquisition
from daq.cpu import CpuMeter
from daq.emulated import EmulatorSettings, start_emulator
from daq.live import LiveImage
from daq.monitor import MonitorLoop, MonitorPublisher, RateMeter, histogram_fields, necr
from daq.processor import ENERGY_HIST_KEV, SortSettings
from daq.rundir import RunDir
from daq.sources import Source, open_source
from hw.errors import UserError
from hw.pool import check_threads
from hw.progress import Progress
from hw.scanner import Scanner, load_scanner

LOW_DISK_BYTES = 1 << 30


class Session:
    """One acquisition plus its optional live reconstruction and monitor publisher."""

    def __init__(self, run: RunDir, scanner: Scanner, sources: list[Source], sort: SortSettings,
                 duration_s: float | None, settings: dict[str, Any],
                 publisher: MonitorPublisher | None = None, live_recon: bool = True,
                 recon_interval_s: float = 2.0, tof: bool = True,
                 scan_duration_s: float | None = None, threads: int | None = None) -> None:
        """``duration_s``: when the acquisition stops (None: at the end of the stream);
        ``scan_duration_s``: the planned scan time, for a SPECT gantry (``duration_s`` by
        default); ``threads``: the processing threads (None: every core)."""
        self.scanner, self.publisher = scanner, publisher
        self.cpu = CpuMeter()
        """The run's CPU split: acquisition threads, live image, monitor (:mod:`daq.cpu`)."""
        self.live = None
        if live_recon and scanner.kind == "pet":
            import recon

            resolved = sort.resolved(scanner)
            self.live = LiveImage(recon.LiveRecon(
                scanner, tof=tof, window_ps=resolved["window_ps"],
                min_sector_difference=resolved["min_sector_difference"]),
                recon_interval_s, on_image=self._publish_image, cpu=self.cpu)
        self.acq = Acquisition(run, scanner, sources, sort, calibration.current(scanner),
                               duration_s, settings,
                               on_coincidences=self.live.offer if self.live else None,
                               cpu=self.cpu, scan_duration_s=scan_duration_s, threads=threads)
        self._meter = RateMeter()

    def start(self) -> Session:
        self.acq.start()
        return self

    def finish(self) -> dict[str, Any]:
        """Wait for the acquisition to end, stop the live image and the monitor; the stop doc."""
        self.acq.wait()
        if self.live is not None:
            self.live.close()
        if self.publisher is not None:
            self.publisher.send(messages.MONITOR_TOPIC, self.snapshot())
        losses = self.acq.losses() | self._display_losses()
        return self.acq.run.update(stop=self.acq.run.read()["stop"] | {"losses": losses})["stop"]

    def _display_losses(self) -> dict[str, int]:
        return {"recon_dropped_events": self.live.dropped_events if self.live else 0}

    def _publish_image(self, image: Any, events: int, updates: int) -> None:
        if self.publisher is not None:
            self.publisher.send(messages.IMAGE_TOPIC, messages.image_message(
                image.array, voxel_mm=tuple(image.voxel_mm), origin_mm=tuple(image.origin_mm),
                events=events, iteration=updates))

    def snapshot(self) -> dict[str, Any]:
        """The monitor document of this moment."""
        acq, proc = self.acq, self.acq.processor
        c = proc.counters
        counts = acq.counts()
        per_board = {f"b{b}": float(v) for b, v in enumerate(c.singles_per_board)}
        rates = self._meter.rates({"singles": c.singles, "prompts": c.prompts,
                                   "delayeds": c.delayeds, **per_board})
        losses = acq.losses() | self._display_losses()
        free = acq.disk_free_bytes()
        warning = ""
        if any(losses.values()):
            warning = "LOSSES: " + ", ".join(f"{k} {v}" for k, v in losses.items() if v)
        if free < LOW_DISK_BYTES:
            warning = (warning + "; " if warning else "") + f"disk low: {free / 1e9:.2f} GB free"
        return messages.monitor_message(
            run=str(acq.run.path), state="running" if acq.running else "stopped",
            elapsed_s=acq.elapsed_s, duration_s=acq.duration_s, scanner=self.scanner.name,
            rates={"singles": rates["singles"], "prompts": rates["prompts"],
                   "delayeds": rates["delayeds"],
                   "necr": necr(rates["prompts"], rates["delayeds"])},
            boards=[{"board": b, "singles_cps": rates[f"b{b}"],
                     "watermark_s": float(proc.merger.watermark_ps[b]) * 1e-12}
                    for b in range(self.scanner.n_boards)],
            totals=counts, losses=losses,
            queues={"processor": acq.queue_fill(),
                    "recon": self.live.queue_fill() if self.live else 0.0},
            disk={"journal_bytes": counts["journal_bytes"], "free_bytes": free},
            energy_window_kev=list(proc.settings["energy_window_kev"]),
            message=warning,
            **histogram_fields(proc.hist.energy, ENERGY_HIST_KEV, proc.hist.dt,
                               proc.hist.dt_range_ps, proc.hist.hitmap, proc.hist.sinogram),
        )


# ---------------------------------------------------------------------------- CLI


def add_emulation_options(p: argparse.ArgumentParser) -> None:
    """Options that choose what ``petdaq run`` emulates."""
    d = EmulatorSettings()
    g = p.add_argument_group("emulated scan")
    g.add_argument("--scanner", default=d.scanner)
    g.add_argument("--phantom", default=d.phantom)
    g.add_argument("--nuclide", default=d.nuclide)
    g.add_argument("--activity-mbq", type=float, default=d.activity_mbq)
    g.add_argument("--duration", type=float, default=d.duration_s, help="seconds")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--fast", action="store_true",
                   help="emulate as fast as possible instead of in real time")


def add_live_options(p: argparse.ArgumentParser) -> None:
    """Options of the live products: image and monitor stream."""
    g = p.add_argument_group("live image and monitor")
    g.add_argument("--no-recon", dest="recon", action="store_false",
                   help="no live or final image")
    g.add_argument("--recon-interval", type=float, default=2.0, help="seconds between updates")
    g.add_argument("--no-tof", dest="tof", action="store_false")
    g.add_argument("--monitor-port", type=int, default=None,
                   help="publish the monitor stream on tcp://*:PORT (e.g. 5556) for a console")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: the processing threads (default: every core)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads that decode, merge, calibrate and sort (default: every core; "
                        "the output is the same for any number)")


def _publisher(args: argparse.Namespace) -> MonitorPublisher | None:
    return MonitorPublisher(f"tcp://*:{args.monitor_port}") if args.monitor_port else None


def cmd_run(args: argparse.Namespace) -> int:
    from daq.commands import sort_settings

    if args.activity_mbq <= 0 or args.duration <= 0:
        raise UserError("--activity-mbq and --duration must be positive")
    threads = check_threads(args.threads)
    scanner = load_scanner(args.scanner)
    emu = EmulatorSettings(args.scanner, args.phantom, args.nuclide, args.activity_mbq,
                           args.duration, args.seed, realtime=not args.fast)
    run = RunDir.create(args.out, args.name)
    proc, endpoints = start_emulator(emu, scanner.n_boards)
    try:
        session = Session(run, scanner, [open_source(e) for e in endpoints],
                          sort_settings(args), None, {"emulator": emu.as_dict()},
                          _publisher(args), args.recon, args.recon_interval, args.tof,
                          scan_duration_s=args.duration, threads=threads)
        print(f"run {run.path}: {scanner.name}, {args.phantom}, {args.nuclide} "
              f"{args.activity_mbq:g} MBq, {args.duration:g} s", file=sys.stderr)
        _acquire_with_progress(session, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=30)
    if proc.returncode not in (0, -15) and err.strip():
        print(f"emulator: {err.strip().splitlines()[-1]}", file=sys.stderr)
    return _finish_run(run, scanner, args.recon)


def cmd_acquire(args: argparse.Namespace) -> int:
    from daq.commands import sort_settings

    threads = check_threads(args.threads)
    scanner = load_scanner(args.scanner)
    if scanner.kind == "spect":
        from daq.projections import view_duration_ps

        view_duration_ps(scanner, args.duration)  # a SPECT scan needs its duration: say so now
    sources = [open_source(s, args.baud) for s in args.sources]
    run = RunDir.create(args.out, args.name)
    session = Session(run, scanner, sources, sort_settings(args), args.duration, {},
                      _publisher(args), args.recon, args.recon_interval, args.tof,
                      threads=threads)
    print(f"run {run.path}: acquiring from {', '.join(args.sources)}", file=sys.stderr)
    _acquire_with_progress(session, None)
    return _finish_run(run, scanner, args.recon)


def cmd_serve(args: argparse.Namespace) -> int:
    from daq.service import DaqService

    service = DaqService(args.out, monitor_port=args.monitor_port,
                         control_port=args.control_port, host=args.host,
                         threads=check_threads(args.threads)).start()
    print(f"DAQ service: monitor tcp://{args.host}:{args.monitor_port}, control "
          f"tcp://{args.host}:{args.control_port}, runs in {args.out} (Ctrl-C to quit)",
          file=sys.stderr)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        service.close()
    return 0


def _acquire_with_progress(session: Session, emulator: Any) -> None:
    progress = Progress("acquire", unit="singles")
    loop = (MonitorLoop(session.publisher, session.snapshot, cpu=session.cpu)
            if session.publisher else None)
    session.start()
    try:
        while session.acq.running:
            if emulator is not None and emulator.poll() not in (None, 0):
                session.acq.stop("error: the emulator exited with status "
                                 f"{emulator.returncode}")
            c = session.acq.processor.counters
            progress.update(c.singles, f"prompts {c.prompts}, delayeds {c.delayeds}")
            session.acq.wait(0.2)
    except KeyboardInterrupt:
        session.acq.stop("interrupted (Ctrl-C)")
    if loop is not None:
        loop.close()
    stop = session.finish()
    progress.close(session.acq.processor.counters.singles, f"stopped: {stop['reason']}")


def _finish_run(run: RunDir, scanner: Scanner, recon: bool) -> int:
    stop = run.read()["stop"]
    if recon:
        final_image(run, scanner)
    print_summary(run)
    return 1 if stop["reason"].startswith("error") else 0


def final_image(run: RunDir, scanner: Scanner) -> Path | None:
    """Reconstruct the run's list-mode data (SPECT: its projections, :func:`daq.projections.
    spect_image`); NIfTI + PNG slices and MIP in RUN/images. None when the run has no prompts
    (SPECT: no singles) to reconstruct."""
    import recon
    from daq.listmode import read_listmode
    from recon.cli import default_subsets, quantify, run_phantom

    meta = run.read()
    counts = (meta.get("stop") or {}).get("counts") or {}
    if scanner.kind == "spect":
        from daq.projections import spect_image

        return spect_image(run, scanner) if counts.get("singles") else None
    if not counts.get("prompts"):
        return None
    coinc, header = read_listmode(run.listmode)
    t0 = time.monotonic()
    grid = recon.default_grid(scanner)
    phantom = run_phantom(meta, scanner)  # an emulated run: its attenuation is known
    image = recon.lm_osem(coinc, scanner, grid, iterations=3, subsets=default_subsets(coinc),
                          tof=True,
                          randoms="delayed",
                          mu_map=None if phantom is None else phantom.mu_map(grid, 511.0),
                          window_ps=header["window_ps"],
                          min_sector_difference=header["min_sector_difference"])
    image, _ = quantify(image, coinc, meta, scanner.counts_per_annihilation)  # Bq/mL
    paths = recon.save_outputs(image, run.images / "image")
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "seconds": round(time.monotonic() - t0, 2)})
    return run.images


def print_summary(run: RunDir) -> None:
    """A few lines about a run: what, how long, how many, what was lost, where the image is."""
    meta = run.read()
    start, stop = meta.get("start") or {}, meta.get("stop") or {}
    counts, losses = stop.get("counts", {}), stop.get("losses", {})
    elapsed = stop.get("elapsed_s") or 0
    print(f"run      {run.path}")
    print(f"scanner  {start.get('scanner', '?')}   started {start.get('time_utc', '?')}")
    print(f"stopped  {stop.get('time_utc', 'never (use petdaq recover)')}   "
          f"reason: {stop.get('reason', '-')}")
    singles = counts.get("singles", 0)
    rate = f" ({singles / elapsed / 1e6:.2f} M singles/s)" if elapsed else ""
    print(f"counts   {singles} singles{rate}, {counts.get('prompts', 0)} prompts, "
          f"{counts.get('delayeds', 0)} delayeds, {counts.get('frames', 0)} frames, "
          f"journal {counts.get('journal_bytes', counts.get('bytes', 0)) / 1e6:.1f} MB")
    lost = {k: v for k, v in losses.items() if v}
    print("losses   " + (", ".join(f"{k} {v}" for k, v in lost.items()) if lost else "none"))
    if meta.get("images"):
        print(f"image    {', '.join(meta['images']['files'])}")

