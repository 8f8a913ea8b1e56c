"""A DAQ session: one acquisition with its live image, its live frames (a dynamic scan) and the
monitor documents it publishes."""

from __future__ import annotations

from typing import Any

from daq import messages
from daq.control.live import LiveImage
from daq.control.liveframes import CurvePoints, LiveFrames, live_regions, live_schedule
from daq.control.monitor import (
    MonitorPublisher,
    RateMeter,
    histogram_fields,
    necr,
    projection_fields,
)
from daq.control.motionwatch import MotionWatch
from daq.pipeline.acquisition import Acquisition
from daq.pipeline.cpu import CpuMeter
from daq.pipeline.links.sources import Source
from daq.pipeline.process import calibration
from daq.pipeline.process.processor import ENERGY_HIST_KEV, SortSettings
from daq.pipeline.process.projections import ProjectionStage
from hw.scanner import Scanner
from runstore.rundir import RunDir
from runstore.rundocs import ExitStatus, StopDocument


class Session:
    """One acquisition plus its optional live reconstruction and monitor publisher."""

    def __init__(self, run: RunDir, scanner: Scanner, sources: list[Source], *,
                 sort: SortSettings, duration_s: float | None = None,
                 settings: dict[str, Any] | None = None,
                 publisher: MonitorPublisher | None = None, live_recon: bool = True,
                 recon_interval_s: float = 2.0, tof: bool = True,
                 scan_duration_s: float | None = None, threads: int | None = None,
                 frames: str | None = None, spheres: tuple[str, ...] = (),
                 emulated: bool = False) -> None:
        """``duration_s``: when the acquisition stops (None: at the end of the stream);
        ``settings``: what else the start document records (e.g. the emulated scan);
        ``scan_duration_s``: the planned scan time, for a SPECT gantry (``duration_s`` by
        default); ``threads``: the processing threads (None: every core); ``frames``: a dynamic
        scan's frame schedule (``"6x10s,8x30s"``, the kinetic clock) reconstructed live, with
        the curves of ``spheres`` (``NAME:X,Y,Z,R`` mm) or else of the emulated phantom's
        regions; ``emulated``: the sources are the emulator's boards (its gains calibrate the
        energies when no table is stored, :func:`daq.pipeline.process.calibration.current`)."""
        self.scanner, self.publisher = scanner, publisher
        self.frames: LiveFrames | None = None
        """The live frames of a dynamic scan (None: a static scan)."""
        self.cpu = CpuMeter()
        """The run's CPU split: acquisition threads, live image, monitor (:mod:`daq.pipeline.cpu`)."""
        self.live = None
        if live_recon and scanner.kind == "pet":
            import recon
            from recon.corrections import normalization
            from recon.pet.livemu import LiveAttenuation

            resolved = sort.resolved(scanner)
            table = normalization.newest(scanner)
            live = recon.LiveRecon(scanner, tof=tof, window_ps=resolved["window_ps"],
                                   min_sector_difference=resolved["min_sector_difference"],
                                   normalization=table)
            study = (settings or {}).get("study")
            body_part = (study.get("body_part") if isinstance(study, dict)
                         else getattr(study, "body_part", None))
            self.live = LiveImage(live, recon_interval_s, on_image=self._publish_image,
                                  cpu=self.cpu, attenuation=LiveAttenuation(
                                      live.em, body_part, live.em.normalization))
        emulated_scan = (settings or {}).get("emulator") or {}
        hurried = float(emulated_scan.get("kinetic_time_scale") or 1.0) > 1.0
        self.motion = (MotionWatch(scanner, self._publish_motion, self.cpu)
                       if scanner.kind == "pet" and not hurried else None)
        """The live motion watch of a PET scan (None: SPECT, or a kinetic phantom run faster
        than real time, whose tracer moves the centroid as fast as a head would)."""
        self._motion_record: dict[str, Any] = {}
        settings = {**(settings or {}), **({"frame_schedule": frames} if frames else {})}
        self.acq = Acquisition(run, scanner, sources, sort,
                               calibration.current(scanner, emulated=emulated),
                               duration_s, settings,
                               on_coincidences=(self._offer if self.live or frames or self.motion
                                                else None),
                               cpu=self.cpu, scan_duration_s=scan_duration_s, threads=threads,
                               on_end=self._close_live, end_details=self._end_details)
        self._meter = RateMeter()
        if frames:
            self.frames = self._live_frames(run, frames, spheres)

    def _live_frames(self, run: RunDir, schedule: str, spheres: tuple[str, ...]) -> LiveFrames:
        from recon.pet.dynamic import FrameRecon
        from recon.pet.runimage import voxel_of
        from runstore.facts import run_facts

        facts = run_facts(run)
        frames = live_schedule(schedule, self.scanner, facts.kinetic_time_scale, facts.duration_s)
        self._frames_end_s = facts.duration_s
        recon_of = FrameRecon.of_run(self.acq.processor.settings, facts, self.scanner)
        regions = live_regions(self.scanner, facts, list(spheres),
                               voxel_of(recon_of.options, self.scanner))
        rates = self.acq.processor.rates
        return LiveFrames(frames, recon_of, regions, facts.kinetic_time_scale,
                          self._publish_curves, cpu=self.cpu,
                          rates=rates.handed_over if rates is not None else None)

    def _offer(self, coinc: Any) -> None:
        if self.motion is not None:
            self.motion.offer(coinc)
        if self.live is not None:
            self.live.offer(coinc)
        if self.frames is not None:
            self.frames.offer(coinc)

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
        """The live image's last update and the live frames the data reached, once the last
        coincidences are out (the curves into ``RUN/kinetics/live_tacs.csv``); their losses."""
        if self.live is not None:
            self.live.close()
        if self.motion is not None:
            ran_to_end = self.acq.exit_status is ExitStatus.SUCCESS
            self._motion_record = self.motion.close(self.acq.duration_s if ran_to_end else None)
            self._publish_motion(self.motion)
        if self.frames is not None:
            acq = self.acq
            ran_to_end = acq.exit_status is ExitStatus.SUCCESS
            self.frames.close(self._frames_end_s if ran_to_end else None)
            self.frames.write(acq.run.path / "kinetics" / "live_tacs.csv")
            if self.frames.error:
                raise RuntimeError(f"live frames stopped at {self.frames.error}")
        return self._display_losses()

    def _end_details(self) -> dict[str, Any]:
        """What the stop document records beside the counts: the motion episodes."""
        return {"motion": self._motion_record} if self._motion_record else {}

    def _publish_motion(self, watch: MotionWatch) -> None:
        if self.publisher is not None:
            self.publisher.send(messages.MOTION_TOPIC, messages.motion_message(
                **watch.message_fields(), elapsed_s=self.acq.elapsed_s))

    def _display_losses(self) -> dict[str, int]:
        losses = {"recon_dropped_events": self.live.dropped_events if self.live else 0}
        if self.motion is not None:
            losses["motion_dropped_events"] = self.motion.dropped_events
        if self.frames is not None:
            losses["live_frames_dropped_events"] = self.frames.dropped_events
        return losses

    def _publish_curves(self, points: CurvePoints, done: int) -> None:
        if self.publisher is not None:
            self.publisher.send(messages.CURVES_TOPIC, messages.curves_message(
                start_min=points.start_min, duration_min=points.duration_min,
                mean_bq_ml=points.mean_bq_ml, sd_bq_ml=points.sd_bq_ml, frames_done=done,
                frames_total=len(self.frames.frames) if self.frames else done))

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
        if self.motion is not None and self.motion.moving:
            warning = "MOTION" + ("; " + warning if warning else "")
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
                    "recon": self.live.queue_fill() if self.live else 0.0,
                    **({"frames": self.frames.queue_fill()} if self.frames else {})},
            disk={"journal_bytes": counts["journal_bytes"], "free_bytes": free},
            energy_window_kev=list(proc.settings["energy_window_kev"]),
            message=warning,
            **histogram_fields(proc.hist.energy, ENERGY_HIST_KEV, proc.hist.dt,
                               proc.hist.dt_range_ps, proc.hist.hitmap, proc.hist.sinogram),
            **(projection_fields(proc.stage.live_view())
               if isinstance(proc.stage, ProjectionStage) else {}),
        )
