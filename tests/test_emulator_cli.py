"""``petdaq emulate`` and ``petdaq count-rate``: transports, truth file, firmware, bad input."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import zmq
from sockets import timed_socket

from emulator.outputs.truthfile import read_truth
from hw import RAW_DTYPE, wire
from infra.errors import UserError
from petdaq.acquisition import emulate as cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="petdaq")
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


EMULATE = ("emulate", "--phantom", "nema-iq", "--activity-mbq", "1", "--duration", "0.02",
           "--seed", "4", "--fast", "--quiet")


def decode_boards(data: bytes, brain) -> tuple[np.ndarray, wire.DecoderStats]:
    dec = wire.Decoder(brain)
    events = dec.feed(data)
    return events, dec.stats


def test_list_names_phantoms_and_nuclides(capsys):
    assert run("emulate", "--list") == 0
    out = capsys.readouterr().out
    for name in ("nema-iq", "derenzo", "brain", "cardiac", "F-18", "Tc-99m", "Lu-177"):
        assert name in out


@pytest.mark.slow
def test_file_sink_with_truth_decodes_to_the_truth_events(tmp_path, brain):
    frames, truth = tmp_path / "run.frames", tmp_path / "truth.h5"
    assert run(*EMULATE, "--to", str(frames), "--truth", str(truth)) == 0
    raw, tr, attrs = read_truth(truth)
    assert tr.size == raw.size > 1000
    assert attrs["phantom"] == "nema-iq" and attrs["counters"]["singles"] == raw.size
    events, stats = decode_boards(frames.read_bytes(), brain)
    assert stats.frames_bad == 0 and stats.seq_gaps == 0 and stats.events == raw.size
    for b in range(brain.n_boards):
        mine = raw[brain.crystal_board[raw["crystal"]] == b]
        got = events[brain.crystal_board[events["crystal"]] == b]
        np.testing.assert_array_equal(got, mine)          # exact: times, crystals, ADC codes
    for board in stats.boards.values():
        assert [m.kind for m in board.markers] == ["start", "stop"]
        assert board.watermark_ps == 20_000_000_000
    # one file per board
    assert run(*EMULATE, "--to", str(tmp_path / "b{board}.frames")) == 0
    parts = [(tmp_path / f"b{b}.frames").read_bytes() for b in range(brain.n_boards)]
    assert sum(len(p) for p in parts) == len(frames.read_bytes())


@pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")),
                    reason="no C compiler for the firmware packer (apt-get install gcc; .ci/run does)")
def test_firmware_c_packer_sends_the_same_bytes(tmp_path):
    assert run(*EMULATE, "--to", str(tmp_path / "a.frames")) == 0
    assert run(*EMULATE, "--to", str(tmp_path / "b.frames"), "--firmware", "c") == 0
    assert (tmp_path / "a.frames").read_bytes() == (tmp_path / "b.frames").read_bytes()


def _free_port(n: int) -> int:
    from daq.control.emulated import free_port_block

    return free_port_block(n)


def test_zeromq_one_push_per_board_and_port_in_use(brain, tmp_path):
    base = _free_port(brain.n_boards)
    ctx = zmq.Context.instance()
    pulls = []
    for b in range(brain.n_boards):
        s = timed_socket(zmq.PULL, ctx)
        s.connect(f"tcp://127.0.0.1:{base + b}")
        pulls.append(s)
    errors = []

    def emulate() -> None:
        try:
            run(*EMULATE, "--to", f"tcp://127.0.0.1:{base}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    th = threading.Thread(target=emulate)
    th.start()
    received = [bytearray() for _ in pulls]
    stopped = [False] * len(pulls)
    poller = zmq.Poller()
    for s in pulls:
        poller.register(s, zmq.POLLIN)
    while not all(stopped):
        ready = dict(poller.poll(30_000))
        assert ready, "no frames from the emulator"
        for b, s in enumerate(pulls):
            if s in ready:
                received[b] += s.recv()
                markers = decode_boards(bytes(received[b]), brain)[1].boards[b].markers
                stopped[b] = any(m.kind == "stop" for m in markers)
    th.join(30)
    assert not errors
    for b, data in enumerate(received):
        events, stats = decode_boards(bytes(data), brain)
        assert set(stats.boards) == {b} and stats.frames_bad == 0 and stats.seq_gaps == 0
        assert np.all(brain.crystal_board[events["crystal"]] == b)
    for s in pulls:
        s.close(0)
    # a port in use is one clear line
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=f"127.0.0.1:{port}.*in use"):
            run(*EMULATE, "--to", f"tcp://127.0.0.1:{port}")


def test_pty_prints_one_device_per_board_and_carries_the_frames(brain, capsys):
    done = threading.Event()
    errors = []

    def emulate() -> None:
        try:
            run("emulate", "--phantom", "point", "--activity-mbq", "0.2", "--duration", "0.005",
                "--fast", "--quiet", "--to", "pty")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        done.set()

    th = threading.Thread(target=emulate)
    th.start()
    paths = []
    deadline = time.monotonic() + 120  # the emulator compiles its kernels before it announces
    while time.monotonic() < deadline:
        out = capsys.readouterr().out
        paths += [line.split("pty:")[1] for line in out.splitlines() if "pty:" in line]
        if len(paths) == brain.n_boards:
            break
        done.wait(0.05)
    assert len(paths) == brain.n_boards
    fds = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in paths]
    data = [bytearray() for _ in fds]
    while not done.is_set() or any(_drain(fd, d) for fd, d in zip(fds, data, strict=True)):
        for fd, d in zip(fds, data, strict=True):
            _drain(fd, d)
    th.join(10)
    assert not errors
    for b, d in enumerate(data):
        _, stats = decode_boards(bytes(d), brain)
        assert set(stats.boards) == {b}
        assert [m.kind for m in stats.boards[b].markers] == ["start", "stop"]
    for fd in fds:
        os.close(fd)


def _drain(fd: int, into: bytearray) -> bool:
    try:
        chunk = os.read(fd, 1 << 16)
    except (BlockingIOError, OSError):
        return False
    into += chunk
    return bool(chunk)


def test_replay_sends_a_recorded_file_again(tmp_path):
    first, second = tmp_path / "a.frames", tmp_path / "b.frames"
    assert run(*EMULATE, "--to", str(first)) == 0
    assert run("emulate", "--replay", str(first), "--to", str(second), "--quiet") == 0
    assert second.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("block_bytes", [97, 4096, 1 << 20])
def test_replay_sends_each_board_its_whole_frames_in_order(tmp_path, block_bytes):
    """Version 2 frames (a 0x00 on each side) and version 1 frames of 4 boards, interleaved,
    replayed in small blocks and messages: each board gets exactly its bytes, in order."""
    from emulator.outputs.boards import replay

    rng = np.random.default_rng(9)
    per_board: dict[int, list[bytes]] = {b: [] for b in range(4)}
    stream = bytearray()
    for k in range(60):
        b = int(rng.integers(4))
        raw = np.zeros(int(rng.integers(1, 300)), RAW_DTYPE)
        raw["t"] = np.cumsum(rng.integers(1, 1000, raw.size))
        frames = wire.encode(raw, board=b, first_seq=k)
        if k % 7 == 3:  # framed as version 1 did: no leading delimiter
            frames = b"".join(c + b"\0" for c in frames.split(b"\0") if c)
        per_board[b].append(frames)
        stream += frames

    class Recorder:
        def __init__(self) -> None:
            self.got: dict[int, bytearray] = {b: bytearray() for b in range(4)}

        def send(self, board: int, data: bytes) -> None:
            self.got[board] += data

    path = tmp_path / "mixed.frames"
    path.write_bytes(bytes(stream))
    sink = Recorder()
    sent = replay(path, sink, 4, block_bytes=block_bytes, max_message_bytes=300)
    assert {b: bytes(g) for b, g in sink.got.items()} == {
        b: b"".join(f) for b, f in per_board.items()}
    assert sent.bytes == len(stream)


@pytest.mark.parametrize(("argv", "message"), [
    (("--phantom", "banana"), "unknown phantom 'banana'"),
    (("--nuclide", "F-19"), "unknown nuclide 'F-19'"),
    (("--activity-mbq", "-3"), "activity must be"),
    (("--duration", "0"), "--duration must be"),
    (("--to", "/dev/ttyNOPE0"), "serial device /dev/ttyNOPE0 does not exist"),
    (("--to", "/no/such/dir/x.frames"), "cannot write frames file"),
    (("--replay", "/no/such.frames"), "does not exist"),
    (("--scanner", "nope"), "unknown scanner 'nope'"),
])
def test_bad_input_is_one_clear_line(argv, message, tmp_path):
    base = ["emulate", "--duration", "0.01", "--fast", "--quiet", "--to", str(tmp_path / "x")]
    with pytest.raises(UserError, match=message):
        run(*base, *argv)


def test_count_rate_writes_csv_and_png(tmp_path, capsys):
    assert run("count-rate", "--activities-mbq", "5", "40", "--decays", "1.5e5", "--out",
               str(tmp_path)) == 0
    lines = (tmp_path / "count_rate.csv").read_text().splitlines()
    assert lines[1].startswith("activity_mbq,") and len(lines) == 4
    assert (tmp_path / "count_rate.png").stat().st_size > 5000
    assert "peak NECR" in capsys.readouterr().out
