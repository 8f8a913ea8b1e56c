"""The DAQ service's control socket: a bad request gets a one-line error and the service goes on."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from processes import alive, children
from sockets import timed_socket

from daq import messages
from daq.control.emulated import EmulatorSettings, free_port_block
from daq.control.service import DaqService
from daq.control.session import Session
from daq.pipeline.acquisition import Acquisition
from infra.errors import UserError
from runstore.rundir import RunDir


@pytest.fixture
def service(tmp_path):
    base = free_port_block(2)
    svc = DaqService(tmp_path, monitor_port=base, control_port=base + 1).start()
    ctx = zmq.Context.instance()
    sock = timed_socket(zmq.REQ, ctx)
    sock.connect(f"tcp://127.0.0.1:{base + 1}")

    def ask(payload: bytes) -> dict:
        sock.send(payload)
        return messages.unpack(sock.recv())

    yield ask, tmp_path
    sock.close()
    svc.close()


@pytest.mark.parametrize(("request_", "error"), [
    ([1, 2], "expected a map"),
    ({"cmd": "start", "settings": [1, 2]}, "settings must be a map"),
    ({"cmd": "start", "settings": {"activity_mbq": "lots"}}, "activity_mbq must be a finite number > 0"),
    ({"cmd": "start", "settings": {"duration_s": -5}}, "duration_s must be a finite number > 0"),
    ({"cmd": "start", "settings": {"energy_window_kev": 5}}, "energy_window_kev must be"),
    ({"cmd": "start", "settings": {"activity": 5}}, "unknown scan setting 'activity'"),
    ({"cmd": "start", "settings": {"scanner": "no-such"}}, "no-such"),
    ({"cmd": "launch"}, "unknown command 'launch'"),
    ({"cmd": "start", "settings": {"study": {"weight_kg": -1}}}, "weight_kg must be a number"),
    ({"cmd": "start", "settings": {"study": [1]}}, "study must be a map"),
    ({"cmd": "start", "settings": {"kinetic_time_scale": 0}}, "kinetic_time_scale must be"),
    ({"cmd": "calibrate_gains", "scanner": "no-such"}, "calibrate_gains needs a scanner"),
])
def test_a_bad_request_is_refused_with_its_reason_and_the_service_goes_on(service, request_,
                                                                        error):
    ask, out = service
    reply = ask(msgpack.packb(request_))
    assert reply["ok"] is False and error in reply["error"] and "\n" not in reply["error"]
    status = ask(messages.pack({"cmd": "status"}))
    assert status == {"ok": True, "error": None, "state": "idle", "run": None,
                      "offer": status["offer"], "qc": status["qc"], "outbox": status["outbox"],
                      "gain_calibration": None}
    assert set(status["qc"]) == {"bedside-brain", "small-animal"}  # each PET scanner's last QC
    assert "bedside-brain" in status["offer"]["scanners"]
    assert status["offer"]["defaults"] == messages.DEFAULT_SCAN
    assert not any(out.iterdir())  # no run directory for a refused start


def test_garbage_bytes_are_refused_too(service):
    ask, _ = service
    assert ask(b"\xc1\xff garbage")["ok"] is False
    assert ask(messages.pack({"cmd": "status"}))["ok"] is True


def test_the_emulated_scan_defaults_are_in_one_place():
    assert EmulatorSettings().as_dict() == {**messages.DEFAULT_SCAN, "seed": 1,
                                                  "realtime": True}
    assert EmulatorSettings.from_request({"activity_mbq": 5}).activity_mbq == 5.0
    with pytest.raises(UserError, match="finite number > 0"):
        EmulatorSettings.from_request({"activity_mbq": True})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child processes: Linux /proc")
@pytest.mark.slow
def test_a_run_whose_emulator_dies_ends_failed_and_the_service_goes_on(service):
    """The emulator killed mid-run: the run stops in an error that names it, its files closed,
    and the service answers (state ``failed``) and can start again."""
    ask, out = service
    settings = {"duration_s": 120, "activity_mbq": 2}
    assert ask(messages.pack({"cmd": "start", "settings": settings}))["ok"] is True
    deadline = time.monotonic() + 300  # the emulator compiles first on a cold cache
    journals: list[Path] = []
    while not any(j.stat().st_size for j in journals):
        assert time.monotonic() < deadline, "the run never received data"
        time.sleep(0.1)
        journals = list(out.glob("*/journal.bpj"))
    emulators = [p for p in children(os.getpid())
                 if b"emulate" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(emulators) == 1
    os.kill(emulators[0], signal.SIGKILL)
    deadline = time.monotonic() + 300  # the run's final image first: a cold sensitivity cache
    while (status := ask(messages.pack({"cmd": "status"})))["state"] != "failed":
        assert time.monotonic() < deadline, f"still {status['state']}"
        time.sleep(0.1)
    stop = RunDir(journals[0].parent).stop
    assert stop.failed and "the emulator was killed by signal 9" in stop.reason
    assert not alive(emulators[0])
    again = ask(messages.pack({"cmd": "start", "settings": {"activity_mbq": "x"}}))
    assert again["ok"] is False and again["state"] == "failed"  # refused, and still serving


def _held(kind: type) -> int:
    gc.collect()
    return sum(isinstance(o, kind) for o in gc.get_objects())


def test_a_flood_of_starts_and_stops_holds_no_memory_of_past_runs(service):
    """Start/stop pairs as fast as a client can send them: every accepted start is a whole run
    (a stop document), none is left running, and the service holds no past run's acquisition,
    session or thread (what made 8 000 pairs grow it to 888 MB)."""
    ask, out = service
    accepted, threads = 0, None
    for _ in range(3):
        for _ in range(200):  # most of these starts meet a run that is still starting
            accepted += ask(messages.pack({"cmd": "start", "settings": {"duration_s": 5,
                                                                        "activity_mbq": 1}}))["ok"]
            ask(messages.pack({"cmd": "stop"}))
        deadline = time.monotonic() + 300
        while ask(messages.pack({"cmd": "status"}))["state"] in ("starting", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while any(t.name == "daq-run" for t in threading.enumerate()):
            time.sleep(0.05)
        assert _held(Acquisition) <= 1 and _held(Session) <= 1  # the last run, for its state
        threads = threads or threading.active_count()
        assert threading.active_count() <= threads
    runs = sorted(out.iterdir())
    assert 3 <= len(runs) == accepted
    assert all(RunDir(r).stop is not None for r in runs)


def test_a_start_request_may_run_the_boards_firmware_in_qemu():
    assert EmulatorSettings.from_request({"firmware": "qemu"}).firmware == "qemu"
    with pytest.raises(UserError, match="unknown firmware 'arm': choose numba, c, qemu"):
        EmulatorSettings.from_request({"firmware": "arm"})


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_petdaq_serve_started_in_the_background_stops_on_ctrl_c_and_sigterm(tmp_path, signum):
    """A shell starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT
    ignored: the service still closes on Ctrl-C (and on SIGTERM) and exits 0."""
    import subprocess

    base = free_port_block(2)
    serve = subprocess.Popen(
        [sys.executable, "-m", "petdaq", "serve", "--monitor-port", str(base),
         "--control-port", str(base + 1), "--out", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        ready = serve.stderr.readline()
        assert "DAQ service: monitor" in ready, ready
        serve.send_signal(signum)
        assert serve.wait(30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def test_the_qc_command_gives_the_latest_qc_in_full_or_says_what_it_needs(service, tmp_path,
                                                                        monkeypatch):
    """``qc``: a scanner's latest daily QC (result, findings, trend) for the console's QC tab;
    None before the first; an unknown scanner in one line."""
    import json

    from daq.qc.store import append_history

    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path / "home"))
    ask, _ = service
    reply = ask(messages.pack({"cmd": "qc", "scanner": "bedside-brain"}))
    assert reply["ok"] is True and reply["qc"] is None
    append_history("bedside-brain", {"created_utc": "2026-11-26T06:00:05", "run": "gone",
                                     "result": "WARN", "flagged": ["module 2: gain"],
                                     "module_rate": [1.0, 0.99], "module_gain": [1.0, 0.988],
                                     "board_offset_ps": [3.0, -3.0]})
    qc = ask(messages.pack({"cmd": "qc", "scanner": "bedside-brain"}))["qc"]
    assert qc["result"] == "WARN" and qc["flagged"] == ["module 2: gain"]
    assert qc["picture"] is None  # its run is gone: no map
    assert qc["trend"]["gain_min"] == [0.988] and qc["trend"]["board_worst_ps"] == [3.0]
    status = ask(messages.pack({"cmd": "status"}))
    assert status["qc"]["bedside-brain"]["result"] == "WARN" and json.dumps(status)
    bad = ask(messages.pack({"cmd": "qc", "scanner": "nope"}))
    assert bad["ok"] is False and bad["error"] == "qc needs a scanner the DAQ offers, got 'nope'"
