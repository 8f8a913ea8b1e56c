"""Other digitizers' files into runs: ABCD .ade, PETsys singles and CoMPASS .BIN, each written
here in its exact layout from emulated singles; the run's singles and coincidences are those
the NumPy reference sorter finds on the same singles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from foreign import abcd_rows, channel_map, write_map
from inprocess import petdaq

from coincidence.baseline import numpy_take_all_goods
from hw.dtypes import SINGLE_DTYPE
from hw.formats import abcd, compass, petsys
from runstore.listmode import read_listmode

SCANNER = "bedside-brain"


@pytest.fixture(scope="module")
def singles(brain) -> np.ndarray:
    """Emulated singles of a short scan (keV, time-ordered)."""
    import emulator

    return emulator.simulate(brain, "nema-iq", "F-18", 20.0, 0.02, seed=5).singles


def _reference(brain, expected: np.ndarray) -> np.ndarray:
    acq = brain.acquisition
    return numpy_take_all_goods(expected, brain.crystal_module, brain.n_modules,
                                acq["coincidence_window_ps"], acq["energy_window_kev"],
                                acq["delay_ps"], acq["min_sector_difference"])


def _import(tmp_path: Path, name: str, *args: str) -> Path:
    r = petdaq("import", *args, "--scanner", SCANNER, "--out", str(tmp_path), "--name", name,
               "--no-recon")
    assert r.returncode == 0, r.stderr
    return tmp_path / name


def _check(run: Path, brain, expected: np.ndarray, records: int, bad_channel: int = 0) -> None:
    stop = json.loads((run / "run.json").read_text())["stop"]
    assert stop["counts"]["records"] == records
    assert stop["counts"]["singles"] == expected.size
    assert stop["losses"] == {"bad_channel": bad_channel, "late_events": 0}
    coinc, _ = read_listmode(run / "coincidences.h5")
    reference = _reference(brain, np.sort(expected, order=["t", "crystal"], kind="stable"))
    assert coinc.size > 100 and np.array_equal(coinc, reference)
    assert stop["counts"]["prompts"] == int((coinc["delayed"] == 0).sum())
    assert stop["data_end_s"] == pytest.approx(expected["t"].max() / 1e12, abs=1e-6)


def test_petsys_singles_through_a_channel_map(tmp_path, brain, singles):
    """PETsys: board 0, the channelID as the channel; the map takes every channelID to a
    crystal, but one crystal's channel is left out of it: its singles are bad_channel."""
    perm = np.random.default_rng(1).permutation(brain.n_crystals)  # channelID -> crystal
    channel_of = np.argsort(perm)
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["time"], rows["energy"] = singles["t"], singles["energy"]
    rows["channel_id"] = channel_of[singles["crystal"]]
    rows.tofile(tmp_path / "singles.ldat")
    left_out = int(singles["crystal"][0])
    cmap = write_map(tmp_path / "map.csv", [(0, ch, int(perm[ch]))
                                             for ch in range(brain.n_crystals)
                                             if perm[ch] != left_out])
    run = _import(tmp_path, "petsys", str(tmp_path / "singles.ldat"), "--format", "petsys",
                  "--map", str(cmap))
    kept = singles[singles["crystal"] != left_out]
    _check(run, brain, kept, singles.size, bad_channel=singles.size - kept.size)
    start = json.loads((run / "run.json").read_text())["start"]
    assert start["settings"]["source"]["format"] == "petsys"
    assert (run / "source" / "singles.ldat").read_bytes() == rows.tobytes()


def _compass_rows(brain, singles, header: int, kev_per_channel: float) -> np.ndarray:
    rows = np.zeros(singles.size, compass.event_dtype(header))
    rows["board"] = brain.crystal_board[singles["crystal"]]
    rows["channel"] = brain.crystal_channel[singles["crystal"]]
    rows["timestamp"] = singles["t"]
    rows["energy"] = np.round(singles["energy"] / kev_per_channel)
    return rows


