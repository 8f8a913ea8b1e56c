"""The board's firmware in the loop: built for a Cortex-M (``make firmware``), run in QEMU, fed
the emulator's front-end words, commanded over its UART. Skipped (one line) where
qemu-system-arm or arm-none-eabi-gcc is missing; ``.ci/run`` installs both."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hw import wire
from hw.wire.commands import Opcode, Result, encode_command, reply_of

#: Emulated Cortex-M boards paced in real time run alone, not beside other tests.
pytestmark = [pytest.mark.serial, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc (apt-get install qemu-system-arm "
           "gcc-arm-none-eabi; .ci/run installs them)")]

FIRMWARE = Path(wire.__file__).parent.parent / "firmware"


def _version() -> int:
    text = (FIRMWARE / "bpet_board.h").read_text()
    return int(re.search(r"BPET_FIRMWARE_VERSION 0x([0-9a-fA-F]+)u", text).group(1), 16)


@pytest.fixture
def board(tmp_path):
    from emulator.outputs.qemuboards import BoardLink, image

    link = BoardLink(image(), 2, tmp_path / "board2")
    yield link
    link.close(timeout_s=5)


def _replies(data: bytes) -> list:
    return [r for r in (reply_of(c) for c in data.split(b"\x00") if c) if r is not None]


def test_make_firmware_builds_the_image_and_says_its_size_and_version(tmp_path):
    r = subprocess.run(["make", "-s", "-C", str(FIRMWARE), f"O={tmp_path}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+\d+\s+\d+\s+\d+\s+\d+\s+[0-9a-f]+\s+\S+bpet-mps2-an385.elf$", r.stdout,
                     re.M), r.stdout
    assert f"firmware {_version():06x} for mps2-an385" in r.stdout


def test_ping_answers_the_built_version(board):
    board.command(Opcode.PING, seq=7)
    (reply,) = _replies(board.take_until(wire.REPLY, timeout_s=30))
    assert (reply.board, reply.opcode, reply.result, reply.cmd_seq) == (2, Opcode.PING,
                                                                        Result.OK, 7)
    assert reply.value == _version() and reply.rejected == 0
    uptimes = []
    for _ in range(2):
        board.command(Opcode.UPTIME)
        (up,) = _replies(board.take_until(wire.REPLY))
        uptimes.append(up.value)
        time.sleep(0.3)
    assert 0 < uptimes[0] < uptimes[1]


def test_bad_unknown_and_untimely_commands_are_rejected_and_counted(board):
    ping = bytearray(encode_command(Opcode.PING, board=2, seq=1))
    ping[-3] = ping[-3] % 255 + 1  # a CRC byte changed (never to 0x00: the frame stays whole)
    board.send_bytes(bytes(ping))
    assert _replies(board.take_until(wire.REPLY))[0].result == Result.BAD_FRAME
    board.command(99, seq=2)
    assert _replies(board.take_until(wire.REPLY))[0].result == Result.UNKNOWN
    board.command(Opcode.STOP, seq=3)  # not running
    assert _replies(board.take_until(wire.REPLY))[0].result == Result.WRONG_STATE
    board.command(Opcode.START, a=5, seq=4)
    start = board.take_until(wire.RUN_START)
    board.command(Opcode.START, a=6, seq=5)  # already running: refused, the run goes on
    (again,) = _replies(board.take_until(wire.REPLY))
    assert (again.result, again.cmd_seq, again.rejected) == (Result.WRONG_STATE, 5, 4)
    board.command(Opcode.STOP, seq=6)
    stop = board.take_until(wire.RUN_STOP)
    d = wire.Decoder()
    d.feed(start + stop)
    assert [(m.kind, m.run) for m in d.markers] == [("start", 5), ("stop", 5)]


def test_a_stalled_host_makes_the_fifo_overflow_and_every_drop_is_counted(board, brain,
                                                                         tmp_path):
    """The host stops reading: the UART's socket fills, the UART stalls, and after 0.5 s the
    firmware reads its front end regardless; events that find the FIFO full are dropped and
    counted. The events received plus the last heartbeat's overflows are the events fed, and a
    run acquired from what the board sent has them in its losses."""
    from emulator.outputs.qemuboards import IN_EVENT, IN_TICK, INPUT_DTYPE

    board.command(Opcode.START, a=1)
    start = board.take_until(wire.RUN_START, timeout_s=30)
    board.reading.clear()
    n = 400_000
    words = np.zeros(n + n // 1000, INPUT_DTYPE)
    body = words.reshape(-1, 1001)
    body[:, :1000]["kind"] = IN_EVENT
    body[:, :1000]["coarse"] = np.arange(n).reshape(-1, 1000) * 4
    channels = np.unique(brain.crystal_channel[brain.crystal_board == 2])
    body[:, :1000]["channel"] = channels[np.arange(n).reshape(-1, 1000) % channels.size]
    body[:, :1000]["adc"] = 600
    body[:, 1000]["kind"] = IN_TICK
    body[:, 1000]["coarse"] = (np.arange(1, n // 1000 + 1) * 1000) * 4
    board.feed(words)
    time.sleep(4)  # the host reads nothing for a while
    board.reading.set()
    board.command(Opcode.STOP)
    rest = board.take_until(wire.RUN_STOP, timeout_s=120)
    d = wire.Decoder()
    events = d.feed(start + rest)
    status = d.stats.boards[2].status
    assert status.fifo_overflows > 0
    assert events.size + status.fifo_overflows == n
    assert status.events_sent == events.size and d.stats.events_lost == 0
    (tmp_path / "board2.frames").write_bytes(start + rest)
    r = subprocess.run([sys.executable, "-m", "petdaq", "acquire", "--from",
                        str(tmp_path / "board2.frames"), "--scanner", "bedside-brain",
                        "--no-recon", "--out", str(tmp_path), "--name", "stalled"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    import json

    stop = json.loads((tmp_path / "stalled" / "run.json").read_text())["stop"]
    assert stop["losses"]["firmware_fifo_overflows"] == status.fifo_overflows
    assert stop["counts"]["singles"] == events.size


def test_emulate_through_qemu_writes_the_bytes_of_the_c_packer(tmp_path):
    common = ["--scanner", "bedside-brain", "--phantom", "nema-iq", "--nuclide", "F-18",
              "--activity-mbq", "0.2", "--duration", "0.05", "--seed", "3", "--quiet"]
    for packer in ("c", "qemu"):
        r = subprocess.run([sys.executable, "-m", "petdaq", "emulate", *common, "--firmware",
                            packer, "--to", str(tmp_path / f"{packer}.frames")],
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
    c = (tmp_path / "c.frames").read_bytes()
    assert len(c) > 10_000 and (tmp_path / "qemu.frames").read_bytes() == c


def test_a_scan_through_the_boards_firmware_loses_nothing_and_sorts_as_the_host(tmp_path):
    """``petdaq run --firmware qemu``: every board's firmware in QEMU, started and stopped by
    the DAQ's commands (the emulator sends none then: the run could not end without them); the
    run ends at the boards' run-stop markers with no loss, and its coincidences are those of
    the same scan packed by the firmware's C packer."""
    import json

    from runstore.listmode import read_listmode

    for packer in ("c", "qemu"):
        r = subprocess.run([sys.executable, "-m", "petdaq", "run", "--firmware", packer,
                            "--phantom", "nema-iq", "--activity-mbq", "0.2", "--duration",
                            "0.1", "--seed", "4", "--fast", "--no-recon", "--out",
                            str(tmp_path), "--name", packer], capture_output=True, text=True,
                           timeout=280)
        assert r.returncode == 0, r.stderr
        assert "losses   none" in r.stdout, r.stdout
    stop = json.loads((tmp_path / "qemu" / "run.json").read_text())["stop"]
    assert stop["reason"] == "end of stream"
    qemu, c = (read_listmode(tmp_path / n / "coincidences.h5")[0] for n in ("qemu", "c"))
    assert qemu.size > 50 and np.array_equal(qemu, c)


