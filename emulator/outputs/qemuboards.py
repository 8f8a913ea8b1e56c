"""The boards' firmware in the loop: every board's firmware (hw/firmware, built for an Arm
Cortex-M) runs in its own QEMU, fed the front end's words and sending its wire frames out of its
UART.

Each board has a folder with ``frontend.bin``, the front end's 12-byte words (events, a TICK at
the end of every chunk of emulated time, a CLOCK before the run; ``hw/firmware/bpet_port.h``),
which the firmware reads by semihosting as the emulator appends them, and a Unix socket that QEMU
connects its UART to: the firmware's frames come out of it and the commands go in. As a packer
(:class:`QemuPacker`), a board's RUN_START is its answer to a START command, its frames up to a
TICK's STATUS heartbeat are what a chunk sends, and its RUN_STOP the answer to STOP: the bytes
are those of the host packers for the same events. A QEMU that dies, or a firmware that sends
nothing for ``ANSWER_S`` while an answer is due, is one :class:`infra.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from emulator.detector.electronics import latched
from hw import wire
from hw.scanner import Scanner
from hw.wire.commands import ANY_BOARD, Opcode, encode_command, frame_type, read_control
from infra.errors import UserError

FIRMWARE_DIR = Path(wire.__file__).parent.parent / "firmware"
#: The board target that QEMU emulates (hw/firmware/boards/<BOARD>/).
BOARD = "mps2-an385"
#: The front end's words (hw/firmware/bpet_port.h).
INPUT_DTYPE = np.dtype([("coarse", "<u4"), ("channel", "<u2"), ("adc", "<u2"), ("fine", "u1"),
                        ("kind", "u1"), ("reserved", "<u2")])
IN_EVENT, IN_TICK, IN_CLOCK, IN_END = 0, 1, 2, 3
#: How long a failing board's QEMU is given to exit, so that its exit status names the cause (s).
EXIT_WAIT_S = 1.0
#: A firmware that sends nothing this long while an answer is due has stopped answering (s).
ANSWER_S = 60.0
#: How long QEMU may take to start and connect its UART (s).
CONNECT_S = 30.0


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise UserError(f"--firmware qemu needs {tool} (Debian: apt-get install "
                        "qemu-system-arm gcc-arm-none-eabi)")
    return found


def image(board: str = BOARD) -> Path:
    """The firmware image for ``board``, built by ``make -C hw/firmware`` into the cache (by
    the hash of its sources) unless it is there."""
    sources = sorted(p for p in FIRMWARE_DIR.rglob("*") if (p.is_file()
                     and p.suffix in (".c", ".h", ".ld", ".mk")) or p.name == "Makefile")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bedside-pet"
    out = cache / f"firmware-{board}-{digest}"
    elf = out / f"bpet-{board}.elf"
    if not elf.is_file():
        _need("arm-none-eabi-gcc")
        build = subprocess.run([_need("make"), "-s", "-C", str(FIRMWARE_DIR), f"BOARD={board}",
                                f"O={out}"], capture_output=True, text=True, check=False)
        if build.returncode or not elf.is_file():
            last = (build.stderr.strip() or build.stdout.strip() or "no image").splitlines()[-1]
            raise UserError(f"cannot build the firmware for {board}: {last}")
    return elf


def qemu_command(elf: Path, board_id: int, uart: Path, icount: bool = False) -> list[str]:
    """QEMU for one board: the image, semihosting (the front end's file, the board id as its
    argument, the exit), the UART on the Unix socket ``uart``; ``icount``: a deterministic
    instruction count (virtual time from instructions)."""
    cmd = [_need("qemu-system-arm"), "-machine", BOARD, "-display", "none", "-monitor", "none",
           "-kernel", str(elf), "-semihosting-config",
           f"enable=on,target=native,arg=bpet,arg={board_id}",
           "-chardev", f"socket,id=uart,path={uart}", "-serial", "chardev:uart"]
    return cmd + (["-icount", "shift=0,sleep=off"] if icount else [])


def with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` killed when the thread that starts it ends, as its process does, even by SIGKILL
    (Linux's parent-death signal, set by util-linux's ``setpriv``): no board's QEMU outlives
    the emulator that fed it. Unchanged where ``setpriv`` is missing."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", *cmd] if setpriv else cmd


class BoardLink:
    """One board's firmware in QEMU: its front end's file, its UART, the frames it sent."""

    def __init__(self, elf: Path, board: int, folder: Path, icount: bool = False) -> None:
        self.board, self.folder = board, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.frontend = (folder / "frontend.bin").open("wb")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(folder / "uart.sock"))
        server.listen(1)
        server.settimeout(CONNECT_S)
        self.log = (folder / "qemu.log").open("wb")
        self.process = subprocess.Popen(with_parent(qemu_command(elf, board,
                                                                 folder / "uart.sock", icount)),
                                        cwd=folder, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        try:
            self.uart, _ = server.accept()
        except TimeoutError:
            self.process.kill()
            raise UserError(f"board {board}'s QEMU never connected its UART: "
                            f"{self._last_line()}") from None
        finally:
            server.close()
        self._buf = bytearray()
        self._frames: list[tuple[int, int]] = []  # (type, end) of each frame received
        self._scanned = self._counted = 0
        self._seen = time.monotonic()
        self._lock = threading.Condition()
        self._closed = False
        self.stopped = False
        """The board's run ended (its RUN_STOP was taken): at the END word its firmware exits."""
        self.reading = threading.Event()
        """Cleared: the host stops reading the UART (its socket fills, the UART stalls)."""
        self.reading.set()
        self._reader = threading.Thread(target=self._read, name=f"board{board}-uart",
                                        daemon=True)
        self._reader.start()

    def _last_line(self) -> str:
        self.log.flush()
        text = (self.folder / "qemu.log").read_text(errors="replace").strip()
        return text.splitlines()[-1] if text else "no message"

    def _read(self) -> None:
        while True:
            self.reading.wait()
            try:
                data = self.uart.recv(1 << 16)
            except OSError:
                data = b""
            with self._lock:
                if not data:
                    self._closed = True
                    self._lock.notify_all()
                    return
                self._buf += data
                self._seen = time.monotonic()
                self._scan()
                self._lock.notify_all()

    def _scan(self) -> None:
        """Record each frame completed by the new bytes (its type, where it ends)."""
        while (end := self._buf.find(0, self._scanned)) >= 0:
            chunk = bytes(self._buf[self._scanned:end])
            if chunk:
                self._frames.append((frame_type(chunk), end + 1))
            self._scanned = end + 1

    def feed(self, words: np.ndarray) -> None:
        """Append front-end words (INPUT_DTYPE) for the firmware to read."""
        self.frontend.write(words.tobytes())
        self.frontend.flush()

    def command(self, opcode: int, a: int = 0, b: int = 0, seq: int = 0) -> None:
        """Send a COMMAND frame to the board's UART."""
        try:
            self.uart.sendall(encode_command(opcode, board=self.board, seq=seq, a=a, b=b))
        except OSError as exc:
            raise self._failure(f"its UART closed ({exc.strerror})") from None

    def send_bytes(self, data: bytes) -> None:
        """Raw bytes to the board's UART (a test's damaged command)."""
        self.uart.sendall(data)

    def take_until(self, ftype: int, timeout_s: float | None = ANSWER_S) -> bytes:
        """The bytes the board sent since the last take, through its next frame of ``ftype``
        (``timeout_s`` None: as long as its QEMU runs, for a frame the host commands)."""
        with self._lock:
            while True:
                for k in range(self._counted, len(self._frames)):
                    if self._frames[k][0] == ftype:
                        end = self._frames[k][1]
                        out = bytes(self._buf[:end])
                        del self._buf[:end]
                        self._scanned -= end
                        self._frames = [(t, e - end) for t, e in self._frames[k + 1:]]
                        self._counted = 0
                        self.stopped = self.stopped or ftype == wire.RUN_STOP
                        return out
                self._counted = len(self._frames)
                if self._closed:
                    raise self._failure("its UART closed")
                if timeout_s is not None and time.monotonic() - self._seen > timeout_s:
                    raise self._failure(f"it sent nothing for {timeout_s:g} s")
                self._lock.wait(0.2)

    def _failure(self, what: str) -> UserError:
        try:  # a UART closes as its QEMU dies: give the exit status a moment to be there
            rc = self.process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            rc = None
        why = (f"its QEMU exited with code {rc} ({self._last_line()})" if rc is not None
               else what)
        return UserError(f"board {self.board}'s firmware stopped answering: {why}")

    def close(self, timeout_s: float = 10.0) -> int:
        """End the front end's input; the firmware exits once its run is stopped (a board whose
        run did not end, after an error elsewhere, is killed at once). Returns QEMU's exit
        code."""
        try:
            self.feed(np.array([(0, 0, 0, 0, IN_END, 0)], INPUT_DTYPE))
            self.frontend.close()
            rc = self.process.wait(timeout_s if self.stopped else 0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rc = self.process.wait()
        finally:
            self.uart.close()
            self.log.close()
        return rc


class CommandRelay:
    """The host's commands to the boards (the DAQ's, on a ZeroMQ PULL socket bound on this
    machine), each to its board's UART: the board its frame names, or every board for a frame
    to any board or one too damaged to name one (the boards reject and count it)."""

    def __init__(self, endpoint: str, links: list[BoardLink]) -> None:
        if not endpoint.startswith(("tcp://127.0.0.1:", "ipc://")):
            raise UserError(f"--commands {endpoint}: the boards take commands on this machine "
                            "only (tcp://127.0.0.1:PORT or ipc://PATH)")
        self.links = links
        self.relayed = 0
        self._sock = zmq.Context.instance().socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise UserError(f"cannot take commands on {endpoint}: {exc}") from None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="commands", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            frame = self._sock.recv()
            head = read_control(frame.strip(b"\x00"))
            board = head.board if head is not None else ANY_BOARD
            for link in self.links:
                if board in (ANY_BOARD, link.board):
                    link.send_bytes(frame)
            self.relayed += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


class QemuPacker:
    """A packer whose frames are the boards' firmware's, each board in its own QEMU. With
    ``commands`` (an endpoint), the host starts and stops the boards' runs (:class:`CommandRelay`);
    without, the packer does, as a run's markers come due."""

    def __init__(self, scanner: Scanner, icount: bool = False, commands: str | None = None
                 ) -> None:
        self.clock = wire.WireClock.of(scanner)
        self.channel = scanner.crystal_channel
        elf = image()
        self.folder = Path(tempfile.mkdtemp(prefix="bpet-qemu-"))
        self.links: list[BoardLink] = []
        self.relay: CommandRelay | None = None
        try:
            for b in range(scanner.n_boards):
                self.links.append(BoardLink(elf, b, self.folder / f"board{b}", icount))
            if commands is not None:
                self.relay = CommandRelay(commands, self.links)
        except BaseException:
            self.close()
            raise

    def _word(self, kind: int, t_ps: int) -> np.ndarray:
        coarse = (int(t_ps) // self.clock.period_ps) & ((1 << self.clock.counter_bits) - 1)
        return np.array([(coarse, 0, 0, 0, kind, 0)], INPUT_DTYPE)

    def events(self, raw: np.ndarray, board: int, first_seq: int) -> bytes:
        words = latched(raw, self.clock, self.channel, np.zeros(raw.size, INPUT_DTYPE))
        self.links[board].feed(words)
        return b""  # the frames come with the chunk's heartbeat

    def status(self, board: int, seq: int, t_ps: int, events_sent: int) -> bytes:
        link = self.links[board]
        link.feed(self._word(IN_TICK, t_ps))
        return link.take_until(wire.STATUS)

    def marker(self, kind: int, board: int, seq: int, t_ps: int, run: int) -> bytes:
        link = self.links[board]
        if kind == wire.RUN_START:
            link.feed(self._word(IN_CLOCK, t_ps))
        if self.relay is None:
            link.command(Opcode.START if kind == wire.RUN_START else Opcode.STOP, a=run)
            return link.take_until(kind)
        return link.take_until(kind, timeout_s=None)  # when the host commands it

    def close(self) -> None:
        """Every board's input ended and its QEMU gone; the boards' folders removed."""
        if self.relay is not None:
            self.relay.close()
        for link in self.links:
            link.close()
        shutil.rmtree(self.folder, ignore_errors=True)
