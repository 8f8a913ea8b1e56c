"""The live DAQ pipeline: links -> journal -> decoder -> merge -> sorter -> list-mode, nothing lost.

Transport tests with wire-encoded board streams (tests/boardstream.py); physics comes from the
emulator in the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from boardstream import board_events, board_messages, quantised
from processes import alive, children
from sockets import timed_socket

from daq.control.emulated import free_port_block
from daq.pipeline.acquisition import Acquisition
from daq.pipeline.links.sources import SerialSource, ZmqSource, open_source
from daq.pipeline.process import calibration
from daq.pipeline.process.processor import SortSettings
from daq.pipeline.replay import decode_journal
from hw import wire
from infra.errors import UserError
from runstore.listmode import read_listmode
from runstore.rundir import RunDir


def _push_boards(endpoints: list[str], streams: list[list[bytes]], ready: threading.Event,
                 pace_s: float = 0.0, hold_at: int = -1,
                 release: threading.Event | None = None) -> None:
    """Send every board's messages; with ``release``, send only ``hold_at`` messages a board
    and hold the links open until it is set (a scan cut off while still under way)."""
    ctx = zmq.Context.instance()
    socks = []
    for ep in endpoints:
        s = timed_socket(zmq.PUSH, ctx)  # blocks at most 30 s on a DAQ that stopped reading
        s.setsockopt(zmq.SNDHWM, 100)
        s.bind(ep)
        socks.append(s)
    ready.set()
    for i, parts in enumerate(zip(*streams, strict=True)):
        if release is not None and i == hold_at:
            release.wait(120)
            break
        for s, msg in zip(socks, parts, strict=True):
            s.send(msg)  # blocks at the high-water mark: back-pressure, never a drop
        time.sleep(pace_s)
    for s in socks:
        s.close(linger=0 if release is not None else 5000)


def _acquire(tmp_path: Path, scanner, sources, **kw) -> Acquisition:
    run = RunDir.create(tmp_path, "run")
    return Acquisition(run, scanner, sources, SortSettings(),
                       calibration.Calibration.nominal(scanner), **kw)


def test_zmq_boards_are_journaled_decoded_and_merged_without_loss(tmp_path: Path, brain) -> None:
    n = 20_000
    events = [board_events(brain, b, n, 2e6, seed=1) for b in range(brain.n_boards)]
    streams = [board_messages(brain, b, e) for b, e in enumerate(events)]
    base = free_port_block(brain.n_boards)
    endpoints = [f"tcp://127.0.0.1:{base + b}" for b in range(brain.n_boards)]
    ready = threading.Event()
    sender = threading.Thread(target=_push_boards, args=(endpoints, streams, ready))
    sender.start()
    ready.wait(5)
    acq = _acquire(tmp_path, brain, [ZmqSource(e) for e in endpoints]).start()
    assert acq.wait(60)
    sender.join()
    meta = acq.run.read()
    stop = meta["stop"]
    sent_frames = sum(wire.frames_for(n) + 2 + -(-n // (16 * 256)) for _ in range(brain.n_boards))
    assert stop["reason"] == "end of stream" and stop["exit_status"] == "success"
    assert stop["counts"]["frames"] == sent_frames
    assert stop["counts"]["singles"] == n * brain.n_boards
    assert all(v == 0 for v in stop["losses"].values()), stop["losses"]
    # the journal holds exactly what was sent, and decodes to the sent events
    journaled = decode_journal(acq.run.journal, brain)
    expected = quantised(np.concatenate(events), brain)
    expected = expected[np.argsort(expected["t"], kind="stable")]
    assert np.array_equal(np.sort(journaled["t"]), expected["t"])
    assert np.array_equal(np.sort(journaled["crystal"]), np.sort(expected["crystal"]))
    coinc, header = read_listmode(acq.run.listmode)
    assert coinc.size == stop["counts"]["prompts"] + stop["counts"]["delayeds"]
    assert header["window_ps"] == brain.acquisition["coincidence_window_ps"]
    assert meta["start"]["calibration"]["method"] == "nominal"


def test_the_list_mode_is_the_same_on_one_and_on_two_threads(tmp_path: Path, brain) -> None:
    """An emulated scan's four boards through ZeroMQ (one receiver polls every link): the
    list-mode coincidences are byte for byte the same whatever the processing threads."""
    import emulator

    sim = emulator.simulate(brain, "nu2-scatter", "F-18", 40.0, 0.01, seed=4)
    streams = [board_messages(brain, b, e) for b, e in enumerate(sim.raw_per_board)]
    width = max(len(m) for m in streams)
    streams = [m + [b""] * (width - len(m)) for m in streams]  # equal lengths for the sender
    lists = []
    for threads in (1, 2):
        base = free_port_block(brain.n_boards)
        endpoints = [f"tcp://127.0.0.1:{base + b}" for b in range(brain.n_boards)]
        ready = threading.Event()
        sender = threading.Thread(target=_push_boards, args=(endpoints, streams, ready))
        sender.start()
        assert ready.wait(5)
        acq = _acquire(tmp_path / str(threads), brain, [ZmqSource(e) for e in endpoints],
                       threads=threads).start()
        assert acq.wait(60)
        sender.join(60)
        stop = acq.run.read()["stop"]
        assert stop["counts"]["singles"] == sim.raw.size
        assert all(v == 0 for v in stop["losses"].values()), stop["losses"]
        lists.append(read_listmode(acq.run.listmode)[0])
    assert lists[0].size > 1000
    assert lists[0].tobytes() == lists[1].tobytes()


def _corrupt(messages: list[bytes], rng: np.random.Generator) -> tuple[bytes, int]:
    """Join messages with garbage between them and some frames damaged; returns the bytes and
    how many frames were damaged."""
    out, damaged = bytearray(), 0
    for msg in messages:
        frames = [f for f in msg.split(b"\x00") if f]
        for f in frames:
            f = bytearray(f)
            if rng.random() < 0.05:
                f[int(rng.integers(0, len(f)))] ^= 0x10
                damaged += 1
            out += f + b"\x00"
        if rng.random() < 0.3:
            out += rng.integers(1, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
            out += b"\x00"
    return bytes(out), damaged


@pytest.mark.parametrize("baud", [115_200 * 8, None], ids=["921600-baud", "raw-pty"])
def test_serial_pty_with_corrupt_bytes(tmp_path: Path, brain, baud) -> None:
    """Every intact frame arrives through a real pty pair; damaged ones are counted."""
    import termios
    import tty

    rng = np.random.default_rng(5)
    n = 5_000 if baud else 40_000
    raw = board_events(brain, 0, n, 1e6, seed=2)
    data, damaged = _corrupt(board_messages(brain, 0, raw, frames_per_message=4), rng)
    master, slave = os.openpty()
    tty.setraw(slave)
    if baud:
        attrs = termios.tcgetattr(slave)
        attrs[4] = attrs[5] = termios.B921600
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    path = os.ttyname(slave)
    acq = _acquire(tmp_path, brain, [SerialSource(path, baudrate=baud or 3_000_000)],
                   duration_s=None).start()

    def write() -> None:
        for i in range(0, len(data), 4096):
            os.write(master, data[i:i + 4096])

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    assert acq.wait(60)
    os.close(master)
    os.close(slave)
    stop = acq.run.read()["stop"]
    stream = stop["streams"][0]
    assert stop["reason"] == "end of stream"
    assert stream["frames_bad"] >= damaged > 0
    # every intact frame's events arrived: the decoded events are exactly the sent ones minus
    # those of the damaged frames (256 per frame at most)
    assert n - 256 * damaged <= stop["counts"]["singles"] <= n
    journaled = decode_journal(acq.run.journal, brain)
    sent = set(quantised(raw, brain)["t"].tolist())
    assert set(journaled["t"].tolist()) <= sent


def test_what_a_board_sent_before_the_daq_opened_its_serial_line_is_kept(tmp_path: Path,
                                                                          brain) -> None:
    """A board that starts streaming before the DAQ opens the line (as `petdaq emulate --to
    pty` does): the run-start marker and the first frames, queued in the line, are decoded."""
    import fcntl
    import tty

    raw = board_events(brain, 0, 3_000, 1e6, seed=4)
    data = b"".join(board_messages(brain, 0, raw, frames_per_message=1))
    master, slave = os.openpty()
    tty.setraw(slave)
    flags = fcntl.fcntl(master, fcntl.F_GETFL)
    fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    early = 0  # as much as the line holds, before the DAQ is there
    with contextlib.suppress(BlockingIOError):
        while early < len(data):
            early += os.write(master, data[early:early + 512])
    assert early > 4 * wire.MAX_FRAME_BYTES  # the run-start marker and several frames
    fcntl.fcntl(master, fcntl.F_SETFL, flags)
    acq = _acquire(tmp_path, brain, [SerialSource(os.ttyname(slave))], duration_s=None).start()
    os.write(master, data[early:])
    assert acq.wait(60)
    os.close(master)
    os.close(slave)
    stop = acq.run.read()["stop"]
    stream = stop["streams"][0]
    assert stop["counts"]["singles"] == raw.size
    assert (stream["frames_bad"], stream["seq_gaps"], stream["events_lost"]) == (0, 0, 0)
    assert stream["boards_stopped"] == [0] and not any(stop["losses"].values())


def test_a_slow_live_consumer_never_slows_the_journal(tmp_path: Path, brain) -> None:
    """Back-pressure: a reconstruction that cannot keep up loses live chunks (counted), the
    journal and the list-mode file lose nothing."""
    from daq.control.live import LiveImage

    class SlowRecon:
        def add(self, coinc: np.ndarray) -> None:
            time.sleep(0.5)

        def update(self):
            return None

    live = LiveImage(SlowRecon(), interval_s=0.01, max_pending_events=2_000)

    n = 30_000
    events = [board_events(brain, b, n, 5e6, seed=3) for b in range(brain.n_boards)]
    # make coincidences plentiful: copy board 0's times onto board 2 (opposite sectors)
    events[2]["t"] = events[0]["t"] + 100
    events[0]["adc"] = events[2]["adc"] = 1022
    streams = [board_messages(brain, b, e, frames_per_message=1) for b, e in enumerate(events)]
    base = free_port_block(brain.n_boards)
    endpoints = [f"tcp://127.0.0.1:{base + b}" for b in range(brain.n_boards)]
    ready = threading.Event()
    # paced like boards (a message per ms), so the DAQ hands over many small chunks
    sender = threading.Thread(target=_push_boards, args=(endpoints, streams, ready, 0.001))
    sender.start()
    ready.wait(5)
    acq = _acquire(tmp_path, brain, [ZmqSource(e) for e in endpoints],
                   on_coincidences=live.offer).start()
    assert acq.wait(60)
    sender.join()
    live.close()
    stop = acq.run.read()["stop"]
    assert not any(stop["losses"].values()), stop["losses"]
    assert stop["counts"]["singles"] == n * brain.n_boards
    assert stop["counts"]["prompts"] > 10_000
    assert live.dropped_events > 0
    assert live.events + live.dropped_events == stop["counts"]["prompts"] + stop["counts"]["delayeds"]
    coinc, _ = read_listmode(acq.run.listmode)
    assert coinc.size == stop["counts"]["prompts"] + stop["counts"]["delayeds"]


def test_wrong_endpoint_ends_the_run_with_a_clear_reason(tmp_path: Path, brain) -> None:
    port = free_port_block(1)
    acq = _acquire(tmp_path, brain, [ZmqSource(f"tcp://127.0.0.1:{port}")],
                   no_data_timeout_s=0.5).start()
    assert acq.wait(10)
    stop = acq.run.stop
    assert stop.failed and stop.exit_status == "fail"
    assert stop.reason.startswith("error: no data from tcp://127.0.0.1:")
    assert "address right" in stop.reason


def test_bad_sources_and_existing_run_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="serial device /dev/ttyNOPE0 does not exist"):
        open_source("/dev/ttyNOPE0")
    with pytest.raises(UserError, match="cannot read from 'nowhere'"):
        open_source("nowhere")
    with pytest.raises(UserError, match="cannot connect to tcp://bad"):
        open_source("tcp://bad")
    RunDir.create(tmp_path, "r1")
    with pytest.raises(UserError, match="already exists"):
        RunDir.create(tmp_path, "r1")


def _cli(*args: str) -> subprocess.CompletedProcess:
    from inprocess import petdaq
    return petdaq(*args)


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, text in [
        (["scanners", "show", "no-such-scanner"], "unknown scanner 'no-such-scanner'"),
        (["acquire", "--from", "/dev/ttyNOPE0", "--out", str(tmp_path)],
         "serial device /dev/ttyNOPE0 does not exist"),
        (["recover", str(tmp_path / "missing")], "does not exist"),
        (["info", str(tmp_path)], "is not a run directory"),
    ]:
        r = _cli(*args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"petdaq: error: {r.stderr.strip()[15:]}"
        assert text in r.stderr and "Traceback" not in r.stderr


def test_sigkill_mid_run_then_recover_keeps_every_journaled_event(tmp_path: Path, brain) -> None:
    """kill -9 the DAQ mid-run; `petdaq recover` rebuilds the run from its journal."""
    n = 400_000
    events = [board_events(brain, b, n, 1e6, seed=4) for b in range(brain.n_boards)]
    streams = [board_messages(brain, b, e, frames_per_message=4) for b, e in enumerate(events)]
    base = free_port_block(brain.n_boards)
    endpoints = [f"tcp://127.0.0.1:{base + b}" for b in range(brain.n_boards)]
    ready, killed = threading.Event(), threading.Event()
    sender = threading.Thread(target=_push_boards, args=(endpoints, streams, ready),
                              kwargs={"hold_at": len(streams[0]) // 2, "release": killed},
                              daemon=True)
    sender.start()
    ready.wait(5)
    args = ["acquire", "--out", str(tmp_path), "--name", "killed", "--no-recon"]
    for e in endpoints:
        args += ["--from", e]
    proc = subprocess.Popen([sys.executable, "-m", "petdaq", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    run = RunDir(tmp_path / "killed")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if run.journal.is_file() and run.journal.stat().st_size > 2_000_000:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # half the scan sent, the rest held back: mid-run
    proc.wait()
    killed.set()
    assert run.read()["stop"] is None  # killed: no stop document
    before, _ = read_listmode(run.listmode)  # readable as it was (SWMR), before any recover
    info = _cli("info", str(run.path))
    assert info.returncode == 0 and "petdaq recover" in info.stdout, info
    assert "losses   not known" in info.stdout
    journaled = decode_journal(run.journal, brain)
    assert 0 < journaled.size < n * brain.n_boards
    r = _cli("recover", str(run.path), "--no-recon")
    assert r.returncode == 0, r.stderr
    stop = run.read()["stop"]
    assert stop["reason"] == "recovered from journal" and stop["exit_status"] == "abort"
    assert stop["counts"]["singles"] == journaled.size
    sent = np.concatenate([quantised(e, brain) for e in events])
    assert np.isin(journaled["t"], sent["t"]).all()
    coinc, _ = read_listmode(run.listmode)
    assert coinc.size == stop["counts"]["prompts"] + stop["counts"]["delayeds"] >= before.size


def test_a_silent_link_with_data_still_to_decode_holds_its_boards(brain) -> None:
    """A link counts as silent (its boards no longer hold the merge back) only once the
    processing thread has decoded everything it received: when processing lags behind the
    receivers, a link that went quiet still has events on their way to the merge."""
    from daq.pipeline.acquisition import StreamState
    from hw import wire

    decoder = wire.Decoder(brain)
    decoder.feed(wire.encode(board_events(brain, 2, 100, 1e6, seed=1), board=2, first_seq=0,
                             scanner=brain))
    state = StreamState("link", decoder, idle_since=10.0, handed=3, decoded=2)
    assert state.idle_boards(now=20.0, timeout_s=3.0) == []
    state.decoded = 3
    assert state.idle_boards(now=20.0, timeout_s=3.0) == [2]
    assert state.idle_boards(now=12.0, timeout_s=3.0) == []  # not silent long enough


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_the_emulator_dies_with_a_killed_daq(tmp_path: Path) -> None:
    """kill -9 of ``petdaq run``: its emulator child does not live on (nor block a port)."""
    proc = subprocess.Popen([sys.executable, "-m", "petdaq", "run", "--duration", "60",
                             "--no-recon", "--out", str(tmp_path), "--name", "r"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "r" / "journal.bpj"
    deadline = time.monotonic() + 300  # the emulator compiles first on a cold cache
    while time.monotonic() < deadline and not (journal.is_file() and journal.stat().st_size):
        assert proc.poll() is None, "petdaq run ended early"
        time.sleep(0.1)
    emulators = children(proc.pid)
    assert emulators, "no emulator child"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in emulators):
        time.sleep(0.05)
    assert not any(alive(p) for p in emulators)
