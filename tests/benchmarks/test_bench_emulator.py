"""Throughput of the emulator: full-physics singles generation and the replay of a frames file.

Generation: bedside-brain, the brain phantom filled with 20 MBq of F-18, 20 ms of acquisition
(~0.4 M decays, ~0.4 M singles with the crystals' Lu-176), everything from decay to ADC code
(phantom scatter, crystal tracking, pile-up, dead time, digitizer); on one thread and on all the
machine's cores. The crystals' own Lu-176 alone (no source, 0.2 s, ~0.24 M singles, one thread):
short photon histories that start in a crystal, where the lanes' bookkeeping weighs most.
The same scan with the photon transport free: every call of
:func:`emulator.physics.transport.transport` replaced by a copy of the deposits and counters that call
made in a recorded run (the singles come out the same, checked), so what is timed is all the
rest (decay times and positions, emission, electronics, digitizer, sorting, Python): no faster
transport can make the scan faster than this.
The photon step alone: :func:`emulator.physics.lanes.step` on its 256 lanes, called from compiled code
(no Python dispatch), the lanes filled as the transport fills them (the photon pairs of 128
decays in the brain phantom); every lane runs every branch, so a call costs the same wherever
its photons are, or after they ended.
Replay: a recorded frames file of the same scan (100 ms, ~1.9 M events) read and sent frame by
frame to each board's ZeroMQ PUSH socket (tcp loopback, a PULL per board drained in
a thread), no re-simulation. ``extra_info["events_per_s"]`` from the median round.
Run: ``.venv/bin/python -m pytest tests/benchmarks/test_bench_emulator.py --benchmark-enable``.
"""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest
import zmq
from rates import record

import emulator
from emulator import rng
from emulator.blocks import default_threads
from emulator.jit import kernel
from emulator.outputs import boards as output
from emulator.outputs import packers as firmware
from emulator.outputs import sinks
from emulator.physics import lanes, pet, sampling, transport
from emulator.simd import seed_lanes

ACTIVITY_MBQ = 20.0
DURATION_S = 0.02


def _brain_scan(scanner, threads: int, compile_only: bool = False) -> emulator.Simulation:
    """The benchmarks' scan (or a short one that compiles the kernels it needs)."""
    if compile_only:
        return emulator.simulate(scanner, "brain", "F-18", 1.0, 0.002, seed=1, threads=threads)
    return emulator.simulate(scanner, "brain", "F-18", ACTIVITY_MBQ, DURATION_S, seed=3,
                             threads=threads)


@pytest.mark.parametrize("threads", [1, default_threads()], ids=["one-core", "all-cores"])
def test_bench_full_physics_singles(benchmark, brain, threads):
    _brain_scan(brain, threads, compile_only=True)
    sim = benchmark.pedantic(_brain_scan, args=(brain, threads), rounds=3, warmup_rounds=0)
    assert sim.raw.size > 0.5 * ACTIVITY_MBQ * 1e6 * DURATION_S
    benchmark.extra_info["threads"] = threads
    record(benchmark, sim.raw.size)


@pytest.fixture(scope="module")
def nema_phantoms(brain):
    """The NEMA image-quality phantom from its shapes and from 2 mm voxels."""
    from emulator.phantoms.rasterize import voxelized

    shapes = emulator.phantoms.get("nema-iq", brain)
    return {"shapes": shapes, "voxels": voxelized(shapes, 2.0)}


@pytest.mark.parametrize("kind", ["shapes", "voxels"])
def test_bench_phantom_singles(benchmark, brain, nema_phantoms, kind):
    """A voxel phantom's cost against the same object's shapes (benchcheck: at most 2x)."""
    phantom = nema_phantoms[kind]
    emulator.simulate(brain, phantom, "F-18", 1.0, 0.002, seed=1, threads=1)     # compile

    def generate():
        return emulator.simulate(brain, phantom, "F-18", ACTIVITY_MBQ, DURATION_S, seed=3,
                                 threads=1)

    sim = benchmark.pedantic(generate, rounds=3, warmup_rounds=0)
    assert sim.raw.size > 0.5 * ACTIVITY_MBQ * 1e6 * DURATION_S
    record(benchmark, sim.raw.size)


def test_bench_lu176_singles(benchmark, brain):
    emulator.simulate(brain, "point", "F-18", 0.0, 0.01, seed=1, threads=1)      # compile

    def generate():
        return emulator.simulate(brain, "point", "F-18", 0.0, 0.2, seed=3, threads=1)

    sim = benchmark.pedantic(generate, rounds=3, warmup_rounds=0)
    assert sim.counters["lu176_decays"] > 100_000 and sim.counters["decays"] == 0
    record(benchmark, sim.raw.size)


_TRANSPORT_ARGS = inspect.signature(transport.transport.py_func)


