"""The console's two ZeroMQ links to the DAQ, each served by its own thread (no Qt here).

- :class:`MonitorFeed` subscribes to the monitor stream. Its thread receives every message,
  appends every rate sample to the strip-chart history (data is never skipped), and keeps only
  the latest monitor, image and curves message for display, decoded into views (display frames are
  skipped when the GUI is slower than the stream), the image smoothed by the display filter.
  The GUI thread calls :meth:`MonitorFeed.take`.
- :class:`ControlClient` sends run commands on a REQ socket with timeouts, re-creating the
  socket after a timeout, and polls ``status`` between commands, so a dead DAQ never blocks the
  window and a restarted one is found again.

Messages are msgpack through :mod:`daq.messages`; never pickle.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import zmq

from daq.messages import (
    CURVES_TOPIC,
    IMAGE_TOPIC,
    MONITOR_TOPIC,
    MOTION_TOPIC,
    POLAR_TOPIC,
    pack,
    unpack,
)
from gui.views import (
    RATE_NAMES,
    CurvesView,
    ImageView,
    MonitorView,
    MotionView,
    PolarView,
    curves_view,
    image_view,
    monitor_view,
    motion_view,
    polar_view,
    rate_sample,
)

Secure = Callable[[zmq.Socket], object]
"""What makes a socket a CURVE client of the DAQ before it connects (``infra.keys.client``)."""

_POLL_MS = 50


@dataclass
class FeedCounters:
    """What the subscriber has seen since it started."""

    monitors: int = 0
    images: int = 0
    malformed: int = 0
    """Messages that could not be used at all, and shown views that had unusable fields."""
    skipped: int = 0
    """Display frames (monitor or image) replaced by a newer one before the GUI drew them."""
    last_malformed: str = ""
    last_message_at: float | None = None
    """time.time() of the latest message of any kind (s since the epoch)."""


@dataclass
class FeedUpdate:
    """What :meth:`MonitorFeed.take` returns: new views (None when nothing new) and history."""

    monitor: MonitorView | None
    image: ImageView | None
    curves: CurvesView | None
    """A dynamic scan's curves so far (each message carries all of them)."""
    history_t: np.ndarray
    """Receive times of the rate samples (time.time(), s)."""
    history: dict[str, np.ndarray]
    """Rate name -> counts/s per sample, NaN where the message lacked it."""
    counters: FeedCounters
    polar: PolarView | None = None
    """A cardiac SPECT scan's bull's-eye at its stop."""
    motion: MotionView | None = None
    """A PET scan's motion signal so far (each message carries all of it)."""


