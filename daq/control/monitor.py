"""The monitor stream: a ZeroMQ PUB socket publishing the run's health at >= 5 Hz (msgpack).

Rates are differences of the counters between two publications divided by the time between them.
NECR is estimated live as (P - D)^2 / P with P the prompt and D the delayed rate: trues plus
scatter over prompts, since scatter cannot be told from trues event by event (the count-rate study
separates them with the emulator's truth).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from daq import messages
from infra import keys
from infra.errors import UserError

if TYPE_CHECKING:
    from daq.pipeline.cpu import CpuMeter


#: Seconds between the monitor loop's publications of a run's lasting results.
LASTING_EVERY_S = 2.0


class MonitorPublisher:
    """A PUB socket bound to ``endpoint`` (e.g. ``tcp://*:5556``); with a ``guard``, only the
    guard's authorised keys may subscribe (CURVE)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None,
                 guard: keys.Guard | None = None) -> None:
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, 20)  # a slow subscriber loses display frames, not data
        self._sock.setsockopt(zmq.LINGER, 0)
        self._own_guard: keys.Guard | None = None
        if guard is not None:
            guard.serve(self._sock)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise UserError(f"cannot publish the monitor on {endpoint}: {exc}") from None
        self.endpoint = endpoint
        self.sent = 0
        self._lock = threading.Lock()   # the monitor loop and the run's threads both send
        self._lasting: dict[bytes, bytes] = {}

    def send(self, topic: bytes, message: dict[str, Any]) -> None:
        """Publish one message (never blocks: PUB drops for subscribers that lag)."""
        self._send(topic, messages.pack(message))

    def _send(self, topic: bytes, payload: bytes) -> None:
        with self._lock:
            try:
                self._sock.send_multipart([topic, payload], zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                pass

    def send_lasting(self, topic: bytes, message: dict[str, Any]) -> None:
        """Publish a run's result that comes once (a SPECT image at the stop, its bull's-eye)
        and again at each :meth:`resend_lasting` until :meth:`forget_lasting`: a subscriber
        that lagged when it was sent (and lost it) or that connects later still gets it."""
        payload = messages.pack(message)
        with self._lock:
            self._lasting[topic] = payload
        self._send(topic, payload)

    def resend_lasting(self) -> None:
        """Publish the lasting results again."""
        with self._lock:
            lasting = list(self._lasting.items())
        for topic, payload in lasting:
            self._send(topic, payload)

    def forget_lasting(self) -> None:
        """No longer publish the last run's results (a new run starts)."""
        with self._lock:
            self._lasting.clear()

    @classmethod
    def bind(cls, host: str, port: int, key_folder: keys.KeyFolder | None) -> MonitorPublisher:
        """The monitor on ``host:port``: beyond loopback only with keys (its own context and
        authenticator)."""
        keys.needs_keys(host, key_folder, "the monitor")
        if key_folder is None:
            return cls(f"tcp://{host}:{port}")
        guard = keys.Guard(key_folder)
        try:
            publisher = cls(f"tcp://{host}:{port}", guard.context, guard)
        except UserError:
            guard.close()
            raise
        publisher._own_guard = guard
        return publisher

    def close(self) -> None:
        self._sock.close()
        if self._own_guard is not None:  # the authenticator of :meth:`bind`
            self._own_guard.close()


class RateMeter:
    """Counts/s of named counters between successive calls."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._t = time.monotonic()

    def rates(self, counters: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        dt = max(now - self._t, 1e-6)
        out = {k: max(v - self._last.get(k, 0.0), 0.0) / dt for k, v in counters.items()}
        self._last, self._t = dict(counters), now
        return out


def necr(prompts_cps: float, delayeds_cps: float) -> float:
    """Live NECR estimate (cps): (P - D)^2 / P."""
    return (prompts_cps - delayeds_cps) ** 2 / prompts_cps if prompts_cps > 0 else 0.0


class MonitorLoop:
    """Publish ``snapshot()`` every ``interval_s`` on a background thread until closed, and
    the publisher's lasting results every :data:`LASTING_EVERY_S`."""

    def __init__(self, publisher: MonitorPublisher, snapshot: Any, interval_s: float = 0.2,
                 cpu: CpuMeter | None = None) -> None:
        """``cpu``: a meter the thread clocks its CPU time on (the run's, :mod:`daq.pipeline.cpu`)."""
        self.publisher, self.snapshot, self.interval_s = publisher, snapshot, interval_s
        self._cpu = cpu
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        clock = self._cpu.clock("monitor") if self._cpu is not None else None
        every = max(1, round(LASTING_EVERY_S / self.interval_s))
        ticks = 0
        while not self._stop.wait(self.interval_s):
            self.publisher.send(messages.MONITOR_TOPIC, self.snapshot())
            ticks += 1
            if ticks % every == 0:
                self.publisher.resend_lasting()
        if clock is not None:
            clock.close("publish")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def histogram_fields(energy: np.ndarray, energy_range_kev: tuple[float, float],
                     dt: np.ndarray | None, dt_range_ps: tuple[int, int], hitmap: np.ndarray,
                     sinogram: np.ndarray | None) -> dict[str, Any]:
    """The histogram part of a monitor message (``dt`` and ``sinogram``: PET only)."""
    out: dict[str, Any] = {
        "energy_hist": {"edges_kev": list(energy_range_kev),
                        "counts": messages.encode_array(energy.astype(np.uint32))},
        "hitmap": messages.encode_array(hitmap.astype(np.uint32)),
    }
    if dt is not None:
        out["dt_hist"] = {"range_ps": list(dt_range_ps),
                          "counts": messages.encode_array(dt.astype(np.uint32))}
    if sinogram is not None:
        out["sinogram"] = messages.encode_array(sinogram.astype(np.float32))
    return out


def projection_fields(live: Any) -> dict[str, Any]:
    """The SPECT part of a monitor message
    (:class:`daq.pipeline.process.projections.LiveProjections`): ``projections`` {heads_now,
    sinogram, counts_per_angle, view, views}."""
    return {"projections": {
        "heads_now": messages.encode_array(live.heads_now.astype(np.float32)),
        "sinogram": messages.encode_array(live.sinogram.astype(np.float32)),
        "counts_per_angle": messages.encode_array(live.counts_per_angle.astype(np.float32)),
        "view": int(live.view), "views": int(live.views)}}
