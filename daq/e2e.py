"""The end-to-end chain at rate: a digitizer stand-in process -> ZeroMQ (tcp loopback) -> DAQ.

The sender is a child process that replays a recorded (emulated) acquisition, one PUSH socket per
board, as fast as the DAQ takes it: the recording is sent again and again with its times shifted
by its duration and its sequence numbers continuing, so a few hundred ms of physics make a
sustained stream of any length with every frame distinct. Each message is followed by a STATUS
heartbeat; a run-stop marker closes each board. ZeroMQ's high-water mark blocks the sender when
the DAQ is behind: back-pressure, never a drop. The result counts only with zero loss: frames
sent == frames journaled, sequence gaps 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hw import wire
from hw.scanner import Scanner, load_scanner

MESSAGE_EVENTS = 64 * wire.EVENTS_PER_FRAME


def run_chain(scanner: Scanner, template: list[np.ndarray], seconds: float) -> dict[str, Any]:
    """Sustain the chain for about ``seconds``; returns rates, counts and the zero-loss check.

    ``template``: each board's time-ordered RAW events of one recording (the emulator's
    ``raw_per_board()``).
    """
    from daq import calibration
    from daq.acquisition import Acquisition
    from daq.emulated import free_port_block
    from daq.processor import SortSettings
    from daq.rundir import RunDir
    from daq.sources import ZmqSource

    work = Path(tempfile.mkdtemp(prefix="petdaq-e2e-"))
    np.savez(work / "template.npz", *template)
    base = free_port_block(scanner.n_boards)
    report = work / "sent.json"
    sender = subprocess.Popen(
        [sys.executable, "-m", "daq.e2e", scanner.source, str(work / "template.npz"),
         str(base), str(seconds), str(report)], stderr=subprocess.PIPE, text=True)
    run = RunDir.create(work, "run")
    acq = Acquisition(run, scanner, [ZmqSource(f"tcp://127.0.0.1:{base + b}")
                                     for b in range(scanner.n_boards)],
                      SortSettings(), calibration.Calibration.nominal(scanner),
                      no_data_timeout_s=60)
    acq.start()
    acq.wait()
    _, err = sender.communicate(timeout=60)
    if sender.returncode != 0:
        raise RuntimeError(f"e2e sender failed: {err.strip()}")
    sent = json.loads(report.read_text())
    stop = run.read()["stop"]
    counts, losses = stop["counts"], stop["losses"]
    elapsed = acq.acquiring_s
    zero_loss = (counts["frames"] == sent["frames"] and losses["seq_gaps"] == 0
                 and counts["singles"] == sent["events"] and not any(losses.values()))
    return {"singles": counts["singles"], "seconds": elapsed,
            "singles_per_s": counts["singles"] / elapsed, "frames_sent": sent["frames"],
            "frames_journaled": counts["frames"], "seq_gaps": losses["seq_gaps"],
            "losses": losses, "zero_loss": zero_loss, "prompts": counts["prompts"],
            "journal_bytes": counts["journal_bytes"], "run": str(run.path),
            "note": "frames sent == journaled, seq gaps 0" if zero_loss else "LOSS",
            "reason": stop["reason"], "sender_seconds": sent["seconds"]}


def _send_board(sock, scanner: Scanner, board: int, events: np.ndarray, span: int,
                deadline: float, out: dict[str, int]) -> None:
    """One board: its recording again and again, shifted in time, until ``deadline``."""
    sock.send(wire.encode_marker(wire.RUN_START, board=board, seq=0, t_ps=0, run=1,
                                 scanner=scanner))
    seq, frames, sent, k = 1, 1, 0, 0
    while time.monotonic() < deadline:
        for start in range(0, events.size, MESSAGE_EVENTS):
            chunk = events[start:start + MESSAGE_EVENTS].copy()
            chunk["t"] += k * span
            msg = wire.encode(chunk, board=board, first_seq=seq, scanner=scanner)
            nf = wire.frames_for(chunk.size)
            sent += chunk.size
            msg += wire.encode_status(board=board, seq=seq + nf, t_ps=int(chunk["t"][-1]),
                                      events_sent=sent, fifo_overflows=0, scanner=scanner)
            seq, frames = seq + nf + 1, frames + nf + 1
            sock.send(msg, copy=False)
        k += 1
    sock.send(wire.encode_marker(wire.RUN_STOP, board=board, seq=seq, t_ps=(k + 1) * span,
                                 run=1, scanner=scanner))
    out.update(frames=frames + 1, events=sent)


def _send(scanner: Scanner, template: list[np.ndarray], base: int, seconds: float
          ) -> dict[str, Any]:
    """Every board on its own thread and PUSH socket, as independent digitizer boards."""
    import threading

    import zmq

    ctx = zmq.Context.instance()
    span = max(int(t["t"][-1]) for t in template if t.size) + 1
    results: list[dict[str, int]] = [{} for _ in template]
    socks, threads = [], []
    t0 = time.monotonic()
    for b, events in enumerate(template):
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.LINGER, -1)
        sock.bind(f"tcp://127.0.0.1:{base + b}")
        socks.append(sock)
        threads.append(threading.Thread(target=_send_board, args=(
            sock, scanner, b, events, span, t0 + seconds, results[b])))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    for sock in socks:
        sock.close()
    ctx.term()
    return {"frames": sum(r["frames"] for r in results),
            "events": sum(r["events"] for r in results), "seconds": elapsed}


def _main(argv: list[str]) -> int:
    scanner_path, template_path, base, seconds, report = argv
    scanner = load_scanner(scanner_path)
    with np.load(template_path) as z:
        template = [z[f"arr_{i}"] for i in range(len(z.files))]
    result = _send(scanner, template, int(base), float(seconds))
    Path(report).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
