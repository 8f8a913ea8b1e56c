"""Campaigns on a real ``distributed.LocalCluster`` of two worker processes: the same count-rate
table, the same frames file byte for byte and the same images as one process; a worker killed in
the middle costs only its task; a study started again reuses what it finished."""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest
from inprocess import petdaq as _inprocess

from emulator import countrate
from emulator.engine import Emulator
from emulator.shards import Recipe, Sharded
from hw.scanner import load_scanner
from infra import cluster
from infra.errors import UserError

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def petdaq(*argv: str) -> subprocess.CompletedProcess:
    return _inprocess(*argv)


@pytest.fixture(scope="module")
def client():
    with cluster.client_for(cluster.ClusterSpec(workers=2)) as c:
        yield c


def test_cluster_specs():
    assert cluster.parse_cluster("local:3") == cluster.ClusterSpec(workers=3)
    assert cluster.parse_cluster("local").workers >= 1
    assert cluster.parse_cluster("tcp://node7:8786").address == "tcp://node7:8786"
    for bad in ("local:0", "locale", "tcp://node7", "http://x:1", "8786"):
        with pytest.raises(UserError, match=r"--cluster must be|N >= 1"):
            cluster.parse_cluster(bad)


def test_no_scheduler_is_one_line():
    r = petdaq("count-rate", "--activities-mbq", "5", "--cluster", "tcp://127.0.0.1:9",
               "--out", os.devnull)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "petdaq: error: no Dask scheduler answers at tcp://127.0.0.1:9")


