"""numba's cache keyed floor by floor: a change compiles again the kernels of its floor and of
the floors above, never those below; each kernel's cache is in its floor's directory; old
directories are pruned per floor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numba

from infra import numbacache
from infra.numbacache import PACKAGES, floor_digests, source_digest


def _tree(root: Path) -> None:
    for package in PACKAGES:
        (root / package / "sub").mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
        (root / package / "sub" / "kernels.py").write_text("X = 1\n")


def test_a_change_moves_its_floor_and_those_above_it(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = floor_digests(tmp_path)
    assert len(set(before.values())) == len(PACKAGES)
    assert source_digest(tmp_path) == before["daq"]
    (tmp_path / "recon" / "sub" / "kernels.py").write_text("X = 2\n")
    after = floor_digests(tmp_path)
    below = PACKAGES[:PACKAGES.index("recon")]
    assert all(after[p] == before[p] for p in below)           # the emulator's kernels stay
    assert all(after[p] != before[p] for p in PACKAGES if p not in below)
    (tmp_path / "hw" / "new.py").write_text("Y = 1\n")         # a new module counts too
    again = floor_digests(tmp_path)
    assert again["infra"] == before["infra"]
    assert all(again[p] != after[p] for p in PACKAGES[1:])


def test_each_kernel_is_cached_in_its_floors_directory() -> None:
    from emulator.physics import transport
    from recon.spect import osem

    dirs = numbacache.FloorLocator.dirs
    if not dirs:  # NUMBA_CACHE_DIR set by the user: numba's own locator
        assert os.environ.get("NUMBA_CACHE_DIR")
        return
    assert transport.transport._cache._cache_path.startswith(str(dirs["emulator"]) + os.sep)
    assert osem._spect_back._cache._cache_path.startswith(str(dirs["recon"]) + os.sep)

    @numba.njit(cache=True)
    def outside(x):  # a kernel of no floor: the directory of the whole source
        return x + 1

    assert outside._cache._cache_path.startswith(str(dirs["other"]) + os.sep)


def test_a_fresh_cache_is_filled_per_floor_and_old_versions_are_pruned(tmp_path: Path) -> None:
    base = tmp_path / "bedside-pet" / "numba"
    stale = [base / f"recon-{k:016x}" for k in range(4)] + [base / "0123456789abcdef"]
    for age, folder in enumerate(stale):
        folder.mkdir(parents=True)
        os.utime(folder, (time.time() - 100 * (age + 1),) * 2)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = ("import numpy as np; from recon.spect import osem; "
            "p = np.ones((2, 3), np.float32); osem._attenuate(p, np.full((2, 3), 0.5, np.float32));"
            " assert p.sum() == 3.0")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300,
                   cwd=numbacache.ROOT)
    recon = [p for p in base.iterdir() if p.name.startswith("recon-")]
    current = base / f"recon-{floor_digests(numbacache.ROOT)['recon']}"
    assert sorted(recon) == sorted([current, *stale[:2]])      # the newest two old ones kept
    assert list(current.rglob("osem._attenuate-*.nbi"))
    assert (base / "0123456789abcdef").is_dir()                # the whole-source kind: its own
    assert {p.name.rpartition("-")[0] for p in base.iterdir() if "-" in p.name} == \
        {*PACKAGES, "other"}


KERNEL = '''import numba


@numba.njit(cache=True)
def kernel(n):
    s = 0.0
    for i in range(n):
        s += (i % 7) * 0.5
    return s
'''

CALL = '''import json, os, sys, time
import infra
from infra import compilelock
compilelock.WAIT_S = float(sys.argv[2])
sys.path.insert(0, sys.argv[1])
import kernels
while not os.path.exists(os.path.join(sys.argv[1], "go")):
    time.sleep(0.001)
assert kernels.kernel(10) == 12.0
stats = kernels.kernel.stats
print(json.dumps({"misses": sum(stats.cache_misses.values()),
                  "hits": sum(stats.cache_hits.values())}))
'''


def _callers(tmp_path: Path, n: int, wait_s: float = 180.0) -> list[subprocess.Popen]:
    (tmp_path / "kernels.py").write_text(KERNEL)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    return [subprocess.Popen([sys.executable, "-c", CALL, str(tmp_path), str(wait_s)],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=numbacache.ROOT)
            for _ in range(n)]


def _answers(procs: list[subprocess.Popen]) -> list[dict]:
    import json

    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return [json.loads(o) for o in outs]


def test_a_kernel_missed_by_several_processes_at_once_is_compiled_by_one(tmp_path: Path):
    """Three processes call a new cached kernel at the same instant: one compiles it, the two
    others wait for it and load its machine code from the cache."""
    procs = _callers(tmp_path, 3)
    time.sleep(1.0)             # every process imported, waiting at the start line
    (tmp_path / "go").touch()
    found = _answers(procs)
    assert sorted(a["misses"] for a in found) == [0, 0, 1], found
    assert sorted(a["hits"] for a in found) == [0, 1, 1], found


def test_a_lock_held_too_long_is_given_up_and_the_kernel_compiled(tmp_path: Path):
    """A lock another process keeps (a compilation that failed in a process that lives on):
    the caller waits its ``WAIT_S`` and then compiles the kernel itself."""
    import fcntl

    (tmp_path / "go").touch()
    assert _answers(_callers(tmp_path, 1)) == [{"misses": 1, "hits": 0}]
    (lock_file,) = (tmp_path / "cache").rglob("kernels.kernel-*.lock")
    for p in (tmp_path / "cache").rglob("*.nb[ic]"):
        p.unlink()      # the cache emptied; its lock taken by this process
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start = time.monotonic()
        found = _answers(_callers(tmp_path, 1, wait_s=0.5))
        waited_s = time.monotonic() - start
    assert found == [{"misses": 1, "hits": 0}] and waited_s >= 0.5


def test_another_clone_of_the_same_source_finds_its_kernels_compiled(tmp_path: Path):
    """Two copies of the product in two folders, one cache: the second copy loads the kernel
    the first compiled (numba's own folder names hash the source's absolute path)."""
    import json
    import shutil

    code = ("import json, numpy as np; from recon.spect import osem; "
            "p = np.ones((2, 3), np.float32); osem._attenuate(p, np.full((2, 3), 0.5, np.float32));"
            " s = osem._attenuate.stats; print(json.dumps({'file': osem.__file__, "
            "'misses': sum(s.cache_misses.values()), 'hits': sum(s.cache_hits.values())}))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    found = []
    for clone in ("a", "b"):
        for package in PACKAGES:
            shutil.copytree(numbacache.ROOT / package, tmp_path / clone / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=300, cwd=tmp_path / clone)
        assert r.returncode == 0, r.stderr
        found.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert found[0]["file"].startswith(str(tmp_path / "a")), found
    assert found[1]["file"].startswith(str(tmp_path / "b")), found
    assert (found[0]["misses"], found[0]["hits"]) == (1, 0)
    assert (found[1]["misses"], found[1]["hits"]) == (0, 1)


def test_a_kernel_runs_without_numbas_third_party_extensions_imported() -> None:
    """numba would import every installed ``numba_extensions`` entry point (awkward's, with
    uproot) at the first kernel a process runs: a start-up cost of every command."""
    from importlib.metadata import entry_points

    modules = sorted({ep.module.partition(".")[0]
                      for ep in entry_points(group="numba_extensions")})
    code = ("import sys, numpy as np; import infra; from coincidence.timeorder import "
            "in_time_order; assert in_time_order(np.arange(5)); "
            f"print([m for m in {modules!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=numbacache.ROOT)
    assert modules, "no numba extension installed: nothing to show"
    assert out.stdout.strip() == "[]", out.stdout


def test_every_worker_takes_the_one_tests_cache_folder_of_the_reconstructions_source() -> None:
    """tests/conftest.py: an xdist worker inherits its controller's folder of the tests' cache
    and takes it as it is, not a folder nested inside it, so that every phase of a run (the
    workers, the serial tests, the soak) shares the sensitivity images it computed; named by
    the source that computes them (the reconstruction's floor and those below it)."""
    here = Path(os.environ["BEDSIDE_PET_CACHE"])
    assert here.name == floor_digests(numbacache.ROOT)["recon"] and here.parent.name == "tests"
    assert here.parent.parent.name != here.name
