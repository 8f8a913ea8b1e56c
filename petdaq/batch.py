"""A command over several runs: one after the other, or each a task on a Dask cluster.

A campaign (several runs, or ``--cluster``) leaves a receipt in each run it completed,
``RUN/.petdaq-done/COMMAND-KEY.txt`` with what the command printed; the key is a hash of the
command, its settings, the product's source and the size and time of every input file the command
names (the run's files, the scanner definitions, the stored calibrations). Started again with the
same settings, the campaign skips a run whose receipt is there and prints its lines again; any
changed input or setting gives another key and the run is done again. The receipt also lists the
run's outputs that existed once it was done; a receipt whose outputs are gone no longer counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra.atomic import replacing
from infra.cluster import client_for, result_key, run_all, worker_threads

#: Folder of a run's receipts.
DONE_DIR = ".petdaq-done"

Command = Callable[[argparse.Namespace], Any]
Files = Callable[[argparse.Namespace], Iterable[Path]]


def for_each(args: argparse.Namespace, field: str, fn: Command, *, label: str,
             inputs: Files, outputs: Files, unit: str = "runs") -> int:
    """``fn(args)`` once for each value of ``args.<field>`` (a list), with that value in its
    place: here one after the other, or with ``args.cluster`` as tasks on the workers (each with
    its worker's threads), whose printed lines are printed here. ``inputs(args)``: the files a
    run's result depends on; ``outputs(args)``: what it made (both for its receipt)."""
    runs = [argparse.Namespace(**{**vars(args), field: v, "cluster": None})
            for v in getattr(args, field)]
    if len(runs) == 1 and args.cluster is None:
        fn(runs[0])
        return 0
    todo = []
    for a in runs:
        receipt = receipt_of(a, field, fn, inputs)
        printed = _still_done(receipt)
        if printed is None:
            todo.append((a, receipt))
            continue
        print(f"petdaq: note: {getattr(a, field)}: done before with the same settings and "
              f"inputs, skipped (its receipt: {receipt})", file=sys.stderr)
        sys.stdout.write(printed)
    if args.cluster is None:
        for a, receipt in todo:
            _keep(receipt, _tee(fn, a), outputs(a))
        return 0
    with client_for(args.cluster) as client:
        done = run_all(client, _captured, [(fn, a) for a, _ in todo], label=label, unit=unit)
    for (a, receipt), (out, notes) in zip(todo, done, strict=True):
        sys.stderr.write(notes)
        sys.stdout.write(out)
        _keep(receipt, out, outputs(a))
    return 0


def receipt_of(args: argparse.Namespace, field: str, fn: Command, inputs: Files) -> Path:
    """Where a campaign keeps the receipt of ``fn(args)`` for the run ``args.<field>``."""
    run = Path(getattr(args, field))
    settings = sorted((k, repr(v)) for k, v in vars(args).items()
                      if k not in ("cluster", "func", field))
    stats = [(str(p), st.st_size, st.st_mtime_ns) for p in sorted(set(inputs(args)))
             if p.is_file() and (st := p.stat())]
    key = result_key(fn.__module__, fn.__qualname__, str(run.resolve()), settings, stats)
    return (run if run.is_dir() else run.parent) / DONE_DIR / f"{fn.__name__.strip('_')}-{key}.txt"


def files_in(folder: Path) -> list[Path]:
    """The files directly in ``folder`` (none when it is not one)."""
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def _keep(receipt: Path, printed: str, made: Iterable[Path]) -> None:
    receipt.parent.mkdir(exist_ok=True)
    with replacing(receipt) as tmp:
        tmp.write_text(json.dumps({"printed": printed,
                                   "outputs": [str(p) for p in made if p.exists()]}))


def _still_done(receipt: Path) -> str | None:
    """What the run printed, when its receipt is there and the outputs it lists still exist."""
    try:
        kept = json.loads(receipt.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or not all(Path(p).exists() for p in kept.get("outputs", [])):
        return None
    return str(kept.get("printed", ""))


def _tee(fn: Command, args: argparse.Namespace) -> str:
    """``fn(args)`` here, its lines printed as always and returned too."""
    out = io.StringIO()
    stdout = sys.stdout

    class Both(io.TextIOBase):
        def write(self, text: str) -> int:
            out.write(text)
            return stdout.write(text)

        def flush(self) -> None:
            stdout.flush()

    with contextlib.redirect_stdout(Both()):
        fn(args)
    return out.getvalue()


def _captured(fn: Command, args: argparse.Namespace) -> tuple[str, str]:
    """``fn(args)`` on a worker: what it printed, its results and its notes (not its
    progress lines)."""
    if getattr(args, "threads", 0) is None:
        args.threads = worker_threads()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        fn(args)
    notes = [line + "\n" for line in err.getvalue().splitlines()
             if line.startswith(("petdaq:", "warning:"))]
    return out.getvalue(), "".join(notes)
