"""The progress line: fast units as a rate, slow ones as seconds each, the time left when the
total is known."""

from __future__ import annotations

import io

from infra import progress


def test_the_line_gives_rate_or_seconds_each_and_the_time_left(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    slow = progress.Progress("recon full", 20, unit="subsets", stream=out)
    clock[0] += 12.0
    slow.update(1)
    assert out.getvalue().splitlines()[-1] == (
        "recon full: 1/20 subsets, 12.0 s each, 12.0 s elapsed, about 228 s left")
    clock[0] += 228.0
    slow.close(20)
    assert out.getvalue().splitlines()[-1] == "recon full: 20/20 subsets, 12.0 s each, 240.0 s elapsed"
    setup = progress.Progress("recon full", 20, unit="subsets", stream=out)
    clock[0] += 500.0  # a long set-up, then 10 s a subset: the estimate follows the subsets
    setup.update(1)
    clock[0] += 10.0
    setup.update(2)
    assert out.getvalue().splitlines()[-1] == (
        "recon full: 2/20 subsets, 10.0 s each, 510.0 s elapsed, about 180 s left")
    fast = progress.Progress("replay", None, stream=out)
    clock[0] += 2.0
    fast.update(5e6, "prompts 7")
    assert out.getvalue().splitlines()[-1] == (
        "replay: 5.00 M events, 2.50 M events/s, 2.0 s elapsed  prompts 7")


def test_an_update_with_no_time_elapsed_is_a_line_not_an_error(monkeypatch) -> None:
    monkeypatch.setattr(progress.time, "monotonic", lambda: 50.0)
    out = io.StringIO()
    progress.Progress("recon full", 20, unit="subsets", stream=out).update(1, force=True)
    assert out.getvalue().splitlines()[-1] == (
        "recon full: 1/20 subsets, 0 subsets/s, 0.0 s elapsed")
