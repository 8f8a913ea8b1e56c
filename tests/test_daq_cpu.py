"""The CPU split of the DAQ is a measurement: every thread's CPU seconds (and their parts), the
process total they fit in, the sender and the whole machine. Not timed: plausibility only."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from boardstream import board_events

from daq.perf import costper
from daq.pipeline.cpu import CpuMeter, format_split, task_cpu_s

#: The CPU split of a chain at rate: alone, not beside other tests.
pytestmark = pytest.mark.serial


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        x += 1


def _check_split(split: dict, tolerance_s: float = 0.05) -> None:
    """Non-negative, parts within their thread, threads within the process."""
    assert split["process_cpu_s"] >= 0 and split["wall_s"] > 0
    assert split["system_s"] >= 0 and split["page_faults"] >= 0
    for name, t in split["threads"].items():
        assert t["cpu_s"] >= 0 and t["wall_s"] >= 0, name
        assert all(v >= -1e-6 for v in t["parts"].values()), name
        assert sum(t["parts"].values()) <= t["cpu_s"] + 1e-3 * len(t["parts"]), name  # rounding
        assert 0 <= t["busy"] <= 1.05, name
    assert all(v >= 0 for v in split["native"].values())
    clocked = sum(t["cpu_s"] for t in split["threads"].values())
    # /proc counts in clock ticks: one tick of slack per native thread
    assert clocked + sum(split["native"].values()) <= (
        split["process_cpu_s"] + tolerance_s + 0.01 * len(split["native"]))
    assert split["other_s"] >= 0


def test_thread_clocks_split_the_process_cpu() -> None:
    meter = CpuMeter()

    def work(name: str, seconds: float) -> None:
        clock = meter.clock(name)
        _spin(seconds)
        clock.lap("spin")
        time.sleep(0.1)  # waiting is wall time, not CPU
        clock.lap("sleep")
        clock.close()

    threads = [threading.Thread(target=work, args=(f"worker {k}", 0.2 * (k + 1)))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    split = meter.report()
    _check_split(split)
    w0, w1 = split["threads"]["worker 0"], split["threads"]["worker 1"]
    assert 0.15 <= w0["parts"]["spin"] <= 0.4 and 0.35 <= w1["parts"]["spin"] <= 0.6
    assert w0["parts"]["sleep"] < 0.05 and w0["wall_parts"]["sleep"] >= 0.09
    assert split["process_cpu_s"] >= w0["cpu_s"] + w1["cpu_s"] - 0.01
    lines = format_split(split, "test")
    assert lines[0].startswith("test:") and any("worker 1" in line for line in lines)
    # the wall a part spent off a CPU (asleep, or waiting for a lock) is on the thread's line
    off = next(line for line in lines if "worker 0" in line).split("off CPU [")[1]
    assert "sleep 0." in off
    # every thread's line says its system time and its page faults
    assert all("kernel" in line and "faults" in line for line in lines[1:1 + len(split["threads"])])
    assert all(t["page_faults"] >= 0 and t["system_s"] >= 0 for t in split["threads"].values())


def test_proc_task_times_name_this_process_threads() -> None:
    tasks = task_cpu_s()
    assert tasks and all(s >= 0 for _name, s in tasks.values())
    assert threading.get_native_id() in tasks


def test_the_end_to_end_chain_reports_its_cpu_split(brain) -> None:
    """A short chain (synthetic boards): every DAQ thread is in the split with its parts, they
    fit in the DAQ process's CPU, the sender's split and the machine's are there, and the
    bottleneck line names something measured."""
    from daq.perf.e2e import bottleneck, format_cpu, run_chain

    template = [board_events(brain, b, 40000, 2e6, seed=3) for b in range(brain.n_boards)]
    result = run_chain(brain, template, 1.5)
    assert result["zero_loss"], {k: result[k] for k in (
        "losses", "frames_sent", "frames_journaled", "singles", "reason", "seconds")}
    assert result["singles"] >= 40000 * brain.n_boards  # at least one repetition per board
    cpu = result["cpu"]
    daq = cpu["daq"]
    _check_split(daq)
    names = set(daq["threads"])
    # one receiver thread polls every board's ZeroMQ link
    assert {"receiver", "processing", "journal flush", "run watch"} <= names
    assert not any(n.startswith("receiver ") for n in names)
    assert {"read", "journal", "hand-over"} <= set(daq["threads"]["receiver"]["parts"])
    # the processing thread decodes, gates (calibration, histograms, energy window), merges and
    # sorts while the run goes; at the stop, the run watch merges and sorts what the merge held
    parts = set(daq["threads"]["processing"]["parts"]) | set(daq["threads"]["run watch"]["parts"])
    assert {"decode", "gate", "merge", "sort"} <= parts
    assert daq["process_cpu_s"] > 0 and daq["threads"]["processing"]["cpu_s"] > 0
    if daq["threads"].get("worker 1"):  # the processing thread's helpers, with several cores
        assert set(daq["threads"]["worker 1"]["parts"]) <= {"wait", "decode", "gate", "merge",
                                                            "sort"}
    _check_split(cpu["sender"])
    assert {f"board {b}" for b in range(brain.n_boards)} <= set(cpu["sender"]["threads"])
    machine = cpu["machine"]
    if machine is not None:  # Linux
        assert machine["cores"] >= 1 and 0 <= machine["busy_cores"] <= machine["cores"] + 0.1
    text = "\n".join(format_cpu(cpu, result["singles"]))
    assert "DAQ process" in text and "processing" in text and "bottleneck:" in text
    assert bottleneck(cpu)
    assert result["run"] is None  # the run directory (journal) is not left behind
    assert np.isfinite(result["singles_per_s"]) and result["singles_per_s"] > 0
    merged = np.concatenate(template)
    merged = merged[np.argsort(merged["t"], kind="stable")]
    cost = costper.of_chain(brain, SimpleNamespace(raw=merged, raw_per_board=template), result)
    assert cost.daq_ns == pytest.approx(daq["process_cpu_s"] / result["singles"] * 1e9)
    assert 0 < cost.frame_copy_ns < cost.numpy_sorter_ns
    assert cost.of_numpy_sorter == pytest.approx(cost.daq_ns / cost.numpy_sorter_ns)
    assert "NumPy sorter" in cost.line()
    # the processing thread's serial work: its CPU outside its share of the parallel sections
    # and its waits
    processing = daq["threads"]["processing"]
    assert 0 <= processing["shared_s"] <= processing["cpu_s"]
    assert 0 < costper.serial_s(daq) <= processing["cpu_s"] - processing["shared_s"]
    assert cost.serial_ns == pytest.approx(costper.serial_s(daq) / result["singles"] * 1e9)
