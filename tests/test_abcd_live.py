"""CAEN digitizers live through ABCD: a test publisher with ABCD's exact topic framing and
records out of time order within each message; the run equals the import of the same records
from an .ade file, and replays from its journal with no options."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zmq
from foreign import abcd_rows, channel_map
from sockets import timed_socket

from daq.control.emulated import free_port_block
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
    r = subprocess.run([sys.executable, "-m", "petdaq", "import", str(tmp_path / "events.ade"),
                        "--format", "abcd", "--name", "file", *common],
                       capture_output=True, text=True, timeout=300)
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
    r = subprocess.run([sys.executable, "-m", "petdaq", "sort", str(tmp_path / "live"),
                        "--out", str(tmp_path / "again")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(coinc, read_listmode(tmp_path / "again" / "coincidences.h5")[0])


@pytest.mark.parametrize("link, said", [
    ("abcd://127.0.0.1", "is not abcd://HOST:PORT"),
    ("abcd://127.0.0.1:99999", "is not abcd://HOST:PORT")])
def test_a_bad_abcd_link_is_one_line(tmp_path, link, said):
    r = subprocess.run([sys.executable, "-m", "petdaq", "acquire", "--from", link,
                        "--ns-per-sample", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