class RateHistory:
    """A fixed-capacity ring of (time, singles, prompts, delayeds, necr) samples."""

    def __init__(self, capacity: int) -> None:
        self._data = np.full((capacity, 1 + len(RATE_NAMES)), math.nan)
        self._next = 0
        self._full = False

    def append(self, t: float, rates: tuple[float, ...]) -> None:
        self._data[self._next] = (t, *rates)
        self._next = (self._next + 1) % len(self._data)
        self._full = self._full or self._next == 0

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Samples in arrival order (copies)."""
        d = np.roll(self._data, -self._next, axis=0) if self._full else self._data[:self._next]
        return d[:, 0].copy(), {name: d[:, i + 1].copy() for i, name in enumerate(RATE_NAMES)}


class _Worker:
    """A daemon thread running ``_run`` until :meth:`close` sets ``_stop``."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class MonitorFeed(_Worker):
    """Subscriber thread on the DAQ's monitor PUB socket (topics ``monitor``, ``image``,
    ``curves``, ``polar`` and ``motion``)."""

    def __init__(self, endpoint: str, *, history: int = 6000,
                 context: zmq.Context | None = None, secure: Secure | None = None) -> None:
        super().__init__("console-monitor")
        self.endpoint = endpoint
        self._secure = secure
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._history = RateHistory(history)
        self._counters = FeedCounters()
        self._monitor: MonitorView | None = None
        self._image: ImageView | None = None
        self._curves: CurvesView | None = None
        self._polar: PolarView | None = None
        self._motion: MotionView | None = None
        self._last_image: tuple[dict[str, Any], float] | None = None
        self._filter_fwhm_mm = 0.0
        self._refilter = threading.Event()

    def set_display_filter(self, fwhm_mm: float) -> None:
        """Smooth images for display with a Gaussian of ``fwhm_mm`` (0: none), from the image
        on screen onwards."""
        self._filter_fwhm_mm = max(0.0, float(fwhm_mm))
        self._refilter.set()

    def take(self) -> FeedUpdate:
        """The views that arrived since the last call (or None), and the whole rate history."""
        with self._lock:
            monitor, image, curves = self._monitor, self._image, self._curves
            polar, motion = self._polar, self._motion
            self._monitor = self._image = self._curves = self._polar = self._motion = None
            t, history = self._history.arrays()
            counters = FeedCounters(**vars(self._counters))
        return FeedUpdate(monitor, image, curves, t, history, counters, polar, motion)

    # ---------------------------------------------------------------- subscriber thread

    def _run(self) -> None:
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10000)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.setsockopt(zmq.SUBSCRIBE, MONITOR_TOPIC)
        sock.setsockopt(zmq.SUBSCRIBE, IMAGE_TOPIC)
        sock.setsockopt(zmq.SUBSCRIBE, CURVES_TOPIC)
        sock.setsockopt(zmq.SUBSCRIBE, POLAR_TOPIC)
        sock.setsockopt(zmq.SUBSCRIBE, MOTION_TOPIC)
        if self._secure is not None:
            self._secure(sock)
        sock.connect(self.endpoint)
        try:
            while not self._stop.is_set():
                if sock.poll(_POLL_MS):
                    self._drain(sock)
                if self._refilter.is_set():
                    self._refilter.clear()
                    self._filter_last_image()
        finally:
            sock.close(linger=0)

    def _drain(self, sock: zmq.Socket) -> None:
        """Receive everything queued; decode only the latest monitor and image message."""
        latest: dict[bytes, tuple[dict[str, Any], float]] = {}
        superseded = 0
        for _ in range(10000):  # bounded, so a flood cannot starve the views of the latest
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            now = time.time()
            message, problem = self._parse(parts)
            with self._lock:
                self._counters.last_message_at = now
                if problem:
                    self._counters.malformed += 1
                    self._counters.last_malformed = problem
                    continue
                topic = parts[0]
                if topic == MONITOR_TOPIC:
                    self._counters.monitors += 1
                    self._history.append(now, rate_sample(message))
                elif topic == IMAGE_TOPIC:
                    self._counters.images += 1
            superseded += topic in latest
            latest[topic] = (message, now)
        self._make_views(latest, superseded)

    def _make_views(self, latest: dict[bytes, tuple[dict[str, Any], float]],
                    superseded: int) -> None:
        """Decode the latest monitor, image and curves message into the views the GUI takes
        next."""
        monitor = image = curves = None
        problems: list[str] = []
        if MONITOR_TOPIC in latest:
            monitor = monitor_view(*latest[MONITOR_TOPIC])
            problems += monitor.problems
        if IMAGE_TOPIC in latest:
            image = image_view(*latest[IMAGE_TOPIC], self._filter_fwhm_mm)
            if image is None:
                problems.append("image")
            else:
                self._last_image = latest[IMAGE_TOPIC]
        if CURVES_TOPIC in latest:
            curves = curves_view(*latest[CURVES_TOPIC])
            if curves is None:
                problems.append("curves")
        polar = polar_view(*latest[POLAR_TOPIC]) if POLAR_TOPIC in latest else None
        if POLAR_TOPIC in latest and polar is None:
            problems.append("polar map")
        motion = motion_view(*latest[MOTION_TOPIC]) if MOTION_TOPIC in latest else None
        if MOTION_TOPIC in latest and motion is None:
            problems.append("motion")
        with self._lock:
            self._counters.skipped += superseded
            if problems:
                self._counters.malformed += 1
                self._counters.last_malformed = "unusable field(s): " + ", ".join(problems)
            if monitor is not None:
                self._counters.skipped += self._monitor is not None
                self._monitor = monitor
            if image is not None:
                self._counters.skipped += self._image is not None
                self._image = image
            if curves is not None:
                self._curves = curves
            if polar is not None:
                self._polar = polar
            if motion is not None:
                self._motion = motion

    def _filter_last_image(self) -> None:
        if self._last_image is None:
            return
        view = image_view(*self._last_image, self._filter_fwhm_mm)
        if view is not None:
            with self._lock:
                self._image = view

    @staticmethod
    def _parse(parts: list[bytes]) -> tuple[dict[str, Any], str]:
        """(message, "") or ({}, why it is malformed)."""
        if len(parts) != 2:
            return {}, f"{len(parts)}-part message"
        topic, payload = parts
        if topic not in (MONITOR_TOPIC, IMAGE_TOPIC, CURVES_TOPIC, POLAR_TOPIC, MOTION_TOPIC):
            return {}, f"unknown topic {topic[:20]!r}"
        try:
            message = unpack(payload)
        except ValueError as exc:
            return {}, str(exc)
        expected = topic.decode()
        if message.get("type", expected) != expected:
            return {}, f"{expected} topic carrying a {message.get('type')!r} message"
        return message, ""


