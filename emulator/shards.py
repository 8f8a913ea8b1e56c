"""Emulation sharded in time on a Dask cluster: the workers follow the photons of the slices.

The acquisition's slices (each seeded from the run's seed and its index) are grouped into shards;
a worker computes a shard's physics (decays, photon transport, crystal deposits) and leaves it as a
file on shared storage. Here the electronics (pile-up, dead time, carried from slice to slice) and
the digitizer take the slices in time order, so that nothing is lost at a shard's edge and the
singles, frames, coincidences and randoms are those of one process with the same seed, byte for
byte, for any number of workers. A shard file is written once, whole; a campaign started again
uses the shard files it finds and removes each once its slices are through the electronics.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emulator import phantoms
from emulator.detector.frontend import Bucketed
from emulator.engine import Emulator, SlicePhysics, Slices
from hw.motion import MotionTrace
from hw.scanner import Scanner
from infra import cluster
from infra.atomic import replacing
from infra.errors import make_folder

#: Slices per shard (about a million decays at the slices' default size).
SHARD_SLICES = 8
#: Shards computed ahead of the one the electronics take, per worker (bounds memory and disk).
AHEAD_PER_WORKER = 2


@dataclass(frozen=True)
class Recipe:
    """What an emulator is built from: the same recipe gives the same events anywhere."""

    scanner: Scanner
    phantom: str
    nuclide: str
    activity_mbq: float
    seed: int
    truth: bool = False
    kinetic_time_scale: float = 1.0
    motion: MotionTrace | None = None

    def key(self) -> tuple:
        moving = None if self.motion is None else hashlib.sha256(
            self.motion.rows.tobytes()).hexdigest()[:16]
        return (self.scanner.digest, phantoms.identity(self.phantom), self.nuclide,
                self.activity_mbq, self.seed,
                self.truth, self.kinetic_time_scale, moving)

    def build(self, threads: int | None = None) -> Emulator:
        return Emulator(self.scanner, self.phantom, self.nuclide, self.activity_mbq, self.seed,
                        truth=self.truth, threads=threads,
                        kinetic_time_scale=self.kinetic_time_scale, motion=self.motion)


_BUILT: dict[tuple, Emulator] = {}


def _emulator(recipe: Recipe) -> Emulator:
    """The worker's emulator of ``recipe`` (built once per worker process)."""
    key = (*recipe.key(), cluster.worker_threads())
    if key not in _BUILT:
        _BUILT.clear()
        _BUILT[key] = recipe.build(threads=key[-1])
    return _BUILT[key]


def shard(recipe: Recipe, duration_s: float, start_s: float, k0: int, k1: int, path: str
          ) -> str:
    """Slices ``k0..k1-1``'s physics into the file ``path`` (a worker's task; a file already
    there is a shard done before)."""
    if Path(path).is_file():
        return path
    emu = _emulator(recipe)
    plan = emu.slices(duration_s, start_s)
    arrays: dict[str, np.ndarray] = {}
    for k in range(k0, k1):
        phys = emu.slice_physics(k, plan)
        s = f"s{k - k0}"
        arrays[f"{s}_counts"] = phys.counts
        arrays[f"{s}_decays"] = np.array([phys.histories, phys.lu176], np.int64)
        arrays[f"{s}_blocks"] = np.array(len(phys.blocks), np.int64)
        for b, block in enumerate(phys.blocks):
            arrays[f"{s}_b{b}_dep"] = block.deposits
            arrays[f"{s}_b{b}_off"] = block.offsets
    with replacing(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def _load(path: str, n_slices: int) -> list[SlicePhysics]:
    with np.load(path, allow_pickle=False) as z:
        out = []
        for j in range(n_slices):
            s = f"s{j}"
            histories, lu = (int(v) for v in z[f"{s}_decays"])
            blocks = [Bucketed.restored(z[f"{s}_b{b}_dep"], z[f"{s}_b{b}_off"])
                      for b in range(int(z[f"{s}_blocks"]))]
            out.append(SlicePhysics(blocks, z[f"{s}_counts"], histories, lu))
    return out


class Sharded:
    """The physics of an acquisition's slices from shards computed on a cluster's workers, in
    time order (:meth:`physics`, for :meth:`Emulator.run`); ``shards_done`` counts them."""

    def __init__(self, client: Any, recipe: Recipe, slices: Slices, duration_s: float,
                 start_s: float, folder: Path) -> None:
        self.client, self.recipe, self.duration_s, self.start_s = client, recipe, duration_s, start_s
        self.bounds = [(k, min(k + SHARD_SLICES, slices.n)) for k in range(0, slices.n, SHARD_SLICES)]
        self.folder = make_folder(folder)
        self.shards_done = 0

    @staticmethod
    def folder_for(output: Path, recipe: Recipe, duration_s: float, start_s: float) -> Path:
        """The shard folder beside ``output``, named for the work (another recipe, another
        folder)."""
        key = cluster.result_key(*recipe.key(), duration_s, start_s, SHARD_SLICES)
        return output.parent / f".{output.name}.shards-{key}"

    def physics(self) -> Iterator[SlicePhysics]:
        workers = max(1, len(self.client.nthreads()))
        window = AHEAD_PER_WORKER * workers + 1
        shared = self.client.scatter(self.recipe, broadcast=True, hash=False)
        queued: deque = deque()
        for i, (k0, k1) in enumerate(self.bounds):
            queued.append(self.client.submit(shard, shared, self.duration_s, self.start_s, k0, k1,
                                             str(self.folder / f"shard-{i:06d}.npz"),
                                             pure=False))
            if len(queued) < window and i + 1 < len(self.bounds):
                continue
            yield from self._take(queued.popleft())
        while queued:
            yield from self._take(queued.popleft())

    def _take(self, future: Any) -> Iterator[SlicePhysics]:
        path = future.result()
        k0, k1 = self.bounds[self.shards_done]
        slices = _load(path, k1 - k0)
        Path(path).unlink()
        self.shards_done += 1
        yield from slices

    def remove(self) -> None:
        """Remove the shard folder (the run is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)
