"""PETsys files in every layout (singles, groups and coincidences; normal or compact; binary or
text), written here row by row as sw_daq_tofpet2 writes them, read back and imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from foreign import write_map
from inprocess import petdaq
from petsys_files import split_into_groups, write_coincidences, write_groups
from test_import_formats import _check, _import

from hw.dtypes import SINGLE_DTYPE
from hw.formats import Pairs, ReadOptions, Records, read
from hw.formats.petsys import by_rule, once
from hw.formats.petsys_hits import SINGLE, Hits
from hw.formats.petsys_layout import detect
from petdaq.cli import main
from runstore.listmode import read_listmode

VARIANTS = [(compact, text) for compact in (False, True) for text in (False, True)]


def _name(compact: bool, text: bool) -> str:
    return f"{'compact' if compact else 'normal'}-{'text' if text else 'binary'}"


@pytest.fixture(scope="module")
def singles(brain) -> np.ndarray:
    """Emulated singles of a short scan (keV, time-ordered), energies in 1/64 keV: text files
    carry 6 decimals, which round-trip these exactly."""
    import emulator

    s = emulator.simulate(brain, "nema-iq", "F-18", 20.0, 0.01, seed=5).singles
    s["energy"] = np.round(s["energy"] * 64) / 64
    return s


@pytest.fixture(scope="module")
def identity(brain, tmp_path_factory) -> str:
    """board 0's channelID n is crystal n."""
    path = tmp_path_factory.mktemp("map") / "identity.csv"
    return str(write_map(path, [(0, c, c) for c in range(brain.n_crystals)]))


@pytest.fixture(scope="module")
def groups(singles):
    return split_into_groups(singles, np.random.default_rng(4))


def _records(path: Path, **options) -> list:
    return list(read(path, "petsys", ReadOptions(**options), chunk_records=5000))


def _rule(hits: np.ndarray, starts: np.ndarray, rule: str) -> Records:
    return by_rule(Hits(hits["time"], hits["energy"], hits["channel_id"], starts), rule)


def _same(got: Records, want: Records) -> bool:
    return all(np.array_equal(getattr(got, k), getattr(want, k))
               for k in ("channel", "t_ps", "energy"))


@pytest.mark.parametrize(("compact", "text"), VARIANTS, ids=[_name(*v) for v in VARIANTS])
def test_groups_in_every_layout_give_the_groups_written(tmp_path, groups, compact, text):
    """Each variant is told from the file; chunks of 5000 rows cut groups, which wait for their
    rest; every rule gives the groups' singles exactly (sum: the first hit's time and channel,
    the hits' energies summed)."""
    hits, starts = groups
    path = write_groups(tmp_path / "g.ldat", hits, starts, compact=compact, text=text)
    layout = detect(path)
    assert (layout.name, layout.text) == ("groups-compact" if compact else "groups", text)
    for rule in ("sum", "first", "all"):
        got = Records.join(_records(path, group_rule=rule))
        assert _same(got, _rule(hits, starts, rule)), rule
    assert Records.join(_records(path)).size == starts.size - 1 < hits.size


def test_a_hit_limit_keeps_mh_n_and_writes_fewer_rows(tmp_path, groups):
    """PETsys writes at most its hit limit of a group's hits, mh_n still the whole count."""
    hits, starts = groups
    path = write_groups(tmp_path / "g.ldat", hits, starts, limit=2)
    got = Records.join(_records(path, group_rule="all"))
    assert got.size == np.minimum(np.diff(starts), 2).sum()
    assert Records.join(_records(path)).size == starts.size - 1


def _pairs_of(brain, singles) -> np.ndarray:
    """Our sorter's prompts of the singles: the pairs a PETsys coincidence file will hold."""
    import coincidence

    acq = brain.acquisition
    c = coincidence.sort(singles, scanner=brain, window_ps=acq["coincidence_window_ps"],
                         energy_window_kev=acq["energy_window_kev"],
                         min_sector_difference=acq["min_sector_difference"])
    return c[c["delayed"] == 0]