@pytest.mark.parametrize("waveform", [False, True])
def test_compass_files_with_and_without_waveforms(tmp_path, brain, singles, waveform):
    """CoMPASS: the header's bits name the fields; with waveforms each event has its own length.
    No map: the scanner's own wiring (board, channel)."""
    k = 0.25  # keV per ADC channel
    header = compass.HEADER_MAGIC | compass.ENERGY | (compass.WAVEFORM if waveform else 0)
    rows = _compass_rows(brain, singles, header, k)
    path = tmp_path / "run.BIN"
    with path.open("wb") as fh:
        fh.write(np.uint16(header).tobytes())
        if not waveform:
            rows.tofile(fh)
        else:
            lengths = np.arange(rows.size) % 5
            rows["samples"] = lengths
            for row, n in zip(rows, lengths, strict=True):
                fh.write(row.tobytes() + np.arange(n, dtype="<u2").tobytes())
    run = _import(tmp_path, "compass", str(path), "--format", "compass", "--kev-per-unit",
                  str(k))
    expected = singles.copy()
    expected["energy"] = (rows["energy"].astype(np.float64) * k).astype(np.float32)
    _check(run, brain, expected, singles.size)


def test_abcd_events_out_of_order_within_messages(tmp_path, brain, singles):
    """ABCD: timestamps in 1/1024 of a 2 ns sample, records shuffled within each buffer of 500
    (as the digitizer's per-channel buffers send them); the digitizer's 256 channels map to 256
    crystals spread over the scanner (each emulated single is put on channel crystal % 256)."""
    rows, chosen = abcd_rows(singles, brain.n_crystals, seed=3)
    rows.tofile(tmp_path / "events.ade")
    cmap = channel_map(tmp_path / "abcd.csv", chosen)
    run = _import(tmp_path, "abcd", str(tmp_path / "events.ade"), "--format", "abcd",
                  "--ns-per-sample", "2", "--kev-per-unit", "0.5", "--map", str(cmap))
    expected = np.zeros(rows.size, SINGLE_DTYPE)
    expected["t"] = abcd.times_ps(rows["timestamp"], 2000)
    expected["crystal"] = chosen[rows["channel"]]
    expected["energy"] = (rows["qlong"].astype(np.float64) * 0.5).astype(np.float32)
    _check(run, brain, expected, rows.size)
    # an imported run replays from what it kept, with no options: the same run again
    r = petdaq("sort", str(run), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_listmode(tmp_path / "again" / "coincidences.h5")[0],
                          read_listmode(run / "coincidences.h5")[0])
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert again["stop"]["counts"] == json.loads((run / "run.json").read_text())["stop"]["counts"]
    assert again["start"]["settings"]["source"]["map"] == "source/map.csv"
    r = petdaq("sort", str(run), "--window-ps", "2000", "--out", str(tmp_path / "narrow"))
    assert r.returncode == 0, r.stderr
    narrow = read_listmode(tmp_path / "narrow" / "coincidences.h5")[0]
    assert 0 < narrow.size < read_listmode(run / "coincidences.h5")[0].size


def test_abcd_times_are_exact_for_any_run_length():
    ts = np.array([0, 1023, 1024, (1 << 62) + 5], np.uint64)
    t = abcd.times_ps(ts, 2000)
    assert t.tolist() == [0, 1998, 2000, (1 << 52) * 2000 + (5 * 2000 >> 10)]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, brain, singles):
    rows = np.zeros(10, petsys.SINGLE)
    (tmp_path / "ok.ldat").write_bytes(rows.tobytes())
    (tmp_path / "cut.ldat").write_bytes(rows.tobytes()[:-3])
    (tmp_path / "bad.BIN").write_bytes(b"\x00\x11" + bytes(40))
    (tmp_path / "nomap.csv").write_text("crystal,board,channel\n")
    big = write_map(tmp_path / "big.csv", [(0, 0, brain.n_crystals)])
    out = tmp_path / "runs"
    for args, said in (
            (["cut.ldat", "--format", "petsys"],
             "its last PETsys singles record has 13 of 16 bytes (truncated"),
            (["bad.BIN", "--format", "compass"], "is not a CoMPASS file: its header is 0x1100"),
            (["ok.ldat", "--format", "gate9"], "unknown format 'gate9': choose one of abcd"),
            (["missing.ldat", "--format", "petsys"], "missing.ldat does not exist"),
            (["ok.ldat", "--format", "petsys", "--map", "nomap.csv"],
             "the first line must be board,channel,crystal"),
            (["ok.ldat", "--format", "petsys", "--map", str(big)],
             f"crystal {brain.n_crystals} is not one of bedside-brain's"),
            (["ok.ldat", "--format", "abcd"], "give --ns-per-sample"),
            (["ok.ldat", "--format", "petsys", "--kev-per-unit", "0"], "--kev-per-unit must be")):
        r = petdaq("import", *[str(tmp_path / a) if a.endswith((".ldat", ".BIN", ".csv"))
                               and "/" not in a else a for a in args],
                   "--out", str(out), "--no-recon")
        assert r.returncode == 2 and said in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists() or not any(out.iterdir()), args