def test_the_firmware_section_replaces_its_earlier_version(tmp_path):
    from daq.perf.firmware import TITLE, write

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## A\n\na\n")
    write(doc, [TITLE, "", "first", ""])
    write(doc, [TITLE, "", "second", ""])
    assert doc.read_text() == f"# Performance\n\n## A\n\na\n\n{TITLE}\n\nsecond\n"
    doc.write_text(f"# Performance\n\n{TITLE}\n\nold\n\n## B\n\nb\n")
    write(doc, [TITLE, "", "new", ""])
    assert doc.read_text() == f"# Performance\n\n{TITLE}\n\nnew\n\n## B\n\nb\n"


def _pgrep(*args: str) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", *args], capture_output=True, text=True,
                                           check=False).stdout.split()]


def _qemu_of_board(board: int, ancestor: int) -> int | None:
    """The pid of the QEMU running ``board``'s firmware under the process ``ancestor``."""
    for child in _pgrep("-P", str(ancestor)):  # the emulator
        found = _pgrep("-P", str(child), "-f", f"arg=bpet,arg={board} ")
        if found:
            return found[0]
    return None


def test_a_board_whose_qemu_dies_ends_the_run_with_a_clear_reason(tmp_path):
    """``kill -9`` of one board's QEMU mid-scan: the emulator names the board and QEMU's end,
    the run stops with status ``fail`` within seconds, never a hang."""
    import json

    run = subprocess.Popen([sys.executable, "-m", "petdaq", "run", "--firmware", "qemu",
                            "--phantom", "nema-iq", "--activity-mbq", "0.2", "--duration", "10",
                            "--fast", "--no-recon", "--out", str(tmp_path), "--name", "killed"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (pid := _qemu_of_board(2, run.pid)) is None:
            assert time.monotonic() < deadline and run.poll() is None, "board 2 never started"
            time.sleep(0.2)
        time.sleep(2)
        killed = time.monotonic()
        subprocess.run(["kill", "-9", str(pid)], check=True)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert time.monotonic() - killed < 30
    assert run.returncode != 0
    assert "board 2's firmware stopped answering: its QEMU exited with code -9" in err
    stop = json.loads((tmp_path / "killed" / "run.json").read_text())["stop"]
    assert stop["exit_status"] == "fail" and "emulator" in stop["reason"]


@pytest.mark.parametrize("args, said", [
    (["--firmware", "c", "--commands", "tcp://127.0.0.1:5999"],
     "--commands is for --firmware qemu"),
    (["--firmware", "qemu", "--commands", "tcp://0.0.0.0:5999"],
     "the boards take commands on this machine only")])
def test_commands_only_reach_the_firmware_and_only_from_this_machine(tmp_path, args, said):
    r = subprocess.run([sys.executable, "-m", "petdaq", "emulate", "--duration", "0.01", *args,
                        "--to", str(tmp_path / "x.frames"), "--quiet"], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_no_boards_qemu_outlives_a_killed_emulator(tmp_path):
    """``kill -9`` of the emulator mid-scan: its boards' QEMUs go with it (none is left
    running, taking the machine's cores, after the run)."""
    run = subprocess.Popen([sys.executable, "-m", "petdaq", "run", "--firmware", "qemu",
                            "--phantom", "nema-iq", "--activity-mbq", "0.2", "--duration", "10",
                            "--fast", "--no-recon", "--out", str(tmp_path), "--name", "orphans"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _qemu_of_board(3, run.pid) is None:
            assert time.monotonic() < deadline and run.poll() is None, "board 3 never started"
            time.sleep(0.2)
        emulator = next(c for c in _pgrep("-P", str(run.pid)) if _pgrep("-P", str(c)))
        boards = _pgrep("-P", str(emulator), "-f", "arg=bpet")
        assert len(boards) >= 2, boards
        subprocess.run(["kill", "-9", str(emulator)], check=True)
        deadline = time.monotonic() + 10
        while (left := [b for b in boards if _state(b) not in ("gone", "Z")]
               ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"QEMUs left running after their emulator died: {left}"
    finally:
        run.kill()
        run.wait()


def _state(pid: int) -> str:
    """The process's state letter (``Z`` a zombie), or ``gone``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
