"""A stage one step ahead in a thread: the same items in the same order, its errors raised at
their place, and a caller that stops early leaves no thread behind."""

import threading
import time

import pytest

from infra.ahead import ahead


def test_items_in_order_with_their_work() -> None:
    assert list(ahead(range(50), lambda x: x * x, depth=3)) == [(x, x * x) for x in range(50)]


def test_an_error_in_the_thread_is_raised_at_its_item() -> None:
    def work(x):
        if x == 5:
            raise ValueError("bad item 5")
        return x

    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for item, _ in ahead(range(10), work):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_a_caller_that_stops_early_stops_the_thread() -> None:
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    before = threading.active_count()
    steps = ahead(endless(), lambda x: x)
    assert [next(steps)[0] for _ in range(3)] == [0, 1, 2]
    steps.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
