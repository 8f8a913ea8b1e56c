"""A stage run one step ahead in its own thread: a file's next chunk read and converted while the
caller works on this one (the two overlap where the work releases the GIL)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

_END = object()
_POLL_S = 0.1


def ahead(items: Iterable[T], work: Callable[[T], U], depth: int = 2) -> Iterator[tuple[T, U]]:
    """(item, ``work(item)``) for each of ``items``, in their order, the iteration and ``work``
    done in a thread up to ``depth`` items ahead of the caller. An error there is raised here,
    at its item's place; a caller that stops early stops the thread."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                out.put(value, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, work(item))):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)
            return
        put(_END)

    thread = threading.Thread(target=produce, name="ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = out.get()
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        thread.join()