def test_reorder_releases_in_time_order_and_counts_what_comes_too_late():
    from daq.pipeline.digitizers.reorder import Reorder

    def singles(ts):
        s = np.zeros(len(ts), SINGLE_DTYPE)
        s["t"], s["crystal"] = ts, np.arange(len(ts))
        return s

    order = Reorder(bound_ps=100)
    first = order.feed(singles([50, 10, 300, 200]))
    assert first["t"].tolist() == [10, 50]  # 200 and 300 wait for what may still come
    second = order.feed(singles([250, 220, 299, 450, 120]))  # 120: older than 300 - 100
    assert second["t"].tolist() == [200, 220, 250, 299, 300] and order.late_events == 1
    assert order.feed(singles([340])).size == 0 and order.late_events == 2  # before 450 - 100
    assert order.flush()["t"].tolist() == [450]


def _reorder_reference(chunks, bound_ps):
    """The reordering rule in its plainest form: everything held so far sorted again each chunk."""
    held, released_to, out, late = np.zeros(0, SINGLE_DTYPE), None, [], 0
    for chunk in chunks:
        if released_to is not None:
            late += int((chunk["t"] < released_to).sum())
            chunk = chunk[chunk["t"] >= released_to]
        if chunk.size == 0:
            continue
        held = np.concatenate([held, chunk])
        held = held[np.lexsort((held["crystal"], held["t"]))]
        cut = int(held["t"][-1]) - bound_ps
        n = int(np.searchsorted(held["t"], cut, side="left"))
        out.append(held[:n])
        held = held[n:]
        released_to = max(cut, released_to if released_to is not None else cut)
    return np.concatenate([*out, held]), late


@pytest.mark.parametrize("seed", range(4))
def test_reorder_holds_ordered_chunks_as_they_are_and_matches_sorting_everything(seed):
    """Chunks in order, chunks with ties out of crystal order, chunks shuffled, chunks that
    reach back before what is held: the same singles, in the same order, with the same late
    count, as sorting everything held at every chunk."""
    from daq.pipeline.digitizers.reorder import Reorder

    rng = np.random.default_rng(seed)
    n = 20_000
    s = np.zeros(n, SINGLE_DTYPE)
    s["t"] = np.sort(rng.integers(0, 2_000_000, n)) // 7 * 7  # ties
    s["crystal"] = rng.integers(0, 50, n)
    s["energy"] = np.arange(n)  # arrival, to see the order of equal (t, crystal)
    jitter = rng.integers(-3000, 3000, n) * (rng.random(n) < 0.05)
    s["t"] += jitter
    cuts = np.sort(rng.choice(np.arange(1, n), 40, replace=False))
    chunks = [c.copy() for c in np.split(s, cuts)]
    for c in chunks[::5]:
        rng.shuffle(c)
    order = Reorder(bound_ps=2000)
    got = np.concatenate([*(order.feed(c) for c in chunks), order.flush()])
    want, late = _reorder_reference(chunks, 2000)
    assert np.array_equal(got, want) and order.late_events == late
    assert late > 0 and got.size == n - late


def _write_ttree(uproot, path: Path, name: str, branches: dict) -> None:
    """A ROOT TTree as GATE writes it (uproot's own default is an RNTuple)."""
    with uproot.recreate(path) as f:
        tree = f.mktree(name, {k: v.dtype for k, v in branches.items()})
        for a in range(0, len(next(iter(branches.values()))), 100_000):
            tree.extend({k: v[a:a + 100_000] for k, v in branches.items()})


