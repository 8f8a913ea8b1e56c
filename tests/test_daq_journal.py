"""The journal: every block written comes back; damage is skipped and counted; a full disk is a
clear error and leaves a readable journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinydisk import tiny_tmpfs

from daq.pipeline.links.journal import (
    HEADER_BYTES,
    JournalError,
    JournalStats,
    JournalWriter,
    read_journal,
)


def _blocks(n: int, seed: int = 0) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, 4)), rng.bytes(int(rng.integers(1, 3000)))) for _ in range(n)]


def _write(path: Path, blocks: list[tuple[int, bytes]]) -> None:
    w = JournalWriter(path)
    for stream, payload in blocks:
        w.append(stream, payload)
    w.close()


def test_every_block_reads_back(tmp_path: Path) -> None:
    blocks = _blocks(500)
    _write(tmp_path / "j.bpj", blocks)
    got = [(s, p) for s, _t, p in read_journal(tmp_path / "j.bpj")]
    assert got == blocks


def test_corrupt_block_is_skipped_and_counted(tmp_path: Path) -> None:
    blocks = _blocks(200, seed=1)
    path = tmp_path / "j.bpj"
    _write(path, blocks)
    data = bytearray(path.read_bytes())
    # flip a payload byte of block 100
    offset = sum(HEADER_BYTES + len(p) for _, p in blocks[:100]) + HEADER_BYTES + 3
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    stats = JournalStats()
    got = [(s, p) for s, _t, p in read_journal(path, stats)]
    assert got == blocks[:100] + blocks[101:]
    assert stats.corrupt_blocks == 1
    assert "corrupt journal block" in stats.problems[0]


def test_truncated_tail_of_a_killed_writer(tmp_path: Path) -> None:
    blocks = _blocks(50, seed=2)
    path = tmp_path / "j.bpj"
    _write(path, blocks)
    path.write_bytes(path.read_bytes()[:-7])
    stats = JournalStats()
    got = [(s, p) for s, _t, p in read_journal(path, stats)]
    assert got == blocks[:-1]
    assert stats.truncated_tail_bytes == HEADER_BYTES + len(blocks[-1][1]) - 7


def test_missing_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        list(read_journal(tmp_path / "nope.bpj"))


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot create journal"):
        JournalWriter(tmp_path / "no" / "such" / "dir" / "j.bpj")


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs (root) -- the real 'disk full' (ENOSPC)."""
    with tiny_tmpfs(tmp_path) as mnt:
        yield mnt


def test_full_disk_is_one_clear_error_and_the_journal_stays_readable(tiny_disk: Path) -> None:
    path = tiny_disk / "j.bpj"
    w = JournalWriter(path, buffer_bytes=8 << 10)
    written = []
    with pytest.raises(JournalError, match=r"write failed.*No space left"):
        for stream, payload in _blocks(10_000, seed=3):
            w.append(stream, payload)
            written.append((stream, payload))
    with pytest.raises(JournalError):
        w.close()
    got = [(s, p) for s, _t, p in read_journal(path)]
    assert len(got) > 10
    assert got == written[: len(got)]  # whole blocks only, in order, nothing garbled


def test_a_journal_that_would_leave_too_little_free_stops_taking_blocks(tmp_path: Path
                                                                       ) -> None:
    """``min_free_bytes``: the block that would leave less free is refused (an error), what
    came before is on disk whole, and the refused payload is counted."""
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    w = JournalWriter(tmp_path / "j.bpj", min_free_bytes=free - (64 << 20))  # 64 MiB to use
    w.append(0, b"x" * 1000)
    with pytest.raises(JournalError, match="the disk is full"):
        w.append(1, b"y" * (192 << 20))
    with pytest.raises(JournalError):
        w.append(2, b"z" * 10)
    with pytest.raises(JournalError):
        w.close()
    assert [(s, p) for s, _t, p in read_journal(tmp_path / "j.bpj")] == [(0, b"x" * 1000)]
    assert w.payload_bytes_lost == (192 << 20) + 10
    assert w.bytes_written == (tmp_path / "j.bpj").stat().st_size


