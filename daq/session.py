"""A DAQ session: one acquisition with its live image and the monitor documents it publishes."""

from __future__ import annotations

from typing import Any

from daq import calibration, messages
from daq.acquisition import Acquisition
from daq.cpu import CpuMeter
from daq.live import LiveImage
from daq.monitor import MonitorPublisher, RateMeter, histogram_fields, necr
from daq.processor import ENERGY_HIST_KEV, SortSettings
from daq.rundir import RunDir
from daq.rundocs import StopDocument
from daq.sources import Source
from hw.scanner import Scanner


class Session:
    """One acquisition plus its optional live reconstruction and monitor publisher."""

    def __init__(self, run: RunDir, scanner: Scanner, sources: list[Source], *,
                 sort: SortSettings, duration_s: float | None = None,
                 settings: dict[str, Any] | None = None,
                 publisher: MonitorPublisher | None = None, live_recon: bool = True,
                 recon_interval_s: float = 2.0, tof: bool = True,
                 scan_duration_s: float | None = None, threads: int | None = None) -> None:
        """``duration_s``: when the acquisition stops (None: at the end of the stream);
        ``settings``: what else the start document records (e.g. the emulated scan);
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
                               duration_s, settings or {},
                               on_coincidences=self.live.offer if self.live else None,
                               cpu=self.cpu, scan_duration_s=scan_duration_s, threads=threads,
                               on_end=self._close_live)
        self._meter = RateMeter()

    def start(self) -> Session:
        self.acq.start()
        return self

    def finish(self) -> StopDocument:
        """Wait for the acquisition to end (its live image closed with it), publish the last
        monitor document; the run's stop document."""
        self.acq.wait()
        if self.publisher is not None:
            self.publisher.send(messages.MONITOR_TOPIC, self.snapshot())
        if self.acq.stop_doc is None:
            raise RuntimeError(f"run {self.acq.run.path} ended without its stop document")
        return self.acq.stop_doc

    def _close_live(self) -> dict[str, int]:
        """The live image's last update once the last coincidences are out; its losses."""
        if self.live is not None:
            self.live.close()
        return self._display_losses()

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
        if free < messages.LOW_DISK_BYTES:
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
