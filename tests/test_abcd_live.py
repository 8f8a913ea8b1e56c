"""CAEN digitizers live through ABCD: a test publisher with ABCD's exact topic framing and
records out of time order within each message; the run equals the import of the same records
from an .ade file, and replays from its journal with no options; ABCD's status rates reach the
monitor stream."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from foreign import CHANNELS, abcd_rows, channel_map
from inprocess import petdaq as in_process
from sockets import timed_socket

from daq.control.emulated import free_port_block
from daq.messages import MONITOR_TOPIC, unpack
from daq.pipeline.digitizers.abcdlive import status_endpoint_of
from daq.pipeline.digitizers.abcdstatus import parse_status
from hw.formats import abcd
from infra.errors import UserError
from runstore.listmode import read_listmode


def _rows(brain) -> tuple[np.ndarray, np.ndarray]:
    """ABCD records of an emulated scan on 256 channels, and the crystals they map to."""
    import emulator

    singles = emulator.simulate(brain, "nema-iq", "F-18", 20.0, 0.01, seed=9).singles
    return abcd_rows(singles, brain.n_crystals, seed=4)


def _message(n: int, data: bytes) -> bytes:
    return f"data_abcd_events_v0_n{n}_s{len(data)}".encode() + b" " + data


def test_live_abcd_equals_the_import_of_its_records_and_replays(tmp_path, brain):
    rows, chosen = _rows(brain)
    channel_map(tmp_path / "map.csv", chosen)
    common = ["--scanner", "bedside-brain", "--map", str(tmp_path / "map.csv"),
              "--ns-per-sample", "2", "--kev-per-unit", "0.5", "--no-recon", "--out",
              str(tmp_path)]
    port = free_port_block(1)
    ctx = zmq.Context.instance()
    pub = timed_socket(zmq.XPUB, ctx)  # ABCD's PUB; XPUB tells the test when the DAQ subscribed
    pub.bind(f"tcp://127.0.0.1:{port}")
    daq = subprocess.Popen([sys.executable, "-m", "petdaq", "acquire", "--from",
                            f"abcd://127.0.0.1:{port}", "--duration", "12", "--name", "live",
                            *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert pub.poll(60_000), "the DAQ never subscribed"
        while pub.poll(500):
            pub.recv()  # its subscriptions (events and waveforms)
        pub.send(b"data_abcd_waveforms_v0_n0_s4 " + bytes(4))  # skipped, counted
        pub.send(b"data_abcd_events_v0_s99 " + bytes(16))  # its size is not its payload's
        for n, a in enumerate(range(0, rows.size, 500)):
            pub.send(_message(n, rows[a:a + 500].tobytes()))
        _, err = daq.communicate(timeout=120)
    finally:
        daq.kill()
        pub.close(0)
    assert daq.returncode == 0, err
    rows.tofile(tmp_path / "events.ade")
    r = in_process("import", str(tmp_path / "events.ade"), "--format", "abcd", "--name", "file",
                   *common)
    assert r.returncode == 0, r.stderr
    live, file = (json.loads((tmp_path / n / "run.json").read_text())["stop"]
                  for n in ("live", "file"))
    for k in ("records", "singles", "prompts", "delayeds"):
        assert live["counts"][k] == file["counts"][k], k
    assert live["counts"]["records"] == rows.size
    assert live["counts"]["waveform_messages"] == 1 and live["losses"]["bad_messages"] == 1
    assert live["losses"]["late_events"] == 0 and live["counts"]["messages"] == -(-rows.size // 500)
    coinc = read_listmode(tmp_path / "live" / "coincidences.h5")[0]
    assert coinc.size > 100
    assert np.array_equal(coinc, read_listmode(tmp_path / "file" / "coincidences.h5")[0])
    r = in_process("sort", str(tmp_path / "live"), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(coinc, read_listmode(tmp_path / "again" / "coincidences.h5")[0])


@pytest.mark.parametrize("link, said", [
    ("abcd://127.0.0.1", "is not abcd://HOST:PORT"),
    ("abcd://127.0.0.1:99999", "is not abcd://HOST:PORT")])
def test_a_bad_abcd_link_is_one_line(tmp_path, link, said):
    r = in_process("acquire", "--from", link, "--ns-per-sample", "2", "--out", str(tmp_path))
    assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_abcd_status_is_read_in_both_shapes_and_garbage_is_refused():
    objects = {"acquisition": {"rates": [{"channel": 0, "rate": 1500.5}, {"channel": 3,
                                                                           "rate": 2.5}]},
               "counts": [{"channel": 0, "counts": 7}, {"rate": 1}]}
    s = parse_status(b"status_abcd_v0_n1_s9 " + json.dumps(objects).encode(), 4.0)
    assert s.channel_hz == {0: 1500.5, 3: 2.5} and s.total_hz == 1503.0
    assert s.channel_counts == {0: 7.0} and s.received_s == 4.0
    plain = {"acquisition": {"rates": [10, "x", None, 30.0, True]}, "counts": [5, 6]}
    s = parse_status(b"status_abcd " + json.dumps(plain).encode(), 0.0)
    assert s.channel_hz == {0: 10.0, 3: 30.0} and s.channel_counts == {0: 5.0, 1: 6.0}
    assert parse_status(b'status_abcd {"acquisition": {"rates": [NaN, 1]}}', 0.0).total_hz == 1
    assert parse_status(b"status_abcd {}", 0.0).total_hz == 0.0
    for bad in (b"status_abcd {not json", b"status_abcd [1, 2]", b"status_abcd \xff\xfe",
                b"events_abcd {}", b"status_abcd", b"status_abcd " + b"[" * 100_000):
        with pytest.raises(ValueError):
            parse_status(bad, 0.0)


def test_abcd_status_port_is_the_data_port_minus_one_or_named():
    assert status_endpoint_of("abcd://daq-pc:16181") == "tcp://daq-pc:16180"
    assert status_endpoint_of("abcd://daq-pc:16181?status=7000") == "tcp://daq-pc:7000"
    with pytest.raises(UserError, match="status=P"):
        status_endpoint_of("abcd://daq-pc:1")


def _xpub(ctx: zmq.Context, port: int) -> zmq.Socket:
    """A PUB of ABCD's; XPUB tells the test when the DAQ subscribed."""
    pub = timed_socket(zmq.XPUB, ctx)
    pub.bind(f"tcp://127.0.0.1:{port}")
    return pub


