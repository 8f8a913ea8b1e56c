"""An emulated scanner for the DAQ: ``petdaq emulate`` started as a child process.

The emulator runs in its own process (its own core, its own crash domain) and pushes each board's
frames to ``tcp://127.0.0.1:<base + board>``, exactly as digitizer boards would; the DAQ connects
one ZeroMQ PULL receiver per board.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daq.control.checks import positive
from daq.messages import DEFAULT_SCAN, FIRMWARES
from hw.faults import Faults, load_faults
from hw.motion import MotionTrace, load_trace
from hw.scanner import load_scanner
from infra.errors import UserError
from infra.ports import free_port_block


@dataclass
class EmulatorSettings:
    """What to emulate (units in the names); defaults: :data:`daq.messages.DEFAULT_SCAN`."""

    scanner: str = DEFAULT_SCAN["scanner"]
    phantom: str = DEFAULT_SCAN["phantom"]
    nuclide: str = DEFAULT_SCAN["nuclide"]
    activity_mbq: float | None = DEFAULT_SCAN["activity_mbq"]
    """MBq at the start (a kinetic phantom's injected activity); None: a phantom file's own
    total (its concentrations in Bq/mL), else the default."""
    duration_s: float = DEFAULT_SCAN["duration_s"]
    seed: int = 1
    realtime: bool = True
    kinetic_time_scale: float = DEFAULT_SCAN["kinetic_time_scale"]
    """A kinetic phantom's model minutes per minute of acquisition."""
    firmware: str = DEFAULT_SCAN["firmware"]
    """The boards' packer: ``numba``, ``c``, or ``qemu`` (each board's firmware in QEMU,
    slower than real time: the run ends at the boards' run-stop markers)."""
    faults: str | None = None
    """A TOML of faults to inject (:mod:`hw.faults`; the command line's ``--faults``)."""
    motion: str | None = None
    """The patient's motion: a trace file or a preset (:mod:`hw.motion`; ``--motion``)."""

    def __post_init__(self) -> None:
        """Refuse a scan the emulator cannot run, before anything starts."""
        from emulator import phantoms
        from hw import nuclides

        for name in ("scanner", "phantom", "nuclide"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"{name} must be a name, got {getattr(self, name)!r}")
        if phantoms.is_file(self.phantom):   # read and fitted now: a bad file is one line
            self.phantom = str(phantoms.file_path(self.phantom))
            own = phantoms.get(self.phantom, load_scanner(self.scanner)).activity_mbq
        elif self.phantom.strip().lower() not in phantoms.names():
            raise UserError(f"unknown phantom '{self.phantom}': known phantoms are "
                            f"{', '.join(phantoms.names())}, or a phantom file (FILE.toml)")
        else:
            own = None
        if self.activity_mbq is None:
            self.activity_mbq = own if own is not None else DEFAULT_SCAN["activity_mbq"]
        nuclides.get(self.nuclide)  # an unknown name: the error names the known ones
        if self.firmware not in FIRMWARES:
            raise UserError(f"unknown firmware {self.firmware!r}: choose {', '.join(FIRMWARES)}")
        if phantoms.is_blank(self.phantom):    # nothing in the scanner: no activity
            self.activity_mbq = 0.0
        for name in ("activity_mbq", "duration_s", "kinetic_time_scale"):
            if not (name == "activity_mbq" and phantoms.is_blank(self.phantom)):
                setattr(self, name, positive(getattr(self, name), name))
        if self.faults is not None:
            self.injected()     # a bad file: its one line now, before anything starts
        if self.motion is not None:
            if not isinstance(self.motion, str):
                raise UserError(f"motion must be a preset or a file, got {self.motion!r}")
            if Path(self.motion).is_file():
                self.motion = str(Path(self.motion).resolve())
            self.trace()        # a bad trace: its one line now

    def trace(self) -> MotionTrace | None:
        """The patient's motion (None: still)."""
        return None if self.motion is None else load_trace(self.motion)

    def injected(self) -> Faults:
        """The faults this scan injects (none without a file)."""
        if self.faults is None:
            return Faults()
        scanner = load_scanner(self.scanner)
        return load_faults(self.faults, scanner.fault_counts())

    @classmethod
    def from_request(cls, settings: object) -> EmulatorSettings:
        """The scan a control request's ``settings`` map asks for, the defaults filling in what
        it leaves out; a clear error for anything else (a wrong type, an unknown key)."""
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise UserError(f"settings must be a map, got {type(settings).__name__}")
        known = {"scanner", "phantom", "nuclide", "activity_mbq", "duration_s",
                 "kinetic_time_scale", "firmware", "motion"}
        others = {"energy_window_kev", "study", "frames"}
        unknown = sorted(set(settings) - known - others)
        if unknown:
            raise UserError(f"unknown scan setting {unknown[0]!r}: use "
                            f"{', '.join(sorted(known | others))}")
        return cls(**{k: v for k, v in settings.items() if k in known})

    def as_dict(self) -> dict[str, object]:
        """The settings as the run records them (with the injected faults themselves)."""
        out = dict(vars(self))
        if self.faults is None:
            del out["faults"]
        else:
            out["faults"] = {"file": str(self.faults), **self.injected().to_json()}
        if self.motion is None:
            del out["motion"]
        else:       # the true trace itself: the run's truth, for validation only
            out["motion"] = self.trace().to_json()
        return out


READY_TIMEOUT_S = 600.0
"""The longest the emulator may take to get ready (numba compiles on a fresh install)."""


def start_emulator(settings: EmulatorSettings, n_boards: int, host: str = "127.0.0.1",
                   ready_timeout_s: float = READY_TIMEOUT_S,
                   meanwhile: Callable[[], None] | None = None, commands: str | None = None
                   ) -> tuple[subprocess.Popen, list[str]]:
    """Start ``petdaq emulate`` pushing to fresh ports; returns the process and the endpoints
    once it is ready to stream (its kernels compiled: the DAQ's clock for "no data" and the
    boards' quiet time start only then). ``meanwhile`` runs while the emulator gets ready (the
    DAQ compiles its own kernels); ``commands``: the endpoint where the boards' firmware takes
    the DAQ's commands (``--firmware qemu``). A clear error when it fails first."""
    base = free_port_block(n_boards, host)
    cmd = [sys.executable, "-m", "petdaq", "emulate", "--scanner", settings.scanner,
           "--phantom", settings.phantom, "--nuclide", settings.nuclide,
           "--activity-mbq", str(settings.activity_mbq), "--duration", str(settings.duration_s),
           "--seed", str(settings.seed), "--to", f"tcp://{host}:{base}", "--quiet",
           "--kinetic-time-scale", str(settings.kinetic_time_scale),
           "--ready-line", "--realtime" if settings.realtime else "--fast",
           "--firmware", settings.firmware, *(["--commands", commands] if commands else []),
           *(["--faults", str(settings.faults)] if settings.faults else []),
           *(["--motion", settings.motion] if settings.motion else []),
           "--parent-pid", str(os.getpid())]  # it dies with the DAQ, even a killed one
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        if meanwhile is not None:
            meanwhile()
        _wait_ready(proc, ready_timeout_s)
    except BaseException:
        proc.terminate()
        raise
    return proc, [f"tcp://{host}:{base + b}" for b in range(n_boards)]


def _wait_ready(proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait for the emulator's ``ready`` line; its own error when it exits instead."""
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # the emulator prints nothing else on stdout
            if line.strip() == "ready":
                ready.set()
                return

    threading.Thread(target=read, daemon=True, name="emulator-ready").start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.1):
        if proc.poll() is not None:
            err = (proc.stderr.read() or "").strip().splitlines()
            raise UserError(f"the emulator failed before streaming: "
                            f"{err[-1] if err else f'exit status {proc.returncode}'}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise UserError(f"the emulator was not ready within {timeout_s:g} s")
