"""The motion alert's latency: an emulated head steps in real time; when the monitor stream first says motion.

``python -m daq.perf.motionlatency --phantom point --activity-mbq 1 --step-s 6 --step-mm 3``
runs the emulator in real time with a step of the phantom along x, subscribes to the run's
monitor stream and prints, for the first ``motion`` message that says "motion": the DAQ's
elapsed time (s from its start), how far its prompts reached then (``data_s``) and the step's
time, and the episodes the run recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from daq import messages
from daq.control import runcontrol
from daq.control.emulated import EmulatorSettings
from daq.control.monitor import MonitorLoop, MonitorPublisher
from daq.pipeline.process.processor import SortSettings
from infra.ports import free_port_block

#: How long the step takes (s).
STEP_LENGTH_S = 0.2


def _listen(port: int, got: list[dict[str, Any]], stop: threading.Event) -> None:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, messages.MOTION_TOPIC)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        while not stop.is_set():
            if sock.poll(20):
                got.append(messages.unpack(sock.recv_multipart()[1]))
    finally:
        sock.close()


@contextlib.contextmanager
def motion_messages(port: int) -> Iterator[list[dict[str, Any]]]:
    """The ``motion`` messages a monitor stream on loopback ``port`` publishes while the block
    runs (the list fills as they come)."""
    got: list[dict[str, Any]] = []
    stop = threading.Event()
    listener = threading.Thread(target=_listen, args=(port, got, stop))
    listener.start()
    try:
        yield got
    finally:
        stop.set()
        listener.join()


def measure(phantom: str, activity_mbq: float, step_s: float, step_mm: float,
            duration_s: float, out: Path) -> dict[str, Any]:
    """Run the scan; the first alert's times and the run's episodes."""
    trace = out / "step.csv"
    trace.write_text("t_s,tx_mm,ty_mm,tz_mm,rx_deg,ry_deg,rz_deg\n0,0,0,0,0,0,0\n"
                     f"{step_s},0,0,0,0,0,0\n{step_s + STEP_LENGTH_S},{step_mm},0,0,0,0,0\n")
    port = free_port_block(1)
    publisher = MonitorPublisher(f"tcp://127.0.0.1:{port}")
    emu = EmulatorSettings(phantom=phantom, activity_mbq=activity_mbq, duration_s=duration_s,
                           realtime=True, motion=str(trace))
    try:
        with motion_messages(port) as got:
            run = runcontrol.start_emulated(out, emu, SortSettings(), runcontrol.LiveOptions(
                recon=False, publisher=publisher), name="motion-latency")
            loop = MonitorLoop(publisher, run.session.snapshot, cpu=run.session.cpu)
            try:
                run.session.acq.wait()
            finally:
                loop.close()
            runcontrol.finish(run)
    finally:
        publisher.close()
    first = next((m for m in got if m["alert"] == "motion"), None)
    stop_doc = json.loads((out / "motion-latency" / "run.json").read_text())["stop"]
    return {"step_s": step_s, "step_mm": step_mm,
            "alert_elapsed_s": None if first is None else round(first["elapsed_s"], 3),
            "alert_data_s": None if first is None else round(first["data_s"], 3),
            "latency_s": None if first is None else round(first["elapsed_s"] - step_s, 3),
            "episodes": stop_doc["motion"]["episodes"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daq.perf.motionlatency", description=__doc__)
    p.add_argument("--phantom", default="point")
    p.add_argument("--activity-mbq", type=float, default=1.0)
    p.add_argument("--step-s", type=float, default=6.0)
    p.add_argument("--step-mm", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.phantom, args.activity_mbq, args.step_s, args.step_mm,
                         args.duration, Path(folder))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