def _coincidence_groups(prompts: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each prompt as two groups (side 1 the later single half the time: PETsys' order is not
    ours), some with extra hits; returns (hits, starts, swapped)."""
    swap = rng.random(prompts.size) < 0.5
    two = np.zeros(2 * prompts.size, SINGLE_DTYPE)
    t_b = prompts["t"] + prompts["dt"]
    for side, (t, c, e) in enumerate((
            (np.where(swap, t_b, prompts["t"]), np.where(swap, prompts["crystal_b"],
                                                         prompts["crystal_a"]),
             np.where(swap, prompts["energy_b"], prompts["energy_a"])),
            (np.where(swap, prompts["t"], t_b), np.where(swap, prompts["crystal_a"],
                                                         prompts["crystal_b"]),
             np.where(swap, prompts["energy_a"], prompts["energy_b"])))):
        two["t"][side::2], two["crystal"][side::2], two["energy"][side::2] = t, c, e
    hits, starts = split_into_groups(two, rng)
    return hits, starts, swap


@pytest.mark.parametrize(("compact", "text"), VARIANTS, ids=[_name(*v) for v in VARIANTS])
def test_coincidences_in_every_layout_give_the_pairs_written(tmp_path, brain, singles,
                                                             compact, text):
    """Each event's two groups, whatever the layout: the pairs' sides (first rule: the first
    hit exactly), and with --resort every group once."""
    prompts = _pairs_of(brain, singles)[:3000]
    hits, starts, _ = _coincidence_groups(prompts, np.random.default_rng(5))
    path = write_coincidences(tmp_path / "c.ldat", hits, starts, compact=compact, text=text)
    layout = detect(path)
    assert layout.name == ("coincidences-compact" if compact else "coincidences")
    chunks = _records(path, group_rule="first")
    assert all(isinstance(c, Pairs) for c in chunks)
    a = Records.join([c.a for c in chunks])
    b = Records.join([c.b for c in chunks])
    first = _rule(hits, starts, "first")
    assert a.size == prompts.size
    assert np.array_equal(a.t_ps, first.t_ps[0::2]) and np.array_equal(b.t_ps, first.t_ps[1::2])
    assert np.array_equal(b.channel, first.channel[1::2])
    resorted = Records.join(_records(path, resort=True))
    assert resorted.size == once(_rule(hits, starts, "sum")).size < 2 * prompts.size


def _by_key(c: np.ndarray) -> np.ndarray:
    return c[np.lexsort((c["dt"], c["crystal_b"], c["crystal_a"], c["t"]))]


def test_coincidence_file_prompts_on_their_crystals_with_their_tof(tmp_path, brain, singles,
                                                                   identity):
    """A coincidence file imported: its pairs are the run's prompts, on the crystals they were
    written from, the earlier single first (PETsys' side 1 is the later one half the time) and
    dt the later's time after it; the groups' energies summed."""
    prompts = _pairs_of(brain, singles)
    hits, starts, swap = _coincidence_groups(prompts, np.random.default_rng(6))
    assert 0.4 < swap.mean() < 0.6
    path = write_coincidences(tmp_path / "coinc.ldat", hits, starts)
    run = _import(tmp_path, "pairs", str(path), "--format", "petsys", "--kev-per-unit", "1",
                  "--energy-window", "0", "2000", "--map", identity)
    got, meta = read_listmode(run / "coincidences.h5")
    summed = _rule(hits, starts, "sum").energy.astype(np.float32)
    want = prompts.copy()
    side = np.where(swap, 1, 0)
    want["energy_a"] = summed[2 * np.arange(prompts.size) + side]
    want["energy_b"] = summed[2 * np.arange(prompts.size) + 1 - side]
    assert np.all(np.diff(got["t"]) >= 0)
    got, want = _by_key(got), _by_key(want)
    for k in ("t", "crystal_a", "crystal_b", "dt", "delayed", "energy_a", "energy_b"):
        assert np.array_equal(got[k], want[k]), k
    stop = json.loads((run / "run.json").read_text())["stop"]
    assert stop["counts"]["pairs"] == stop["counts"]["prompts"] == prompts.size
    assert stop["counts"]["delayeds"] == 0 and meta["policy"] == "the source's own pairs"
    assert stop["counts"]["outside_energy_window"] == 0
    assert stop["losses"] == {"bad_channel": 0, "late_events": 0}
    # no window asked: the file's own pairs, all of them, said of the list-mode
    run = _import(tmp_path, "as-written", str(path), "--format", "petsys", "--kev-per-unit", "1",
                  "--map", identity)
    stop = json.loads((run / "run.json").read_text())["stop"]
    assert stop["counts"]["prompts"] == prompts.size
    assert read_listmode(run / "coincidences.h5")[1]["energy_selection"] == "the source's own"
    # a window asked: pairs with a side outside it are counted, not lost
    lo, hi = brain.acquisition["energy_window_kev"]
    run = _import(tmp_path, "windowed", str(path), "--format", "petsys", "--kev-per-unit", "1",
                  "--energy-window", str(lo), str(hi), "--map", identity)
    stop = json.loads((run / "run.json").read_text())["stop"]
    inside = ((want["energy_a"] >= lo) & (want["energy_a"] < hi) & (want["energy_b"] >= lo)
              & (want["energy_b"] < hi))
    assert 0 < stop["counts"]["outside_energy_window"] == (~inside).sum()
    assert stop["counts"]["prompts"] == inside.sum()
    assert stop["losses"] == {"bad_channel": 0, "late_events": 0}


def test_raw_unit_pairs_are_kept_and_said(tmp_path, brain, singles, identity):
    """A coincidence file in its digitizer's units (QDC-like, a few below zero), no window and no
    calibration asked: every pair kept, the units said in one line; a window with a negative
    lower bound selects in those units."""
    prompts = _pairs_of(brain, singles)
    hits, starts, _ = _coincidence_groups(prompts, np.random.default_rng(8))
    raw = hits.copy()
    raw["energy"] = raw["energy"] / 20
    raw["energy"][starts[:-1]] -= np.percentile(_rule(raw, starts, "sum").energy, 20)
    path = write_coincidences(tmp_path / "qdc.ldat", raw, starts)
    common = ("import", str(path), "--format", "petsys", "--map", identity, "--scanner",
              "bedside-brain", "--out", str(tmp_path), "--no-recon")
    r = petdaq(*common, "--name", "raw")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stdout.splitlines() if "do not read as keV" in line]
    assert len(said) == 1 and "--kev-per-unit" in said[0]
    stop = json.loads((tmp_path / "raw" / "run.json").read_text())["stop"]
    assert stop["counts"]["prompts"] == prompts.size
    r = petdaq(*common, "--name", "windowed", "--energy-window", "-0.5", "1e6")
    assert r.returncode == 0, r.stderr
    stop = json.loads((tmp_path / "windowed" / "run.json").read_text())["stop"]
    summed = _rule(raw, starts, "sum").energy
    below = (summed[0::2] < -0.5) | (summed[1::2] < -0.5)
    assert 0 < stop["counts"]["outside_energy_window"] == below.sum()
    assert stop["counts"]["prompts"] == prompts.size - below.sum()


def test_coincidence_file_resorted_by_our_sorter(tmp_path, brain, singles, identity):
    """--resort: the file's groups as singles (each once), sorted by our sorter: the sorter's
    prompts of those singles."""
    prompts = _pairs_of(brain, singles)
    hits, starts, _ = _coincidence_groups(prompts, np.random.default_rng(7))
    path = write_coincidences(tmp_path / "coinc.ldat", hits, starts, compact=True)
    run = _import(tmp_path, "resorted", str(path), "--format", "petsys", "--kev-per-unit", "1",
                  "--resort", "--group", "first", "--map", identity)
    first = once(_rule(hits, starts, "first"))
    expected = np.zeros(first.size, SINGLE_DTYPE)
    expected["t"], expected["crystal"] = first.t_ps, first.channel
    expected["energy"] = first.energy.astype(np.float32)
    _check(run, brain, expected, expected.size)


def test_groups_file_imported_with_the_sum_rule(tmp_path, brain, singles, groups, identity):
    """A groups file: one single a group (first hit's time and crystal, summed energy), sorted
    as any singles."""
    hits, starts = groups
    path = write_groups(tmp_path / "groups.ldat", hits, starts)
    run = _import(tmp_path, "groups", str(path), "--format", "petsys", "--kev-per-unit", "1",
                  "--map", identity)
    summed = _rule(hits, starts, "sum")
    expected = np.zeros(summed.size, SINGLE_DTYPE)
    expected["t"], expected["crystal"] = summed.t_ps, summed.channel
    expected["energy"] = summed.energy.astype(np.float32)
    _check(run, brain, expected, expected.size)
    source = json.loads((run / "run.json").read_text())["start"]["settings"]["source"]
    assert source["group_rule"] == "sum" and source["layout"] is None


def _cut(path: Path, n: int) -> Path:
    out = path.with_name("cut-" + path.name)
    out.write_bytes(path.read_bytes()[:-n])
    return out


def test_bad_petsys_files_are_one_line_and_leave_no_run(tmp_path, groups, brain, singles,
                                                        capsys):
    hits, starts = groups
    few_hits, few_starts = hits[:starts[300]], starts[:301]
    compact = write_groups(tmp_path / "gc.ldat", few_hits, few_starts, compact=True)
    normal = write_groups(tmp_path / "g.ldat", few_hits, few_starts)
    prompts = _pairs_of(brain, singles)[:200]
    c_hits, c_starts, _ = _coincidence_groups(prompts, np.random.default_rng(8))
    coinc = write_coincidences(tmp_path / "c.ldat", c_hits, c_starts)
    rows = np.fromfile(coinc, np.dtype([("mh_n1", "u1"), ("mh_j1", "u1"), ("rest", "V34")]))
    extra = int(np.flatnonzero(rows["mh_j1"] == 1)[20])  # past the rows that tell the layout
    assert extra * 36 > 64 * 36
    rows["mh_j1"][extra] = 2
    broken = tmp_path / "broken.ldat"
    rows.tofile(broken)
    other = tmp_path / "other.ldat"
    other.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.ldat"
    empty.write_bytes(b"")
    index = tmp_path / "run.lidx"
    index.write_text("0\t1800\t0.000000e+00\t0.000000e+00\n")
    out = tmp_path / "runs"
    for args, said in (
            ([str(_cut(compact, 5))], "is truncated: its last group at byte"),
            ([str(_cut(normal, 5))], "its last PETsys groups record has 13 of 18 bytes (truncated"),
            ([str(broken)], f"row {extra} breaks PETsys' coincidences (mh_j1 2"),
            ([str(other)], "is no PETsys file (singles: "),
            ([str(empty)], "is empty"),
            ([str(index)], "is the index of a PETsys binary file (step begin, end, step values): "
                           "import its events, run.ldat"),
            ([str(coinc), "--group", "all"], "one single a side of each pair"),
            ([str(normal), "--layout", "coincidences"], "is no PETsys file (coincidences: row"),
            ([str(normal), "--resort", "--format", "abcd", "--ns-per-sample", "2"],
             "--resort: for --format petsys")):
        fmt = [] if "--format" in args else ["--format", "petsys"]
        code = main(["import", *args, *fmt, "--scanner", "bedside-brain", "--out", str(out),
                     "--no-recon"])  # the command line in this process: what it prints
        stderr = capsys.readouterr().err
        assert code == 2 and said in stderr, (args, stderr)
        # one line says what is wrong, naming the file given (a fault deep in a file is found
        # while importing: progress lines may come before it)
        errors = [x for x in stderr.splitlines() if "error" in x]
        assert len(errors) == 1 and errors[0] == stderr.strip().splitlines()[-1], stderr
        assert str(tmp_path / "runs") not in errors[0]
        assert not out.exists() or not any(out.iterdir()), args


def test_singles_as_text(tmp_path, singles):
    path = tmp_path / "singles.txt"
    path.write_text("".join(f"{t}\t{e:f}\t{c}\n" for t, c, e in singles[:2000]))
    got = Records.join(_records(path))
    assert np.array_equal(got.t_ps, singles["t"][:2000])
    assert np.array_equal(got.channel, singles["crystal"][:2000])
    assert detect(path).text and SINGLE.itemsize == 16


def test_the_worked_example_of_the_docs(tmp_path):
    """docs/digitizers.md: a group of three hits under each rule; a coincidence event of a
    two-hit and a one-hit group is two rows, (0, 0) and (1, 0)."""
    hits = np.zeros(3, SINGLE)
    hits["time"], hits["energy"] = [1000, 1500, 1700], [400.0, 60.5, 40.25]
    hits["channel_id"] = [4332, 4333, 4334]
    path = write_groups(tmp_path / "g.ldat", hits, np.array([0, 3]))
    for rule, channels, energies in (("sum", [4332], [500.75]), ("first", [4332], [400.0]),
                                     ("all", [4332, 4333, 4334], [400.0, 60.5, 40.25])):
        got = Records.join(_records(path, group_rule=rule))
        assert got.channel.tolist() == channels and got.energy.tolist() == energies
        assert got.t_ps[0] == 1000
    coinc = write_coincidences(tmp_path / "c.ldat", hits, np.array([0, 2, 3]))
    rows = np.fromfile(coinc, np.dtype([("mh_n1", "u1"), ("mh_j1", "u1"), ("a", "V16"),
                                        ("mh_n2", "u1"), ("mh_j2", "u1"), ("b", "V16")]))
    assert [(r["mh_j1"], r["mh_j2"]) for r in rows] == [(0, 0), (1, 0)]
    (pairs,) = _records(coinc)
    assert pairs.a.energy.tolist() == [460.5] and pairs.b.channel.tolist() == [4334]
