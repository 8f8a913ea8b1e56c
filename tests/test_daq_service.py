"""The DAQ service's control socket: a bad request gets a one-line error and the service goes on."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from daq import messages
from daq.emulated import EmulatorSettings, free_port_block
from daq.service import DaqService
from hw.errors import UserError


@pytest.fixture
def service(tmp_path):
    base = free_port_block(2)
    svc = DaqService(tmp_path, monitor_port=base, control_port=base + 1).start()
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
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
    ({"cmd": "start", "settings": {"activity_mbq": None}}, "activity_mbq must be a finite number > 0"),
    ({"cmd": "start", "settings": {"duration_s": -5}}, "duration_s must be a finite number > 0"),
    ({"cmd": "start", "settings": {"energy_window_kev": 5}}, "energy_window_kev must be"),
    ({"cmd": "start", "settings": {"activity": 5}}, "unknown scan setting 'activity'"),
    ({"cmd": "start", "settings": {"scanner": "no-such"}}, "no-such"),
    ({"cmd": "launch"}, "unknown command 'launch'"),
])
def test_a_bad_request_is_refused_with_its_reason_and_the_service_goes_on(service, request_,
                                                                        error):
    ask, out = service
    reply = ask(msgpack.packb(request_))
    assert reply["ok"] is False and error in reply["error"] and "\n" not in reply["error"]
    status = ask(messages.pack({"cmd": "status"}))
    assert status == {"ok": True, "error": None, "state": "idle", "run": None,
                      "offer": status["offer"]}
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