@pytest.mark.parametrize("version", ["GATE 9", "GATE 10"])
def test_gate_root_singles_placed_on_the_nearest_crystal(tmp_path, brain, singles, version):
    """GATE's ROOT output (written here with uproot): time, energy (MeV) and the global position
    of each single, 1 mm off its crystal's centre; no map needed."""
    uproot = pytest.importorskip("uproot")
    from hw.formats.gate import LAYOUTS

    time, per_unit, energy, position = LAYOUTS[version]
    rng = np.random.default_rng(2)
    xyz = brain.crystal_centres[singles["crystal"]] + rng.uniform(-0.6, 0.6, (singles.size, 3))
    mev = (singles["energy"] / 1000).astype(np.float32)
    branches = {time: singles["t"] / per_unit, energy: mev,
                "eventID": np.arange(singles.size, dtype=np.int32)}
    branches |= {b: xyz[:, a].astype(np.float32) for a, b in enumerate(position)}
    name = "Singles" if version == "GATE 9" else "Hits_digitizer"
    _write_ttree(uproot, tmp_path / "gate.root", name, branches)
    run = _import(tmp_path, "gate", str(tmp_path / "gate.root"), "--format", "gate")
    expected = singles.copy()
    expected["energy"] = (mev.astype(np.float64) * 1000).astype(np.float32)
    _check(run, brain, expected, singles.size)