def test_flush_interval_bounds_what_a_kill_loses(tmp_path: Path) -> None:
    """A writer that never flushes itself, killed with SIGKILL once its flush timer has put
    1000 appends on disk: what is on disk is every append up to some point, none missing."""
    path = tmp_path / "j.bpj"
    script = f"""
import time, sys
from daq.pipeline.links.journal import JournalWriter
w = JournalWriter({str(path)!r})
i = 0
t0 = time.monotonic()
while True:
    w.append(0, i.to_bytes(4, "little") * 64)
    i += 1
    if i == 1000:
        print("go", flush=True)
    time.sleep(0.0005)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    import time

    deadline = time.monotonic() + 60
    while not path.is_file() or path.stat().st_size < 1000 * (28 + 256):  # 1000 blocks
        assert time.monotonic() < deadline, "the flush timer never wrote the journal"
        time.sleep(0.05)
    os.kill(proc.pid, 9)
    proc.wait()
    got = [int.from_bytes(p[:4], "little") for _s, _t, p in read_journal(path)]
    assert got == list(range(len(got)))
    assert len(got) >= 1000


def test_a_read_of_several_pieces_is_one_block_copied_as_it_is_appended(tmp_path: Path) -> None:
    """A receiver's read (several ZeroMQ messages) goes in as one block, its pieces copied into
    the journal's ring at once (a buffer that changes afterwards changes nothing); a piece
    beyond the largest block is split across blocks with the same bytes."""
    from daq.pipeline.links import journal

    path = tmp_path / "j.bpj"
    w = JournalWriter(path)
    scratch = bytearray(b"mutable")
    w.append(0, [b"abc", memoryview(b"defg"), b"", scratch])
    scratch[:] = b"CHANGED"
    w.append(1, b"single")
    w.close()
    blocks = [(s, p) for s, _t, p in read_journal(path)]
    assert blocks == [(0, b"abcdefgmutable"), (1, b"single")]
    pieces = [b"x" * 5, b"y" * 12, b"z" * 3]
    split = [b"".join(bytes(p) for p in blk) for blk in journal._blocks(pieces, limit=8)]
    assert split == [b"xxxxxyyy", b"yyyyyyyy", b"yzzz"]


def test_a_run_on_a_disk_that_fills_up_stops_failed_with_everything_closed(tmp_path: Path
                                                                         ) -> None:
    """``petdaq acquire`` of a recording bigger than its disk: it stops with exit status 1 once
    the disk is nearly full, its stop document (exit status fail) says so with the journal's
    true size, the journal reads back whole, and the list-mode file opens."""
    from daq.pipeline.acquisition import MIN_FREE_BYTES
    from hw import RAW_DTYPE, load_scanner, wire
    from runstore.listmode import read_listmode
    from runstore.rundir import RunDir

    disk = tmp_path / "disk"
    disk.mkdir()
    size = MIN_FREE_BYTES + (8 << 20)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        brain = load_scanner("bedside-brain")
        rng = np.random.default_rng(5)
        frames = tmp_path / "scan.frames"
        with open(frames, "wb") as fh:
            for _ in range(6):
                for b in range(brain.n_boards):
                    raw = np.zeros(250_000, RAW_DTYPE)
                    raw["t"] = np.cumsum(rng.integers(1, 20_000, raw.size))
                    raw["crystal"] = rng.choice(np.flatnonzero(brain.crystal_board == b),
                                                raw.size)
                    raw["adc"] = rng.integers(100, 4000, raw.size)
                    fh.write(wire.encode(raw, board=b, first_seq=1, scanner=brain))
        assert frames.stat().st_size > size
        r = subprocess.run([sys.executable, "-m", "petdaq", "acquire", "--from", str(frames),
                            "--no-recon", "--out", str(disk), "--name", "r"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 1, r.stderr
        run = RunDir(disk / "r")
        stop = run.stop
        assert stop.failed and "is full" in stop.reason, stop.reason
        assert [s["error"] for s in stop.details["streams"]] == [None]  # the disk's, not the link's
        assert stop.counts["journal_bytes"] == run.journal.stat().st_size > 0
        # what was received is journaled whole; what came after the disk filled is counted
        assert sum(len(p) for _s, _t, p in read_journal(run.journal)) == stop.counts["bytes"]
        assert stop.counts["bytes"] + stop.losses["journal_bytes_lost"] <= frames.stat().st_size
        coinc, _ = read_listmode(run.listmode)
        assert coinc.size == stop.counts["prompts"] + stop.counts["delayeds"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _cobs_decode(chunk: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(chunk):
        code = chunk[i]
        out += chunk[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(chunk):
            out.append(0)
    return bytes(out)


def as_version_1(stream: bytes) -> bytes:
    """A version 2 stream as version 1 sent it: no leading 0x00, version byte 1 (new CRC)."""
    import struct
    import zlib

    from test_wire import ref_cobs

    out = bytearray()
    for chunk in (c for c in stream.split(b"\0") if c):
        body = b"\x01" + _cobs_decode(chunk)[1:-4]
        out += ref_cobs(body + struct.pack("<I", zlib.crc32(body))) + b"\0"
    return bytes(out)


def test_a_version_1_journal_replays_to_the_coincidences_of_version_2(tmp_path: Path, brain
                                                                       ) -> None:
    """Journals recorded before wire version 2 replay: the same events framed as version 1
    and as version 2 give the same coincidences, byte for byte."""
    from boardstream import board_events, board_messages

    from daq.pipeline.process.calibration import Calibration
    from daq.pipeline.process.processor import SortSettings
    from daq.pipeline.replay import replay_journal
    from runstore.listmode import read_listmode

    streams = [b"".join(board_messages(brain, b, board_events(brain, b, 40_000, 2e6, seed=3)))
               for b in range(brain.n_boards)]
    assert as_version_1(streams[0]) != streams[0]
    results, coincidences = {}, {}
    for version, convert in ((1, as_version_1), (2, lambda s: s)):
        journal = tmp_path / f"v{version}.bpj"
        w = JournalWriter(journal)
        data = [convert(s) for s in streams]
        for k in range(0, max(len(d) for d in data), 1 << 16):
            for b, d in enumerate(data):
                if d[k:k + (1 << 16)]:
                    w.append(b, d[k:k + (1 << 16)])
        w.close()
        results[version] = replay_journal(journal, brain, Calibration.nominal(brain),
                                          SortSettings(), tmp_path / f"v{version}.h5", threads=1)
        coincidences[version] = read_listmode(tmp_path / f"v{version}.h5")[0]
    assert coincidences[1].size > 0
    np.testing.assert_array_equal(coincidences[1], coincidences[2])
    assert {k: v for k, v in results[1]["counts"].items() if k != "bytes"} == {
        k: v for k, v in results[2]["counts"].items() if k != "bytes"}
    assert results[1]["counts"]["singles"] == 40_000 * brain.n_boards
    assert not any(results[1]["losses"].values()), results[1]["losses"]


def _direct_or_skip(w: JournalWriter) -> None:
    if w._direct is None:
        w.close()
        pytest.skip("this file system has no direct I/O")


def test_direct_io_keeps_every_block_and_the_exact_size(tmp_path: Path) -> None:
    """Direct writes (whole pages) and the buffered last page of each flush make exactly the
    blocks appended, across flushes and across a reopened journal that ends mid-page."""
    path = tmp_path / "j.bpj"
    blocks = _blocks(900, seed=5)
    w = JournalWriter(path, buffer_bytes=100_000)  # many flushes, each ending mid-page
    _direct_or_skip(w)
    for stream, payload in blocks[:600]:
        w.append(stream, payload)
    w.flush()
    assert path.stat().st_size == w.bytes_written  # the partial page is there already
    w.close()
    assert path.stat().st_size % 4096 != 0
    w = JournalWriter(path)  # appends after the partial page
    _direct_or_skip(w)
    for stream, payload in blocks[600:]:
        w.append(stream, payload)
    w.close()
    assert [(s, p) for s, _t, p in read_journal(path)] == blocks
    assert path.stat().st_size == sum(HEADER_BYTES + len(p) for _, p in blocks)


def test_a_failed_direct_write_is_a_clear_error_and_keeps_whole_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.bpj"
    blocks = _blocks(300, seed=6)
    w = JournalWriter(path, buffer_bytes=1 << 30)
    _direct_or_skip(w)
    for stream, payload in blocks[:100]:
        w.append(stream, payload)
    w.flush()
    real_pwrite, direct_fd = os.pwrite, w._direct.direct_fd

    def full(fd: int, data, offset: int) -> int:
        if fd == direct_fd:
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full)
    for stream, payload in blocks[100:]:
        w.append(stream, payload)
    with pytest.raises(JournalError, match="write failed"):
        w.flush()
    monkeypatch.undo()
    with pytest.raises(JournalError):
        w.close()
    got = [(s, p) for s, _t, p in read_journal(path)]
    assert got == blocks[:len(got)] and len(got) >= 100


def test_held_blocks_lap_the_ring_and_every_block_is_written_whole(tmp_path: Path) -> None:
    """Blocks held until read (as the DAQ's decoder reads them) go round a 2 MiB ring several
    times: each payload reads back where it lies (in two pieces where it reaches the ring's
    end), and the file holds every block, through direct writes that start mid-ring."""
    path = tmp_path / "j.bpj"
    blocks = [(k % 4, bytes([k % 251]) * (20_000 + 997 * (k % 13))) for k in range(400)]
    w = JournalWriter(path, buffer_bytes=100_000, ring_bytes=2 << 20)
    assert w._ring.capacity == 2 << 20
    split = 0
    for stream, payload in blocks:
        held = w.append(stream, payload, hold=True)
        assert b"".join(bytes(v) for v in held.views) == payload
        assert all(v.readonly for v in held.views)
        split += len(held.views) > 1
        w.release(held)
    w.close()
    assert sum(len(p) for _, p in blocks) > 4 * (2 << 20) and split >= 3
    assert [(s, p) for s, _t, p in read_journal(path)] == blocks


def test_an_append_waits_while_the_ring_is_full_of_held_blocks(tmp_path: Path) -> None:
    """Back-pressure, never an overwrite: with the ring full of blocks not yet read, the next
    append waits until one is released; the held bytes are intact meanwhile."""
    import threading

    w = JournalWriter(tmp_path / "j.bpj", ring_bytes=2 << 20)
    payloads = [bytes([k]) * 450_000 for k in range(4)]
    held = [w.append(0, p, hold=True) for p in payloads]
    done = threading.Event()
    t = threading.Thread(target=lambda: (w.append(1, b"n" * 450_000), done.set()), daemon=True)
    t.start()
    assert not done.wait(0.5)  # 4 x 450 kB held + 450 kB more > 2 MiB
    assert [b"".join(bytes(v) for v in h.views) for h in held] == payloads
    w.release(held[0])
    assert done.wait(10.0)
    for h in held[1:]:
        w.release(h)
    w.close()
    assert [p for _s, _t, p in read_journal(tmp_path / "j.bpj")] == [*payloads, b"n" * 450_000]


def test_a_closed_journal_gives_its_ring_to_the_next(tmp_path: Path) -> None:
    """The ring's memory is made and touched once and reused by the process's next journal."""
    w = JournalWriter(tmp_path / "a.bpj", ring_bytes=6 << 20)
    ring = w._ring
    w.append(0, b"x" * 1000)
    w.close()
    w = JournalWriter(tmp_path / "b.bpj", ring_bytes=6 << 20)
    assert w._ring is ring
    w.append(0, b"y" * 1000)
    w.close()
    assert [p for _s, _t, p in read_journal(tmp_path / "b.bpj")] == [b"y" * 1000]
