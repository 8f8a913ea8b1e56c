"""Campaigns on Dask: a cluster spec (what `--cluster` names), a client for it, tasks with progress.

``local`` starts a ``distributed.LocalCluster`` of one single-threaded worker process per core
(``local:N``: N workers) on the loopback interface, without a dashboard; ``tcp://HOST:PORT`` or
``tls://HOST:PORT`` joins an existing scheduler (Slurm and other batch systems through
``dask-jobqueue``, see docs/cluster.md). Tasks exchange files on shared storage and send back only
small records; a task whose worker dies is run again on another (Dask's own retry), and every
result a task writes appears once, whole (:func:`infra.atomic.replacing`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from infra.errors import UserError
from infra.numbacache import source_digest
from infra.pool import available_cores
from infra.progress import Progress

T = TypeVar("T")

#: Seconds to wait for an existing scheduler before giving up.
CONNECT_TIMEOUT_S = 20


@dataclass(frozen=True)
class ClusterSpec:
    """Where a campaign runs: ``workers`` local processes, or the scheduler at ``address``."""

    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.workers}"


def parse_cluster(text: str) -> ClusterSpec:
    """``local``, ``local:N`` or a scheduler address, checked; a bad one is a UserError."""
    value = text.strip()
    if value == "local":
        return ClusterSpec(workers=available_cores())
    m = re.fullmatch(r"local:(\d+)", value)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise UserError(f"--cluster local:N needs N >= 1 workers, got {value!r}")
        return ClusterSpec(workers=n)
    if re.fullmatch(r"(tcp|tls)://[^:/\s]+:\d{1,5}", value):
        return ClusterSpec(address=value)
    raise UserError(f"--cluster must be local, local:N, tcp://HOST:PORT or tls://HOST:PORT, "
                    f"got {text!r}")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError("--cluster needs Dask: pip install 'bedside-pet[cluster]'") from None
    return distributed


@contextmanager
def client_for(spec: ClusterSpec) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``, closed (with its local cluster) on exit."""
    distributed = _distributed()
    if spec.address is None:
        cluster = distributed.LocalCluster(
            n_workers=spec.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            _quietly_close(client)
            _quietly_close(cluster)
        return
    _reachable(spec.address)
    try:
        client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"no Dask scheduler answers at {spec.address}: {exc}") from None
    try:
        yield client
    finally:
        _quietly_close(client)


def _quietly_close(closable: Any) -> None:
    """Close a client or cluster without the log lines of the connections it closes (the
    campaign's outcome is known by now)."""
    loggers = [logging.getLogger(name) for name in ("distributed", "asyncio", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        closable.close()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@functools.cache
def _code() -> str:
    from pathlib import Path

    return source_digest(Path(__file__).resolve().parent.parent)


def result_key(*parts: object) -> str:
    """A short name for a task's result: a hash of what it depends on (``parts``) and of the
    product's source, so that a campaign started again reuses only results of the same work."""
    return hashlib.sha256(repr((_code(), *parts)).encode()).hexdigest()[:16]


def _reachable(address: str) -> None:
    """Refuse at once a scheduler address where nothing listens (Dask would retry for its
    whole timeout)."""
    import socket

    host, _, port = address.split("://", 1)[1].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"no Dask scheduler answers at {address}: "
                        f"{exc.strerror or exc}") from None


def worker_threads() -> int:
    """Threads this task may use: its Dask worker's, or every core outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return available_cores()
    state = getattr(worker, "state", worker)
    return max(1, int(getattr(state, "nthreads", 1)))


def run_all(client: Any, fn: Callable[..., T], items: Sequence[tuple], *, label: str,
            unit: str = "tasks", describe: Callable[[T], str] | None = None) -> list[T]:
    """``fn(*item)`` for every item on the cluster's workers, with a progress line as results
    come in; the results in the order of ``items``. A task that raises ends the campaign with
    its error (a UserError stays one)."""
    distributed = _distributed()
    futures = [client.submit(fn, *item, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    progress = Progress(label, len(items), unit=unit)
    done, last = 0, ""
    try:
        for future, result in distributed.as_completed(futures, with_results=True):
            if future.status != "finished":
                raise UserError(f"{label}: a task was {future.status} on the cluster")
            results[index[future.key]] = result
            done += 1
            last = describe(result) if describe else ""
            if done < len(items):
                progress.update(done, last, force=True)
    except BaseException:
        client.cancel(futures)
        raise
    progress.close(done, last)
    return results