def test_gate_file_without_what_it_needs_is_one_line(tmp_path):
    uproot = pytest.importorskip("uproot")
    _write_ttree(uproot, tmp_path / "masked.root", "Singles",
                 {"time": np.zeros(3), "globalPosX": np.zeros(3)})
    (tmp_path / "no.root").write_bytes(b"not root at all")
    for path, said in ((tmp_path / "masked.root", "lacks energy, globalPosY, globalPosZ"),
                       (tmp_path / "no.root", "is not a ROOT file")):
        r = petdaq("import", str(path), "--format", "gate", "--out", str(tmp_path / "runs"))
        assert r.returncode == 2 and said in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_gate_coincidences_compared_with_ours(tmp_path, brain, singles):
    """A GATE 9 file with its own Coincidences tree: the import says how many of GATE's pairs
    ours found. Here GATE's tree holds the reference sorter's prompts less two, and one pair
    no sorter would make."""
    uproot = pytest.importorskip("uproot")
    centres = brain.crystal_centres
    _write_ttree(uproot, tmp_path / "gate.root", "Singles", {
        "time": singles["t"] / 1e12, "energy": (singles["energy"] / 1000).astype(np.float32),
        **{f"globalPos{x}": centres[singles["crystal"], a] for a, x in enumerate("XYZ")}})
    ref = _reference(brain, singles)
    prompts = ref[ref["delayed"] == 0][2:]
    t1, c1 = prompts["t"], prompts["crystal_a"]
    t2, c2 = prompts["t"] + prompts["dt"], prompts["crystal_b"]
    t1, t2 = np.append(t1, 5), np.append(t2, 7)
    c1, c2 = np.append(c1, 0), np.append(c2, brain.n_crystals // 2)
    branches = {"time1": t2 / 1e12, "time2": t1 / 1e12}  # GATE's order need not be ours
    branches |= {f"globalPos{x}1": centres[c2, a] for a, x in enumerate("XYZ")}
    branches |= {f"globalPos{x}2": centres[c1, a] for a, x in enumerate("XYZ")}
    with uproot.update(tmp_path / "gate.root") as f:
        tree = f.mktree("Coincidences", {k: v.dtype for k, v in branches.items()})
        tree.extend(branches)
    r = petdaq("import", str(tmp_path / "gate.root"), "--format", "gate", "--scanner", SCANNER,
               "--out", str(tmp_path), "--name", "gate", "--no-recon")
    assert r.returncode == 0, r.stderr
    n = int((ref["delayed"] == 0).sum())
    found = json.loads((tmp_path / "gate" / "gate_comparison.json").read_text())
    assert found == {"ours": n, "gate": n - 1, "matched": n - 2}
    assert f"GATE's own coincidences {n - 1}, ours {n} prompts, {n - 2} pairs in both" in r.stdout


def test_scanners_show_crystals_lists_what_a_map_names(brain):
    r = petdaq("scanners", "show", SCANNER, "--crystals")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and lines[0] == "crystal,board,channel,module,ring,x_mm,y_mm,z_mm"
    assert len(lines) == brain.n_crystals + 1
    c = 1234
    row = lines[c + 1].split(",")
    assert [int(v) for v in row[:5]] == [c, brain.crystal_board[c], brain.crystal_channel[c],
                                         brain.crystal_module[c], brain.crystal_ring[c]]
    assert np.allclose([float(v) for v in row[5:]], brain.crystal_centres[c], atol=0.01)


@pytest.mark.slow
def test_timing_calibration_recovers_the_channels_offsets(tmp_path, brain, monkeypatch):
    """A uniform cylinder at the centre read by 256 channels, each with its own cable delay (up
    to 1.5 ns either way): ``petdaq calibrate --method timing`` on the imported run recovers
    every channel's offset within 100 ps; the next import takes them off (and says so)."""
    import emulator

    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path / "home"))
    singles = emulator.simulate(brain, "cylinder", "F-18", 10.0, 1.0, seed=3).singles
    chosen = np.arange(256) * (brain.n_crystals // 256)
    delay = np.random.default_rng(8).uniform(-1500, 1500, 256).round().astype(np.int64)
    channel = singles["crystal"] % 256
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["time"] = singles["t"] + delay[channel]
    rows["energy"], rows["channel_id"] = singles["energy"], channel
    rows.tofile(tmp_path / "point.ldat")
    cmap = channel_map(tmp_path / "map.csv", chosen)
    args = [str(tmp_path / "point.ldat"), "--format", "petsys", "--map", str(cmap),
            "--window-ps", "8000"]
    run = _import(tmp_path, "before", *args)
    r = petdaq("calibrate", str(run), "--method", "timing")
    assert r.returncode == 0 and "stored" in r.stdout, r.stderr
    (table,) = (tmp_path / "home" / "calibration").glob("bedside-brain.timing-*.npz")
    with np.load(table) as z:
        found = z["offsets_ps"][chosen]
    assert np.abs((found - found.mean()) - (delay - delay.mean())).max() < 100
    after = _import(tmp_path, "after", *args)
    start = json.loads((after / "run.json").read_text())["start"]
    assert start["calibration"]["timing"]["table"] == str(table)

    def spread(run: Path) -> float:
        prompts = read_listmode(run / "coincidences.h5")[0]
        prompts = prompts[prompts["delayed"] == 0]
        return float(np.mean(prompts["dt"] < 1000))

    assert spread(after) > 1.3 * spread(run)  # more prompts back within the TOF spread


def _petsys_in_units(tmp_path: Path, singles: np.ndarray, unit_per_kev: np.ndarray) -> Path:
    """A PETsys singles file of ``singles`` on 256 channels (crystal % 256), each channel's
    energy in its own raw unit (``unit_per_kev`` of it)."""
    channel = singles["crystal"] % 256
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["time"], rows["channel_id"] = singles["t"], channel
    rows["energy"] = singles["energy"] * unit_per_kev[channel]
    rows.tofile(tmp_path / "raw.ldat")
    return tmp_path / "raw.ldat"


@pytest.mark.slow
def test_photopeak_calibration_of_raw_units_then_replay_in_kev(tmp_path, brain, monkeypatch):
    """ToT-like energies, each of 256 channels with its own gain (0.07-0.13 units per keV):
    ``petdaq calibrate RUN --method photopeak`` on the imported run finds every channel's keV per
    unit within 3 %; a replay with no options then sorts in keV, as an import of the true keV
    does."""
    import emulator

    monkeypatch.setenv("BEDSIDE_PET_HOME", str(tmp_path / "home"))
    singles = emulator.simulate(brain, "cylinder", "F-18", 10.0, 0.5, seed=4).singles
    unit_per_kev = np.random.default_rng(2).uniform(0.07, 0.13, 256)
    chosen = np.arange(256) * (brain.n_crystals // 256)
    cmap = channel_map(tmp_path / "map.csv", chosen)
    raw = _petsys_in_units(tmp_path, singles, unit_per_kev)
    run = _import(tmp_path, "raw", str(raw), "--format", "petsys", "--map", str(cmap))
    r = petdaq("calibrate", str(run), "--method", "photopeak")
    assert r.returncode == 0 and "stored" in r.stdout, r.stderr
    (table,) = (tmp_path / "home" / "calibration").glob("bedside-brain.units-petsys-*.npz")
    with np.load(table) as z:
        found = z["kev_per_unit"][chosen]
    assert np.abs(found * unit_per_kev - 1).max() < 0.03
    r = petdaq("sort", str(run), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "again" / "run.json").read_text())
    assert doc["start"]["calibration"]["method"] == "photopeak table"
    exact = _import(tmp_path, "kev", str(_petsys_in_units(tmp_path, singles, np.ones(256))),
                    "--format", "petsys", "--map", str(cmap), "--kev-per-unit", "1")
    prompts = json.loads((exact / "run.json").read_text())["stop"]["counts"]["prompts"]
    assert doc["stop"]["counts"]["prompts"] == pytest.approx(prompts, rel=0.03)
    raw_prompts = json.loads((run / "run.json").read_text())["stop"]["counts"]["prompts"]
    assert raw_prompts < 0.01 * prompts  # before: raw units fell out of the keV window


def test_recover_of_a_killed_import_sorts_its_kept_files_again(tmp_path, brain, singles):
    """An import killed before its stop document (run.json without ``stop``, a cut list-mode
    file): ``petdaq recover`` sorts the run's kept source files again, into the same
    coincidences."""
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["time"], rows["energy"] = singles["t"], singles["energy"]
    rows["channel_id"] = singles["crystal"]
    rows.tofile(tmp_path / "s.ldat")
    cmap = write_map(tmp_path / "map.csv", [(0, c, c) for c in range(brain.n_crystals)])
    run = _import(tmp_path, "killed", str(tmp_path / "s.ldat"), "--format", "petsys",
                  "--map", str(cmap))
    whole, _ = read_listmode(run / "coincidences.h5")
    doc = json.loads((run / "run.json").read_text())
    del doc["stop"]
    (run / "run.json").write_text(json.dumps(doc))
    listmode = run / "coincidences.h5"
    listmode.write_bytes(listmode.read_bytes()[: listmode.stat().st_size // 3])
    (tmp_path / "s.ldat").unlink()  # the run kept its own
    r = petdaq("recover", str(run), "--no-recon")
    assert r.returncode == 0, r.stderr
    stop = json.loads((run / "run.json").read_text())["stop"]
    assert stop["reason"] == "recovered from the source files"
    assert stop["exit_status"] == "abort"
    assert np.array_equal(read_listmode(listmode)[0], whole)
    assert stop["counts"]["singles"] == singles.size


def test_a_labs_scanner_toml_names_its_map(tmp_path, brain, singles):
    """A lab's scanner definition with ``[readout] map``: its imports need no ``--map``, the
    run replays from its start document alone, and a map the TOML names but lacks is one line."""
    from hw.scanner import BUILTIN_DIR

    perm = np.random.default_rng(3).permutation(brain.n_crystals)
    write_map(tmp_path / "lab-map.csv", [(0, ch, int(perm[ch])) for ch in range(perm.size)])
    text = (BUILTIN_DIR / f"{SCANNER}.toml").read_text().replace(
        'name = "bedside-brain"', 'name = "lab-brain"')
    toml = tmp_path / "lab-brain.toml"
    toml.write_text(text + '\n[readout]\nmap = "lab-map.csv"\n')
    rows = np.zeros(singles.size, petsys.SINGLE)
    rows["time"], rows["energy"] = singles["t"], singles["energy"]
    rows["channel_id"] = np.argsort(perm)[singles["crystal"]]
    rows.tofile(tmp_path / "lab.ldat")
    r = petdaq("import", str(tmp_path / "lab.ldat"), "--format", "petsys", "--scanner",
               str(toml), "--out", str(tmp_path), "--name", "lab", "--no-recon")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "lab"
    _check(run, brain, singles, singles.size)
    assert json.loads((run / "run.json").read_text())["start"]["settings"]["source"]["map"] \
        == "source/map.csv"
    r = petdaq("sort", str(run), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_listmode(tmp_path / "again" / "coincidences.h5")[0],
                          read_listmode(run / "coincidences.h5")[0])
    (tmp_path / "lab-map.csv").unlink()
    r = petdaq("import", str(tmp_path / "lab.ldat"), "--format", "petsys", "--scanner",
               str(toml), "--out", str(tmp_path), "--name", "nomap")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"petdaq: error: scanner file {toml}: key 'readout.map' names "
        f"{tmp_path / 'lab-map.csv'}, which does not exist"]
    assert not (tmp_path / "nomap").exists()


def test_gate_volume_ids_place_singles_as_their_positions_do(tmp_path, brain, singles):
    """GATE 9 cylindricalPET volume IDs (rsector = module around the ring, module = module
    ring, crystal = GATE's cubic-array copy, tangential fastest) with the system's repeater
    counts: the same crystals, so the same coincidences, as the nearest crystal to each
    position; counts that are not the scanner's are one line naming both."""
    uproot = pytest.importorskip("uproot")
    c = singles["crystal"]
    ct = brain.crystals_per_ring // brain.n_modules
    ca = brain.n_rings // brain.n_module_rings
    ring, tang = c // brain.crystals_per_ring, c % brain.crystals_per_ring
    ids = {"rsectorID": brain.crystal_module[c], "moduleID": brain.crystal_module_ring[c],
           "submoduleID": np.zeros(c.size), "crystalID": (ring % ca) * ct + tang % ct,
           "layerID": np.zeros(c.size)}
    branches = {"time": singles["t"] / 1e12, "energy": (singles["energy"] / 1000).astype(
        np.float32), **{k: v.astype(np.int32) for k, v in ids.items()}}
    _write_ttree(uproot, tmp_path / "ids.root", "Singles", branches)  # no positions at all
    counts = f"{brain.n_modules},{brain.n_module_rings},1,{ct * ca}"
    run = _import(tmp_path, "ids", str(tmp_path / "ids.root"), "--format", "gate",
                  "--gate-repeaters", counts)
    expected = singles.copy()
    expected["energy"] = branches["energy"].astype(np.float64) * 1000
    _check(run, brain, expected, singles.size)
    r = petdaq("sort", str(run), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_listmode(tmp_path / "again" / "coincidences.h5")[0],
                          read_listmode(run / "coincidences.h5")[0])
    r = petdaq("import", str(tmp_path / "ids.root"), "--format", "gate", "--gate-repeaters",
               "8,4,1,64", "--out", str(tmp_path), "--name", "wrong")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"not {SCANNER}'s {brain.n_modules},{brain.n_module_rings},1,{ct * ca},1" in r.stderr


def test_the_dense_map_pass_gives_what_the_key_lookup_gives(brain):
    """Records through a map's dense table (one compiled pass) and through its sorted keys: the
    same singles, keV and time offsets per crystal, the same records on no channel; a map with a
    channel far out has no dense table and takes the key look-up."""
    from daq.pipeline.digitizers import placing
    from daq.pipeline.digitizers.importer import singles_of
    from hw import channelmap
    from hw.formats import Records

    rng = np.random.default_rng(3)
    n = brain.n_crystals
    cmap = channelmap.ChannelMap(np.arange(0, 2 * n, 2, dtype=np.int64) | (1 << 32),
                                 rng.permutation(n).astype(np.int32), "test")
    records = Records.of(rng.integers(0, 3, 50_000), rng.integers(-5, 2 * n + 5, 50_000),
                         rng.integers(0, 10**9, 50_000), rng.uniform(0, 1000, 50_000))
    kev = rng.uniform(0.9, 1.1, n)
    offsets = rng.integers(-500, 500, n)
    table = placing.fast_table(cmap, n)
    got = placing.place(records, table, kev, offsets)
    want = singles_of(records, cmap, kev, offsets)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1] > 0
    # aligned (the sides of pairs): every record in its place, the same either way
    assert np.array_equal(placing.columns(records, table, kev, offsets),
                          placing.by_keys(records, cmap, kev, offsets))
    far = channelmap.ChannelMap(np.array([1 << 31], np.int64), np.array([0], np.int32), "far")
    assert placing.fast_table(far, n) is None


def test_reading_ahead_gives_the_same_run(tmp_path, brain, singles):
    """The next chunk read and placed in a thread while this one is sorted: the same list-mode
    rows and counts as one thread, chunk by chunk."""
    from daq.perf.importbench import write_petsys
    from daq.pipeline.digitizers.importer import ImportSettings, sort_records
    from daq.pipeline.process.processor import SortSettings
    from hw import channelmap

    path = tmp_path / "s.ldat"
    write_petsys(singles, path)
    settings = ImportSettings("petsys", kev_per_unit=1.0)
    runs = []
    for read_ahead in (False, True):
        lm = tmp_path / f"{read_ahead}.h5"
        chunks = petsys.read(path, 20_000, settings.options(brain))
        result = sort_records(chunks, settings, brain, channelmap.identity(brain),
                              SortSettings(), lm, read_ahead=read_ahead)
        runs.append((read_listmode(lm)[0], result["counts"]))
    assert runs[0][0].size > 100 and np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