def _outputs(args: tuple) -> tuple:
    """The deposit buffer, its fill and the counters among the arguments of a transport call."""
    named = _TRANSPORT_ARGS.bind(*args).arguments
    return named["dep"], named["n_dep"], named["counters"]


class _Recorded:
    """Calls of the photon transport recorded in one run and replayed, in order, in the next."""

    def __init__(self, real) -> None:
        self.real, self.calls, self.next = real, [], 0

    def record(self, *args):
        dep, n_dep, counters = _outputs(args)
        before = counters.copy()
        n = self.real(*args)
        made = dep[n_dep:n].view(np.uint8).copy() if n >= 0 else None     # as bytes: numpy
        self.calls.append((n, made, counters - before))                 # copies records slowly
        return n

    def replay(self, *args):
        dep, n_dep, counters = _outputs(args)
        n, deposits, counted = self.calls[self.next]
        self.next += 1
        if n >= 0:
            dep[n_dep:n].view(np.uint8)[:] = deposits
        counters += counted
        return n


def test_bench_full_physics_free_transport(benchmark, brain, monkeypatch):
    _brain_scan(brain, 1, compile_only=True)
    calls = _Recorded(transport.transport)
    monkeypatch.setattr(transport, "transport", calls.record)
    real = _brain_scan(brain, 1)
    monkeypatch.setattr(transport, "transport", calls.replay)

    def replayed():
        calls.next = 0
        return _brain_scan(brain, 1)

    sim = benchmark.pedantic(replayed, rounds=3, warmup_rounds=0)
    assert calls.next == len(calls.calls)
    assert np.array_equal(sim.raw, real.raw) and sim.counters == real.counters
    record(benchmark, sim.raw.size)


@kernel
def _steps(calls, F, I, R, md, layer_ids, g, table):
    for _ in range(calls):
        lanes.step(F, I, R, F.shape[1], md, layer_ids, g, table)


def test_bench_photon_step(benchmark, brain):
    emu = emulator.Emulator(brain, "brain", "F-18", ACTIVITY_MBQ, seed=1, threads=1)
    n = lanes.LANES // 2                        # decays whose photon pairs fill the lanes
    work = lanes.scratch(2 * n)
    pos = np.empty((n, 3))
    sampling.positions(rng.state(8), emu._packed, pos)
    seed_lanes(rng.state(7), work.R)
    pet.emit(pos, emu.nuclide.positron_fraction, emu._range, emu._lines, work.R, work.src_f,
             work.src_i)
    slots = np.arange(lanes.LANES)
    lanes.refill(work.F, work.I, slots, lanes.LANES, work.src_f, work.src_i, slots, 0)
    md = emu._medium
    args = (work.F, work.I, work.R, md, tuple(range(md.layers.shape[0])), emu._ring, emu._table)
    _steps(1, *args)                                                       # compile
    calls = 4000
    benchmark.pedantic(_steps, args=(calls, *args), rounds=5, warmup_rounds=1)
    record(benchmark, calls * lanes.LANES)
    if "events_per_s" in benchmark.extra_info:
        benchmark.extra_info["ns_per_lane_step"] = 1e9 / benchmark.extra_info["events_per_s"]


@pytest.fixture(scope="module")
def recording(brain, tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "brain.frames"
    emu = emulator.Emulator(brain, "brain", "F-18", ACTIVITY_MBQ, seed=5)
    sink = sinks.open_sink(str(path), brain.n_boards)
    sent = output.transmit(emu.run(0.1, chunk_s=0.01), sink, brain,
                           firmware.packer("numba", brain), realtime=False)
    sink.close()
    return path, sent


def test_bench_replay_frames_file(benchmark, brain, recording):
    from daq.control.emulated import free_port_block

    path, recorded = recording
    base = free_port_block(brain.n_boards)
    sink = sinks.open_sink(f"tcp://127.0.0.1:{base}", brain.n_boards)
    ctx = zmq.Context.instance()
    pulls = []
    for b in range(brain.n_boards):
        s = ctx.socket(zmq.PULL)
        s.connect(f"tcp://127.0.0.1:{base + b}")
        pulls.append(s)
    received = [0]
    more = threading.Condition()
    stop = threading.Event()

    def drain() -> None:
        poller = zmq.Poller()
        for s in pulls:
            poller.register(s, zmq.POLLIN)
        while not stop.is_set():
            for s, _ in poller.poll(50):
                n = len(s.recv(copy=False))
                with more:
                    received[0] += n
                    more.notify()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()

    def replay():
        with more:
            received[0] = 0
        sent = output.replay(path, sink, brain.n_boards)
        with more:
            more.wait_for(lambda: received[0] >= sent.bytes, timeout=60)
        return sent

    try:
        sent = benchmark.pedantic(replay, rounds=5, warmup_rounds=1)
    finally:
        stop.set()
        thread.join(5)
        sink.close(0)
        for s in pulls:
            s.close(0)
    assert sent.events == recorded.events and received[0] == sent.bytes
    record(benchmark, sent.events)