@dataclass
class Reply:
    """The outcome of one control request."""

    request: dict[str, Any]
    reply: dict[str, Any] | None
    """The DAQ's reply map, or None when it did not answer in time or answered garbage."""
    error: str = ""
    """Why ``reply`` is None, or the DAQ's own error text when it refused the command."""
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.reply is not None and bool(self.reply.get("ok"))


class ControlClient(_Worker):
    """REQ client thread: run commands in order, and ``status`` every ``status_every_s``.

    A ``status`` that gets no reply within ``timeout_s`` marks the DAQ as silent; a command
    (start, stop) may take the DAQ longer (``command_timeout_s``: a start creates the run and
    starts the digitizers before it answers).
    """

    def __init__(self, endpoint: str, *, timeout_s: float = 1.5, command_timeout_s: float = 20.0,
                 status_every_s: float = 1.0, context: zmq.Context | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 secure: Secure | None = None) -> None:
        super().__init__("console-control")
        self.endpoint = endpoint
        self._secure = secure
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s
        self.status_every_s = status_every_s
        self.timeouts = 0
        """Requests the DAQ did not answer in time (each re-creates the socket)."""
        self.last_reply_at: float | None = None
        """time.time() of the latest reply."""
        self._clock = clock
        self._context = context or zmq.Context.instance()
        self._requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: queue.Queue[Reply] = queue.Queue()
        self._sock: zmq.Socket | None = None

    def request(self, message: dict[str, Any]) -> None:
        """Queue a command; its :class:`Reply` comes out of :meth:`take_replies`."""
        self._requests.put(message)

    def take_replies(self) -> list[Reply]:
        """Replies (command and status) that arrived since the last call, oldest first."""
        out = []
        while True:
            try:
                out.append(self._replies.get_nowait())
            except queue.Empty:
                return out

    # ---------------------------------------------------------------- client thread

    def _run(self) -> None:
        next_status = self._clock()
        try:
            while not self._stop.is_set():
                wait = max(0.0, next_status - self._clock())
                try:
                    request = self._requests.get(timeout=min(wait, 0.1))
                except queue.Empty:
                    if self._clock() < next_status:
                        continue
                    request = {"cmd": "status"}
                    next_status = self._clock() + self.status_every_s
                self._replies.put(self._exchange(request))
        finally:
            self._drop_socket()

    def _exchange(self, request: dict[str, Any]) -> Reply:
        if self._sock is None:
            self._sock = self._context.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            if self._secure is not None:
                self._secure(self._sock)
            self._sock.connect(self.endpoint)
        timeout = self.timeout_s if request.get("cmd") == "status" else self.command_timeout_s
        ms = round(timeout * 1000)
        self._sock.setsockopt(zmq.SNDTIMEO, ms)
        self._sock.setsockopt(zmq.RCVTIMEO, ms)
        deadline = self._clock() + timeout
        try:
            self._sock.send(pack(request))
            while not self._sock.poll(_POLL_MS):
                if self._stop.is_set() or self._clock() > deadline:
                    raise zmq.Again()
            payload = self._sock.recv()
        except zmq.ZMQError:
            self.timeouts += 1
            self._drop_socket()  # a REQ socket that missed its reply cannot send again
            return Reply(request, None, f"no reply from the DAQ within {timeout:g} s")
        try:
            reply = unpack(payload)
        except ValueError as exc:
            return Reply(request, None, str(exc))
        self.last_reply_at = time.time()
        error = reply.get("error")
        return Reply(request, reply, error if isinstance(error, str) else "")

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
