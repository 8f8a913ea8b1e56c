"""``petdaq bench --campaigns``: a count-rate study and a sharded emulation on Dask workers.

Each campaign runs in one process (every core, as without ``--cluster``), then on a local cluster
of 1, 2, 4, ... up to every core worker processes (one thread each); the figure is its wall time
once the cluster is up and every worker has loaded the compiled kernels (that start-up is
given apart),
with the speed-up over one worker and a check that every run gave the one-process result.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hw.scanner import Scanner

#: Count-rate points (MBq) and decays per point, by mode.
STUDY = {"quick": ((10.0, 40.0, 150.0, 400.0), 1.5e5), "default": ((10.0, 40.0, 150.0, 400.0),
                                                                   6e5),
         "full": ((5.0, 10.0, 20.0, 40.0, 70.0, 100.0, 150.0, 200.0), 3e6)}
#: Emulated seconds of the NU 2 scatter phantom at 40 MBq (about 29 M singles/s), by mode.
EMULATION_S = {"quick": 0.1, "default": 0.3, "full": 1.0}
EMULATION_MBQ = 40.0


@dataclass
class CampaignTime:
    """One campaign on one setting: ``workers`` 0 is one process without a cluster."""

    campaign: str
    workers: int
    seconds: float
    start_s: float
    same: bool
    speedup: float = 1.0


def _study(scanner: Scanner, mode: str, client: Any) -> str:
    from emulator import countrate

    activities, decays = STUDY[mode]
    result = countrate.study(scanner, activities, decays=decays, client=client)
    return hashlib.sha256(repr(result.rows).encode()).hexdigest()


def _emulation(scanner: Scanner, mode: str, client: Any) -> str:
    from emulator.shards import Recipe, Sharded

    recipe = Recipe(scanner, "nu2-scatter", "F-18", EMULATION_MBQ, seed=11)
    emu = recipe.build()
    seconds = EMULATION_S[mode]
    physics = None
    with tempfile.TemporaryDirectory() as tmp:
        if client is not None:
            physics = Sharded(client, recipe, emu.slices(seconds), seconds, 0.0,
                              Path(tmp)).physics()
        h = hashlib.sha256()
        for chunk in emu.run(seconds, chunk_s=0.01, physics=physics):
            h.update(np.ascontiguousarray(chunk.raw).tobytes())
    return h.hexdigest()


CAMPAIGNS: dict[str, Callable[[Scanner, str, Any], str]] = {
    "count-rate study": _study, "sharded emulation (40 MBq)": _emulation}


def measure(scanner: Scanner, mode: str, worker_counts: list[int],
            say: Callable[[str], None]) -> list[CampaignTime]:
    """Every campaign in one process and on each number of local workers."""
    from infra import cluster

    for fn in CAMPAIGNS.values():         # numba's cache filled before anything is timed
        fn(scanner, "quick", None)
    times: list[CampaignTime] = []
    reference: dict[str, str] = {}
    for name, fn in CAMPAIGNS.items():
        say(f"{name}: one process")
        t0 = time.perf_counter()
        reference[name] = fn(scanner, mode, None)
        times.append(CampaignTime(name, 0, time.perf_counter() - t0, 0.0, True))
    for n in worker_counts:
        t0 = time.perf_counter()
        with cluster.client_for(cluster.ClusterSpec(workers=n)) as client:
            client.run(_warm_worker, scanner)
            start_s = time.perf_counter() - t0
            for name, fn in CAMPAIGNS.items():
                say(f"{name}: {n} workers")
                t1 = time.perf_counter()
                same = fn(scanner, mode, client) == reference[name]
                times.append(CampaignTime(name, n, time.perf_counter() - t1, start_s, same))
    for t in times:
        one = next((u for u in times if u.campaign == t.campaign and u.workers == 1), None)
        t.speedup = one.seconds / t.seconds if one is not None else 1.0
    return times


def _warm_worker(scanner: Scanner) -> None:
    """A moment of each campaign's work on this worker: numba loads its kernels now."""
    from emulator import countrate, shards

    countrate.measure(scanner, 10.0, 2e-4, phantom="nu2-scatter", threads=1)
    recipe = shards.Recipe(scanner, "nu2-scatter", "F-18", EMULATION_MBQ, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        shards.shard(recipe, 2e-4, 0.0, 0, 1, str(Path(tmp) / "warm.npz"))


def format_table(times: list[CampaignTime]) -> list[str]:
    lines = [f"{'campaign':28s} {'workers':>8s} {'seconds':>8s} {'vs 1 worker':>12s} "
             f"{'cluster start s':>16s} {'same result':>12s}"]
    for t in sorted(times, key=lambda t: (t.campaign, t.workers)):
        who = "1 process" if t.workers == 0 else str(t.workers)
        lines.append(f"{t.campaign:28s} {who:>8s} {t.seconds:8.1f} {t.speedup:11.2f}x "
                     f"{t.start_s:16.1f} {'yes' if t.same else 'NO':>12s}")
    return lines