def test_count_rate_on_two_workers_is_one_process(tmp_path, client):
    argv = ["count-rate", "--activities-mbq", "5", "60", "300", "--decays", "1.5e5"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert petdaq(*argv, "--out", str(one)).returncode == 0
    r = petdaq(*argv, "--out", str(two), "--cluster", "local:2")
    assert r.returncode == 0, r.stderr
    assert "count-rate: 3/3 points" in r.stderr
    assert (one / "count_rate.csv").read_bytes() == (two / "count_rate.csv").read_bytes()
    assert not (two / "count_rate.points").exists()
    # an interrupted study (two of its three points done) started again: only one is measured
    scanner = load_scanner("bedside-brain")
    countrate.study(scanner, [5.0, 60.0], phantom="nu2-scatter", decays=1.5e5,
                    points=tmp_path / "again" / "count_rate.points")
    # on the module's running cluster, by its scheduler's address
    r = petdaq(*argv, "--out", str(tmp_path / "again"), "--cluster", client.scheduler.address)
    assert r.returncode == 0, r.stderr
    assert "2 of 3 points kept from an earlier run of this study" in r.stderr
    assert (one / "count_rate.csv").read_bytes() == \
        (tmp_path / "again" / "count_rate.csv").read_bytes()


def test_sharded_emulation_writes_the_same_bytes(tmp_path):
    argv = ["emulate", "--phantom", "nu2-scatter", "--activity-mbq", "30", "--duration", "0.12",
            "--seed", "4"]
    assert petdaq(*argv, "--fast", "--to", str(tmp_path / "one.frames")).returncode == 0
    r = petdaq(*argv, "--to", str(tmp_path / "two.frames"), "--cluster", "local:2")
    assert r.returncode == 0, r.stderr
    one = (tmp_path / "one.frames").read_bytes()
    assert len(one) > 1_000_000
    assert one == (tmp_path / "two.frames").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.frames", "two.frames"]
    r = petdaq(*argv, "--to", "tcp://127.0.0.1:5999", "--cluster", "local:2")
    assert r.returncode == 2
    assert "--cluster emulates into a frames file" in r.stderr


def test_a_killed_worker_costs_only_its_shard(client, tmp_path):
    """SIGKILL to a worker while shards are in flight: its shards run again elsewhere and the
    singles are those of one process."""
    scanner = load_scanner("bedside-brain")
    recipe = Recipe(scanner, "nu2-scatter", "F-18", 30.0, seed=8)
    duration_s = 0.15
    alone = np.concatenate([c.raw for c in Emulator(scanner, "nu2-scatter", "F-18", 30.0, 8)
                            .run(duration_s, chunk_s=0.01)])
    emu = recipe.build()
    sharded = Sharded(client, recipe, emu.slices(duration_s), duration_s, 0.0,
                      tmp_path / "shards")
    assert len(sharded.bounds) >= 4
    pids = client.run(os.getpid)
    parts, killed = [], False
    for chunk in emu.run(duration_s, chunk_s=0.01, physics=sharded.physics()):
        parts.append(chunk.raw)
        if not killed:
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            killed = True
    assert killed and sharded.shards_done == len(sharded.bounds)
    assert np.array_equal(np.concatenate(parts), alone)
    assert not list((tmp_path / "shards").glob("shard-*.npz"))  # every shard taken and removed
    sharded.remove()  # with what the killed worker was writing, if it was (a hidden .partial-)
    assert not (tmp_path / "shards").exists()


def test_a_killed_worker_during_a_count_rate_study(client, tmp_path):
    """One worker kills itself (SIGKILL) as it starts its first task: the study still gives
    the table one process gives."""
    from distributed import WorkerPlugin

    scanner = load_scanner("bedside-brain")
    kw = {"duration_s": 0.01, "phantom": "nu2-scatter"}
    alone = countrate.study(scanner, [10.0, 40.0, 80.0], **kw)
    victim = next(iter(client.run(os.getpid).values()))

    class KillOnFirstTask(WorkerPlugin):
        name = "kill-on-first-task"

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and os.getpid() == victim:
                os.kill(victim, signal.SIGKILL)

    client.register_plugin(KillOnFirstTask())
    result = countrate.study(scanner, [10.0, 40.0, 80.0], **kw, client=client,
                             points=tmp_path / "points")
    assert victim not in client.run(os.getpid).values()  # it died (its nanny started another)
    assert result.rows == alone.rows
    # the same study again on the same cluster (the scanner sent to the workers again)
    assert countrate.study(scanner, [10.0, 40.0, 80.0], **kw, client=client).rows == alone.rows


@pytest.mark.slow
def test_sort_and_recon_of_several_runs_on_the_cluster(tmp_path, client):
    """The sort on a cluster the command starts (``local:2``); the reconstructions on the
    module's running cluster, by its scheduler's address (a cluster's start costs seconds)."""
    from recon import read_nifti
    from runstore.listmode import read_listmode

    runs = []
    for k, seed in enumerate((1, 2)):
        frames = tmp_path / f"r{k}.frames"
        assert petdaq("emulate", "--phantom", "nema-iq", "--activity-mbq", "5", "--duration",
                      "0.3", "--seed", str(seed), "--fast", "--quiet",
                      "--to", str(frames)).returncode == 0
        r = petdaq("acquire", "--from", str(frames), "--no-recon", "--out", str(tmp_path),
                   "--name", f"run{k}")
        assert r.returncode == 0, r.stderr
        runs.append(tmp_path / f"run{k}")
    r = petdaq("sort", *map(str, runs), "--window-ps", "3000", "--cluster", "local:2")
    assert r.returncode == 0, r.stderr
    for run in runs:
        (again,) = run.glob("replay-*")
        alone = tmp_path / f"alone-{run.name}"
        assert petdaq("sort", str(run), "--window-ps", "3000", "--out", str(alone)
                      ).returncode == 0
        assert np.array_equal(read_listmode(again / "coincidences.h5")[0],
                              read_listmode(alone / "coincidences.h5")[0])
    # the campaign's tasks without attenuation (each run's calculated map costs a sensitivity
    # image of its own); the dynamic frames below take the default map, on the cluster and off
    common = ["--iterations", "1", "--subsets", "2", "--voxel", "4", "--no-dicom",
              "--no-attenuation"]
    on = ["--cluster", client.scheduler.address]
    r = petdaq("recon", *map(str, runs), *common, *on)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("reconstructed") == 2
    on_cluster = [read_nifti(run / "images" / "image.nii.gz").array for run in runs]
    # the campaign started again: both runs skipped, their lines printed again
    r = petdaq("recon", *map(str, runs), *common, *on)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("done before with the same settings and inputs, skipped") == 2
    assert r.stdout.count("reconstructed") == 2
    # a run whose image is gone is done again
    (runs[1] / "images" / "image.nii.gz").unlink()
    r = petdaq("recon", *map(str, runs), *common, *on)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("skipped") == 1 and (runs[1] / "images" / "image.nii.gz").is_file()
    assert np.array_equal(read_nifti(runs[1] / "images" / "image.nii.gz").array, on_cluster[1])
    # in one process, each run on its own (no receipt involved): the same images
    for run, image in zip(runs, on_cluster, strict=True):
        (run / "images" / "image.nii.gz").unlink()
        assert petdaq("recon", str(run), *common).returncode == 0
        assert np.array_equal(read_nifti(run / "images" / "image.nii.gz").array, image)
    # another setting: done again
    r = petdaq("recon", *map(str, runs), *common[2:], "--iterations", "2")
    assert r.returncode == 0 and "skipped" not in r.stderr
    # a dynamic run's frames as the tasks
    for where, extra in (("dyn-two", on), ("dyn-one", [])):
        r = petdaq("recon", str(runs[0]), "--frames", "3x0.06s", *common[:-1], "--out",
                   str(tmp_path / where), *extra)
        assert r.returncode == 0, r.stderr
    (two,) = (tmp_path / "dyn-two").rglob("*_pet.nii.gz")
    (one,) = (tmp_path / "dyn-one").rglob("*_pet.nii.gz")
    import nibabel

    assert np.array_equal(np.asarray(nibabel.load(two).dataobj),
                          np.asarray(nibabel.load(one).dataobj))
    assert nibabel.load(two).shape[-1] == 3
    r = petdaq("recon", *map(str, runs), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "--out is for one run" in r.stderr
    r = petdaq("recon", str(runs[0]), str(tmp_path / "nothing"), *on)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"petdaq: error: {tmp_path / 'nothing'} is neither a run directory nor a .h5 / .npy "
        "list-mode file")
