"""Dead time: the DAQ keeps every module's singles per time bin beside the coincidences, and the
correction from them makes the net prompts per decay the same at any rate."""

from __future__ import annotations

import numpy as np
import pytest

from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.processor import Processor, SortSettings
from hw.deadtime import RATE_BIN_PS, RateTable, correction_factor, dead_time_units
from hw.dtypes import RAW_DTYPE
from infra.errors import UserError
from infra.pool import Workers
from runstore.listmode import ListModeWriter, read_singles_rates
from runstore.singlesrates import SinglesRates, rate_table


def _boards(scanner, n: int, seed: int, span_ps: float = 3.3e11) -> list[np.ndarray]:
    """Each board's time-ordered raw events over about ``span_ps`` (several rate bins)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(scanner.n_boards):
        a = np.zeros(n, RAW_DTYPE)
        a["t"] = np.cumsum(rng.exponential(span_ps / n, n)).astype(np.int64) // 100 * 100
        a["crystal"] = rng.choice(np.flatnonzero(scanner.crystal_board == b), n)
        a["adc"] = rng.integers(50, 1400, n)
        out.append(a)
    return out


def _acquire(scanner, boards: list[np.ndarray], path, threads: int, step: int = 5000) -> None:
    cal = Calibration(scanner.name, scanner.digest, np.ones(scanner.n_crystals),
                      scanner.digitizer.kev_per_adc_code, "test")
    workers = Workers(threads, "test")
    proc = Processor(scanner, cal, SortSettings(), None, workers=workers)
    proc.writer = ListModeWriter(path, {"scanner": scanner.name},
                                 rate_units=proc.rates.n_units)
    for start in range(0, boards[0].size, step):
        for b, events in enumerate(boards):
            part = events[start:start + step]
            proc.consume(part, {b: int(part["t"][-1])})
    proc.finish()
    proc.writer.close()
    workers.close()


def test_the_list_mode_file_keeps_every_single_per_module_and_bin(brain, tmp_path) -> None:
    boards = _boards(brain, 30000, seed=3)
    _acquire(brain, boards, tmp_path / "one.h5", threads=1)
    _acquire(brain, boards, tmp_path / "two.h5", threads=2)
    table = read_singles_rates(tmp_path / "one.h5")
    raw = np.concatenate(boards)
    units, n_units = dead_time_units(brain)
    expected = np.zeros((raw["t"].max() // RATE_BIN_PS + 1, n_units), np.int64)
    np.add.at(expected, (raw["t"] // RATE_BIN_PS, units[raw["crystal"]]), 1)
    assert table.bin_ps == RATE_BIN_PS and table.first_bin == 0
    assert table.counts.shape == expected.shape and expected.shape[0] >= 6
    assert np.array_equal(table.counts, expected)
    assert np.array_equal(read_singles_rates(tmp_path / "two.h5").counts, table.counts)


def test_rates_of_any_chunks_are_those_of_the_singles_counted_at_once(brain, tmp_path) -> None:
    boards = _boards(brain, 20000, seed=4)
    raw = np.sort(np.concatenate(boards), order="t")
    whole = rate_table(brain, raw["t"], raw["crystal"])
    for step in (333, 7000):
        _acquire(brain, boards, tmp_path / f"{step}.h5", threads=2, step=step)
        table = read_singles_rates(tmp_path / f"{step}.h5")
        assert np.array_equal(table.counts, whole.counts)
        assert (table.first_bin, table.start_ps, table.end_ps) == \
            (whole.first_bin, whole.start_ps, whole.end_ps)


def test_rates_counted_in_any_order_by_any_worker_are_those_counted_at_once(brain) -> None:
    """Singles counted as they come (two workers' tables, bins opened later also before the
    first), handed over bin by bin as the time released through passes them, then finished:
    the table of :func:`rate_table`; a bin handed over cannot be opened again."""
    rng = np.random.default_rng(9)
    t = np.sort(rng.integers(2 * RATE_BIN_PS, 9 * RATE_BIN_PS, 5000))
    crystal = rng.integers(0, brain.n_crystals, t.size).astype(np.int32)
    rates = SinglesRates(brain, workers=2)
    tables = []
    for part in np.array_split(rng.permutation(t.size), 5):  # any order, late parts earlier
        part = part[np.argsort(-t[part])] if part[0] % 2 else part
        rates.cover(int(t[part].min()), int(t[part].max()))
        for i in part:
            worker = int(i % 2)
            rates.counts[worker, t[i] // RATE_BIN_PS - rates.first_bin,
                         rates.unit_of[crystal[i]]] += 1
        rates.counted(int(t[part].min()), int(t[part].max()))
    tables.append(rates.take(5 * RATE_BIN_PS + 1))
    with pytest.raises(ValueError, match="handed over"):
        rates.cover(3 * RATE_BIN_PS, 4 * RATE_BIN_PS)
    tables.append(rates.finish())
    whole = rate_table(brain, t, crystal)
    assert tables[0].first_bin == whole.first_bin and tables[1].first_bin == 5
    assert np.array_equal(np.concatenate([x.counts for x in tables]), whole.counts)
    assert (tables[0].start_ps, tables[1].end_ps) == (whole.start_ps, whole.end_ps)


class _WriteOnlyAttributes:
    """A dataset whose attributes may be written, not read: an attribute read in HDF5's SWMR
    mode can hand back the value from before the last write (seen once: "rate bins from 5 do
    not follow 4" for a file whose bins 0-4 were all written)."""

    def __init__(self, dataset) -> None:
        self._dataset = dataset
        self.attrs = self

    def __setitem__(self, key, value) -> None:
        if isinstance(key, str):
            self._dataset.attrs[key] = value
        else:
            self._dataset[key] = value

    def __getitem__(self, key):
        raise AssertionError(f"the writer read back {key!r}")

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)


