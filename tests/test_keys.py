"""Access control: CURVE keys (``petdaq keys``), a DAQ beyond loopback only with them, and only
its authorised clients answered: control, monitor and the console."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
import time

import pytest
import zmq
from boardstream import board_events, board_messages
from sockets import timed_socket

from daq import messages
from daq.control.emulated import free_port_block
from daq.control.service import DaqService
from daq.pipeline.acquisition import Acquisition
from daq.pipeline.links.sources import ZmqSource
from daq.pipeline.process import calibration
from daq.pipeline.process.processor import SortSettings
from emulator.outputs.sinks import ZmqSink
from infra import keys
from infra.errors import UserError
from runstore.rundir import RunDir


def petdaq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "petdaq.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def key_folder(tmp_path):
    return keys.create(tmp_path / "keys", ["console"])


@pytest.fixture
def secured_daq(tmp_path, key_folder):
    """A DAQ service on every interface, with keys."""
    base = free_port_block(2)
    svc = DaqService(tmp_path / "runs", monitor_port=base, control_port=base + 1,
                     host="0.0.0.0", keys=key_folder).start()
    yield base, base + 1
    svc.close()


def test_petdaq_keys_makes_a_folder_and_adds_clients(tmp_path):
    folder = tmp_path / "k"
    done = petdaq("keys", str(folder))
    assert done.returncode == 0, done.stderr
    made = keys.open_folder(folder)
    assert made.clients() == ["console", "daq"]
    assert stat.S_IMODE(made.server_secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.client_secret("console").stat().st_mode) == 0o600
    server = made.server_secret.read_bytes()
    assert petdaq("keys", str(folder), "--client", "ward-2").returncode == 0
    assert made.clients() == ["console", "daq", "ward-2"]
    assert made.server_secret.read_bytes() == server  # the DAQ keeps its identity


@pytest.mark.parametrize("args", [
    ["serve", "--host", "0.0.0.0"],
    ["emulate", "--to", "tcp://0.0.0.0:5560"],
    ["acquire", "--from", "tcp://127.0.0.1:5555", "--monitor-port", "5599",
     "--monitor-host", "*"],
])
def test_binding_beyond_loopback_needs_keys(tmp_path, args):
    done = petdaq(*args, *(["--out", str(tmp_path / "runs")] if args[0] != "emulate" else []))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "needs" not in done.stdout
    assert "reachable from other machines: give --keys DIR" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_key_folders_are_one_line_errors(tmp_path, key_folder):
    with pytest.raises(UserError, match="does not exist"):
        keys.open_folder(tmp_path / "none")
    with pytest.raises(UserError, match=r"no-one\.key_secret does not exist"):
        keys.client(key_folder.path, "no-one")
    with pytest.raises(UserError, match="key name"):
        keys.client(key_folder.path, "../server")
    done = petdaq("console", "--keys", str(tmp_path / "none"), "--screenshot", str(tmp_path / "s.png"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def _request(port: int, secure=None, timeout_ms: int = 3000) -> dict | None:
    """A status request to the control port: the reply, or None when none came."""
    sock = timed_socket(zmq.REQ, timeout_ms=timeout_ms)
    if secure is not None:
        secure(sock)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:  # a peer that CURVE refuses never takes the request: the send times out
        sock.send(messages.pack({"cmd": "status"}))
        return messages.unpack(sock.recv()) if sock.poll(timeout_ms) else None
    except zmq.Again:
        return None
    finally:
        sock.close()


def _monitor(port: int, secure=None, timeout_ms: int = 3000) -> bool:
    """Whether a subscriber receives a monitor document within the timeout."""
    sock = timed_socket(zmq.SUB, timeout_ms=timeout_ms)
    sock.setsockopt(zmq.SUBSCRIBE, messages.MONITOR_TOPIC)
    if secure is not None:
        secure(sock)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        return bool(sock.poll(timeout_ms))
    finally:
        sock.close()


def test_only_authorised_clients_get_answers(secured_daq, key_folder, tmp_path):
    monitor_port, control_port = secured_daq
    stranger = keys.create(tmp_path / "other", ["console"])  # keys, but not authorised here
    forged = keys.client(stranger.path)
    # a stranger that knows the server's public key, with its own identity
    (stranger.path / "server.key").write_bytes(key_folder.server_public.read_bytes())
    impostor = keys.client(stranger.path)
    assert _request(control_port) is None
    assert _request(control_port, forged) is None
    assert _request(control_port, impostor) is None
    assert not _monitor(monitor_port)
    assert not _monitor(monitor_port, impostor)
    authorised = keys.client(key_folder.path)
    reply = _request(control_port, authorised)
    assert reply is not None and reply["ok"] and reply["state"] == "idle"
    assert _monitor(monitor_port, authorised)


def test_an_authorised_console_works_and_a_console_without_keys_gets_nothing(
        qtbot, secured_daq, key_folder):
    from pyqtgraph.Qt import QtWidgets

    from gui import theme
    from gui.window import ConsoleWindow

    theme.apply(QtWidgets.QApplication.instance())
    monitor_port, control_port = secured_daq
    outsider = ConsoleWindow("127.0.0.1", monitor_port, control_port)
    console = ConsoleWindow("127.0.0.1", monitor_port, control_port,
                            secure=keys.client(key_folder.path))
    qtbot.addWidget(outsider)
    qtbot.addWidget(console)
    try:
        qtbot.waitUntil(lambda: console.responding and console.latest is not None,
                        timeout=20_000)
        assert console.latest.state == "idle"
        assert "bedside-brain" in console.offer.scanners
        assert not outsider.responding and outsider.latest is None
    finally:
        outsider.shutdown()
        console.shutdown()


def test_boards_that_need_keys_give_a_rogue_receiver_nothing(tmp_path, key_folder, brain):
    """Boards bound on every interface with keys: receivers connected before the DAQ, without
    keys or with keys the boards do not authorise, get no byte; the DAQ gets every event,
    the run-stop markers included (the run ends by itself)."""
    n = 3_000
    streams = [board_messages(brain, b, board_events(brain, b, n, 2e6, seed=7))
               for b in range(brain.n_boards)]
    base = free_port_block(brain.n_boards)
    sink = ZmqSink([f"tcp://0.0.0.0:{base + b}" for b in range(brain.n_boards)],
                   key_folder=keys.create(key_folder.path, ["daq"]))
    stranger = keys.create(tmp_path / "other", ["daq"])
    (stranger.path / "server.key").write_bytes(key_folder.server_public.read_bytes())
    ctx = zmq.Context.instance()
    rogues = []
    for secure in (None, keys.client(stranger.path, "daq")):
        for b in range(brain.n_boards):
            sock = timed_socket(zmq.PULL, ctx)
            if secure is not None:
                secure(sock)
            sock.connect(f"tcp://127.0.0.1:{base + b}")
            rogues.append(sock)
    sender = threading.Thread(target=lambda: [sink.send(b, m) for b, s in enumerate(streams)
                                              for m in s])
    sender.start()
    time.sleep(0.5)  # the rogues are there first
    daq = keys.client(key_folder.path, "daq")
    run = RunDir.create(tmp_path, "run")
    acq = Acquisition(run, brain, [ZmqSource(f"tcp://127.0.0.1:{base + b}", secure=daq)
                                   for b in range(brain.n_boards)], SortSettings(),
                      calibration.Calibration.nominal(brain)).start()
    try:
        assert acq.wait(60)
        sender.join(30)
    finally:
        sink.close(0)
    stolen = 0
    for sock in rogues:
        while sock.poll(0):
            stolen += len(sock.recv())
        sock.close()
    assert stolen == 0
    stop = run.read()["stop"]
    assert stop["reason"] == "end of stream"
    assert stop["counts"]["singles"] == n * brain.n_boards
    assert not any(stop["losses"].values()), stop["losses"]