def _subscribed(pub: zmq.Socket) -> None:
    assert pub.poll(60_000), "the DAQ never subscribed"
    while pub.poll(500):
        pub.recv()


def _monitor_until(sub: zmq.Socket, ok, timeout_s: float = 60.0) -> dict:
    """The first monitor message for which ``ok`` holds (each receive times out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topic, payload = sub.recv_multipart()
        message = unpack(payload)
        if topic == MONITOR_TOPIC and ok(message):
            return message
    raise AssertionError("no such monitor message")


def test_abcd_status_rates_reach_the_monitor(tmp_path, brain):
    rows = np.zeros(2000, abcd.EVENT)
    rows["timestamp"] = np.arange(rows.size) * 1024 * 500  # a record every µs at 2 ns/sample
    rows["channel"] = np.arange(rows.size) % CHANNELS
    rows["qlong"] = 1022
    channel_map(tmp_path / "map.csv", np.arange(CHANNELS) * (brain.n_crystals // CHANNELS))
    ctx = zmq.Context.instance()
    base = free_port_block(2)
    status, data = _xpub(ctx, base), _xpub(ctx, base + 1)  # ABCD's 16180 and 16181
    monitor_port = free_port_block(1)
    sub = timed_socket(zmq.SUB, ctx)
    sub.setsockopt(zmq.SUBSCRIBE, MONITOR_TOPIC)
    sub.connect(f"tcp://127.0.0.1:{monitor_port}")
    daq = subprocess.Popen([sys.executable, "-m", "petdaq", "acquire", "--from",
                            f"abcd://127.0.0.1:{base + 1}", "--duration", "10", "--monitor-port",
                            str(monitor_port), "--scanner", "bedside-brain", "--map",
                            str(tmp_path / "map.csv"), "--ns-per-sample", "2", "--kev-per-unit",
                            "0.5", "--no-recon", "--out", str(tmp_path), "--name", "live"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rates = [{"channel": c, "rate": 100.0 + c} for c in range(4)]
    try:
        _subscribed(data)
        _subscribed(status)
        status.send(b"status_abcd_v0_n0_s9 {broken")  # counted, the run goes on
        status.send(b"status_abcd_v0_n1_s99 " + json.dumps(
            {"acquisition": {"running": True, "rates": rates}, "counts": [1, 2]}).encode())
        data.send(_message(0, rows.tobytes()))
        got = _monitor_until(sub, lambda m: m["boards"] and "digitizer_cps" in m["boards"][0]
                             and m["totals"]["records"] == rows.size)
        _, err = daq.communicate(timeout=120)
    finally:
        daq.kill()
        for s in (status, data, sub):
            s.close(0)
    assert daq.returncode == 0, err
    board = got["boards"][0]
    assert board["board"] == 0 and board["digitizer_cps"] == sum(r["rate"] for r in rates)
    assert 0 <= board["status_age_s"] < 30 and board["singles_cps"] >= 0
    assert got["state"] == "running" and got["scanner"] == "bedside-brain"
    assert got["duration_s"] == 10 and got["losses"]["bad_messages"] == 0
    assert set(got["rates"]) == {"singles", "prompts", "delayeds", "necr"}
    stop = json.loads((tmp_path / "live" / "run.json").read_text())["stop"]
    assert stop["counts"]["bad_status_messages"] == 1 and stop["counts"]["status_messages"] == 1
    assert stop["counts"]["records"] == rows.size


def test_a_killed_abcd_acquisition_recovers_from_its_journal(tmp_path, brain):
    """``kill -9`` of an ABCD acquisition once its journal holds every record (no stop
    document, a list-mode file cut short): ``petdaq recover`` sorts the journal again into the
    coincidences an import of the same records gives."""
    rows, chosen = _rows(brain)
    channel_map(tmp_path / "map.csv", chosen)
    common = ["--scanner", "bedside-brain", "--map", str(tmp_path / "map.csv"),
              "--ns-per-sample", "2", "--kev-per-unit", "0.5", "--no-recon", "--out",
              str(tmp_path)]
    port = free_port_block(2) + 1
    pub = _xpub(zmq.Context.instance(), port)
    daq = subprocess.Popen([sys.executable, "-m", "petdaq", "acquire", "--from",
                            f"abcd://127.0.0.1:{port}", "--duration", "120", "--name", "killed",
                            *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = tmp_path / "killed" / "journal.bpj"
    try:
        _subscribed(pub)
        for n, a in enumerate(range(0, rows.size, 500)):
            pub.send(_message(n, rows[a:a + 500].tobytes()))
        deadline = time.monotonic() + 60
        while not (journal.is_file() and journal.stat().st_size > rows.nbytes):
            assert time.monotonic() < deadline, "the journal never held every record"
            time.sleep(0.1)
    finally:
        daq.kill()
        daq.communicate(timeout=30)
        pub.close(0)
    assert json.loads((tmp_path / "killed" / "run.json").read_text()).get("stop") is None
    r = in_process("recover", str(tmp_path / "killed"), "--no-recon")
    assert r.returncode == 0, r.stderr
    stop = json.loads((tmp_path / "killed" / "run.json").read_text())["stop"]
    assert stop["reason"] == "recovered from the journal" and stop["exit_status"] == "abort"
    assert stop["counts"]["records"] == rows.size
    rows.tofile(tmp_path / "events.ade")
    r = in_process("import", str(tmp_path / "events.ade"), "--format", "abcd", "--name", "file",
                   *common)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_listmode(tmp_path / "killed" / "coincidences.h5")[0],
                          read_listmode(tmp_path / "file" / "coincidences.h5")[0])