def test_rate_tables_follow_each_other_without_reading_the_file_back(brain, tmp_path) -> None:
    units = dead_time_units(brain)[1]
    writer = ListModeWriter(tmp_path / "r.h5", {"scanner": brain.name}, rate_units=units)
    writer._rates = _WriteOnlyAttributes(writer._rates)

    def bins(first: int, n: int) -> RateTable:
        return RateTable(RATE_BIN_PS, first, np.ones((n, units), np.uint32),
                         first * RATE_BIN_PS, (first + n) * RATE_BIN_PS)

    for first, n in ((3, 2), (5, 1), (6, 3)):
        writer.append_rates(bins(first, n))
    with pytest.raises(ValueError, match="rate bins from 10 do not follow 9"):
        writer.append_rates(bins(10, 1))
    writer.close()
    table = read_singles_rates(tmp_path / "r.h5")
    assert (table.first_bin, table.start_ps, table.end_ps) == (3, 3 * RATE_BIN_PS,
                                                               9 * RATE_BIN_PS)
    assert table.counts.shape == (6, units)


def test_a_file_without_rates_is_not_corrected(brain, tmp_path) -> None:
    ListModeWriter(tmp_path / "old.h5", {"scanner": brain.name}).close()
    assert read_singles_rates(tmp_path / "old.h5") is None
    a = np.array([0, 1])
    assert correction_factor(None, brain, 97.7, a, a, a) == 1.0


def test_rates_of_another_scanner_are_refused(brain) -> None:
    table = RateTable(RATE_BIN_PS, 0, np.ones((2, 7), np.uint32), 0, 2 * RATE_BIN_PS)
    a = np.array([0, 1])
    with pytest.raises(UserError, match="hold 7 modules, scanner 'bedside-brain' has 48"):
        correction_factor(table, brain, 97.7, a, a, a)


def test_the_correction_makes_net_prompts_per_decay_the_same_at_any_rate(brain) -> None:
    """The calibration cylinder at 5 and 60 MBq (4 and 44 M singles/s): the net prompts per MBq
    s differ by about 15 %; corrected with the scanner's fitted singles dead time, within 4 %
    (the statistical error is about 1 %)."""
    from recon.calibration.deadtime import acquire, fit_tau_ns

    tau = brain.singles_dead_time_ns
    low, high = (acquire(brain, a, 4e6, seed=7) for a in (5.0, 60.0))
    raw = high.net_per_mbq_s / low.net_per_mbq_s
    corrected = high.corrected(brain, tau) / low.corrected(brain, tau)
    print(f"net prompts per MBq s, 60 over 5 MBq: {raw:.3f}, corrected {corrected:.3f}; "
          f"tau fitted to these two: {fit_tau_ns([low, high], brain)} ns (stored {tau})")
    assert raw < 0.9
    assert corrected == pytest.approx(1.0, abs=0.04)
