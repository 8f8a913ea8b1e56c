"""The firmware in the loop, measured: events and bytes per second through one board's firmware
in QEMU, and the image's size; ``python -m daq.perf.firmware`` writes its section of
docs/performance.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from daq.perf.bench import machine
from emulator.outputs.qemuboards import BOARD, IN_EVENT, IN_TICK, INPUT_DTYPE, BoardLink, image
from hw import wire
from hw.wire.commands import Opcode, reply_of

TITLE = "## The firmware in the loop: `python -m daq.perf.firmware`"
#: Events through the board, and a heartbeat every this many.
EVENTS = 400_000
TICK_EVENTS = 1000


def _words(n: int, seed: int = 1) -> np.ndarray:
    """``n`` events on random channels and energies, a TICK after every ``TICK_EVENTS``."""
    rng = np.random.default_rng(seed)
    body = np.zeros((n // TICK_EVENTS, TICK_EVENTS + 1), INPUT_DTYPE)
    k = np.arange(n).reshape(body.shape[0], TICK_EVENTS)
    body[:, :-1]["kind"] = IN_EVENT
    body[:, :-1]["coarse"] = k * 20
    body[:, :-1]["fine"] = rng.integers(0, 256, k.shape)
    body[:, :-1]["channel"] = rng.integers(0, 4096, k.shape)
    body[:, :-1]["adc"] = rng.integers(0, 4096, k.shape)
    body[:, -1]["kind"] = IN_TICK
    body[:, -1]["coarse"] = (k[:, -1] + 1) * 20
    return body.reshape(-1)


def measure(n: int = EVENTS) -> dict[str, float]:
    """Events through one board's firmware, from the first word fed to the last heartbeat."""
    with tempfile.TemporaryDirectory(prefix="bpet-perf-") as tmp:
        link = BoardLink(image(), 0, Path(tmp) / "board0")
        try:
            link.command(Opcode.START, a=1)
            link.take_until(wire.RUN_START)
            words = _words(n)
            t0 = time.perf_counter()
            link.feed(words)
            sent = 0
            for _ in range(n // TICK_EVENTS):
                sent += len(link.take_until(wire.STATUS))
            seconds = time.perf_counter() - t0
            link.command(Opcode.STOP)
            link.take_until(wire.RUN_STOP)
        finally:
            link.close()
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds,
            "bytes_per_s": sent / seconds}


def instructions_per_event(n: int = EVENTS) -> float:
    """Guest instructions per event, the main loop's polling included: QEMU with ``-icount
    shift=0`` (one instruction a virtual ns), the firmware's millisecond clock (UPTIME) read
    before the first word and after the last heartbeat."""
    with tempfile.TemporaryDirectory(prefix="bpet-perf-") as tmp:
        link = BoardLink(image(), 0, Path(tmp) / "board0", icount=True)
        try:
            link.command(Opcode.START, a=1)
            link.take_until(wire.RUN_START)
            before = _uptime_ms(link)
            link.feed(_words(n))
            for _ in range(n // TICK_EVENTS):
                link.take_until(wire.STATUS)
            after = _uptime_ms(link)
            link.command(Opcode.STOP)
            link.take_until(wire.RUN_STOP)
        finally:
            link.close()
    return (after - before) * 1e6 / n


def _uptime_ms(link: BoardLink) -> int:
    link.command(Opcode.UPTIME)
    data = link.take_until(wire.REPLY)
    return next(r for r in map(reply_of, data.split(b"\x00")) if r is not None).value


def image_bytes() -> int:
    """The image's code and initialised data (text + data), as ``arm-none-eabi-size`` says."""
    out = subprocess.run(["arm-none-eabi-size", str(image())], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    return int(out[0]) + int(out[1])


def section(repeats: int = 3) -> list[str]:
    """The section's lines: the median of ``repeats`` measurements."""
    runs = sorted((measure() for _ in range(repeats)), key=lambda r: r["events_per_s"])
    m = runs[len(runs) // 2]
    per_event = instructions_per_event()
    qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    version = re.search(r"version (\S+)", qemu)
    return [
        TITLE, "",
        f"One board's firmware (`hw/firmware`, {image_bytes()} bytes of code and data for "
        f"{BOARD}) in QEMU {version.group(1) if version else '?'} (TCG, no `-icount`), fed "
        f"{m['events']:,} events on random channels with a heartbeat every {TICK_EVENTS}, its "
        "UART on a Unix socket read as fast as it comes: from the first word to the last "
        f"heartbeat, median of {repeats}:", "",
        "| events/s | wire bytes/s | instructions/event |", "|---|---|---|",
        f"| {m['events_per_s'] / 1e3:.0f} k | {m['bytes_per_s'] / 1e6:.2f} MB/s "
        f"| {per_event:.0f} |", "",
        "Instructions per event: the same events with `-icount shift=0,sleep=off` (one guest "
        "instruction a virtual ns), the firmware's own millisecond clock (UPTIME) read before "
        "the first word and after the last heartbeat: the main loop's polling and any wait for "
        "the UART are included, the front end's reads (semihosting calls, in a board its FPGA "
        "bus) are not.", "",
        f"Measured on {machine()['cpu']}, {machine()['cores']} cores. The loop is for "
        "correctness and firmware development, slower than real time at clinical rates (one "
        "QEMU a board; `petdaq run --firmware qemu` ends at the boards' run-stop markers).", ""]


def write(doc: Path, lines: list[str]) -> None:
    """Put the section in ``doc``: in place of its earlier version, else at the end."""
    text = doc.read_text() if doc.is_file() else "# Performance\n"
    block = "\n".join(lines)
    start = text.find(TITLE)
    if start < 0:
        doc.write_text(text.rstrip() + "\n\n" + block)
        return
    end = text.find("\n## ", start + len(TITLE))
    doc.write_text(text[:start] + block + ("\n" + text[end + 1:] if end >= 0 else ""))


def main(argv: list[str]) -> int:
    if shutil.which("qemu-system-arm") is None:
        print("python -m daq.perf.firmware needs qemu-system-arm and gcc-arm-none-eabi",
              file=sys.stderr)
        return 2
    doc = Path(argv[0]) if argv else Path("docs/performance.md")
    lines = section()
    write(doc, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
