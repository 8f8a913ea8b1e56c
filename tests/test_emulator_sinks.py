"""The emulator's end: its ZeroMQ sink delivers every frame before it exits, and a crash is worded."""

from __future__ import annotations

import subprocess
import sys
import time

import zmq

from infra.ports import free_port_block

N_FRAMES = 120
FRAME_BYTES = 256 << 10  # sent without a copy (zero-copy frames are the ones at risk at exit)

SENDER = """
import sys
from emulator.outputs.sinks import ZmqSink
sink = ZmqSink([sys.argv[1]])
frame = bytes(range(256)) * ({n} // 256)
for i in range({count}):
    sink.send(0, frame)
sink.close()
print("closed", flush=True)
"""


def test_a_sender_that_exits_right_after_close_loses_no_frame() -> None:
    """A process that sends, closes its sink and exits at once (as ``petdaq emulate`` does at
    the end of a run) still delivers its last frames to a reader that takes them slowly: close
    waits for them (up to the linger time), so none die with the process."""
    endpoint = f"tcp://127.0.0.1:{free_port_block(1)}"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 2)
    pull.setsockopt(zmq.RCVBUF, 64 << 10)
    pull.setsockopt(zmq.LINGER, 0)
    proc = subprocess.Popen([sys.executable, "-c",
                             SENDER.format(n=FRAME_BYTES, count=N_FRAMES), endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pull.connect(endpoint)
        got, deadline = 0, time.monotonic() + 60
        while got < N_FRAMES and time.monotonic() < deadline:
            if pull.poll(2000 if proc.poll() is None else 3000):
                assert len(pull.recv()) == FRAME_BYTES
                got += 1
                time.sleep(0.01)  # a slow reader: the sender closes with frames still queued
            elif proc.poll() is not None:
                break
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        pull.close()
        ctx.term()
    assert proc.returncode == 0, err
    assert got == N_FRAMES


def test_a_crashed_emulator_is_worded_by_its_fault_and_frame() -> None:
    """An emulator that crashes (``petdaq emulate`` turns ``faulthandler`` on) is worded by the
    run in one line: the fault and the innermost frame of the crashing thread."""
    from daq.control.runcontrol import last_words

    crash = subprocess.run([sys.executable, "-X", "faulthandler", "-c",
                            "import ctypes\ndef read():\n    ctypes.string_at(0)\nread()"],
                           capture_output=True, text=True, timeout=60)
    assert crash.returncode == -11
    line = last_words(crash.stderr)
    assert line.startswith("Fatal Python error: Segmentation fault (File ")
    assert line.endswith("in string_at)") and "\n" not in line
    assert last_words("Traceback ...\nValueError: bad\n\n") == "ValueError: bad"
