"""The DAQ made ready before the boards stream: its kernels compiled, its receive ring touched.

On the first run after an install numba compiles the decoder, the merge, the calibration and the
sorter (tens of seconds on 2 cores). Done on the first frames, that time would show as a DAQ
that takes nothing and then the whole scan in a burst; done here, before the boards start, a
run's live progress and its lag are those of the processing itself. The run's receive ring
(:mod:`daq.pipeline.links.ring`, a few hundred MB) is made here too, its every page touched,
and kept for the run that follows. The synthetic scan takes the paths a real one takes:
read-only buffers as the receivers hand them over, frames cut across buffers, several
hand-overs, chunks large enough for the parallel sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daq.pipeline.links.handover import ring_bytes
from daq.pipeline.links.ring import ReceiveRing
from daq.pipeline.process.calibration import Calibration
from daq.pipeline.process.processor import Processor, SortSettings
from hw import wire
from hw.dtypes import COINC_DTYPE, RAW_DTYPE
from hw.scanner import Scanner
from infra.pool import Workers

#: The synthetic scan: its singles rate (all boards) and its length.
RATE_CPS = 8e6
DURATION_S = 0.05
#: Hand-overs the synthetic scan is cut into.
HANDOVERS = 2


def warm_up(scanner: Scanner, sort: SortSettings, calibration: Calibration,
            threads: int | None = None, events_per_board: Sequence[np.ndarray] | None = None,
            scan_duration_s: float | None = None) -> np.ndarray:
    """Decode, merge, calibrate and sort ``events_per_board`` (RAW_DTYPE; by default
    :func:`synthetic_events`) in a processor that writes nothing; the kernels are then
    compiled (or loaded from numba's cache) for the run that follows, and its receive ring is
    ready. Returns the coincidences sorted (for warming what consumes them)."""
    ReceiveRing.take(ring_bytes()).give_back()  # touched now, taken again by the run's journal
    boards = events_per_board if events_per_board is not None else synthetic_events(scanner)
    sorted_out: list[np.ndarray] = []
    workers = Workers(threads, "warm-up")
    try:
        p = Processor(scanner, calibration, sort, None, workers=workers,
                      on_coincidences=sorted_out.append, scan_duration_s=scan_duration_s or 1.0)
        streams = [(b, wire.encode(events, board=b, first_seq=0, scanner=scanner))
                   for b, events in enumerate(boards) if events.size]
        decoders = {b: wire.Decoder(scanner) for b, _ in streams}
        for k in range(HANDOVERS):
            p.consume_links([(decoders[b], [_part(data, k)]) for b, data in streams])
        p.finish()
        p.merger.warm()
    finally:
        workers.close()
    return np.concatenate(sorted_out) if sorted_out else np.zeros(0, COINC_DTYPE)


def _part(data: bytes | np.ndarray, k: int) -> memoryview:
    """The ``k``-th of :data:`HANDOVERS` pieces of a board's byte stream, read-only as a
    receiver hands it over (a cut falls inside a frame)."""
    raw = memoryview(bytes(data))
    cut = np.linspace(0, len(raw), HANDOVERS + 1).astype(int)
    return raw[cut[k]:cut[k + 1]].toreadonly()


def synthetic_events(scanner: Scanner, seed: int = 0) -> list[np.ndarray]:
    """:data:`DURATION_S` of singles at :data:`RATE_CPS` on every board's crystals, uniform in
    time, at the photopeak's ADC code (511 keV; a gamma camera's 140 keV) with a 10 % spread."""
    rng = np.random.default_rng(seed)
    kev = 511.0 if scanner.kind == "pet" else 140.0
    n = max(16, int(RATE_CPS * DURATION_S / scanner.n_boards))
    out = []
    for b in range(scanner.n_boards):
        crystals = np.flatnonzero(scanner.crystal_board == b)
        events = np.zeros(n, RAW_DTYPE)
        events["t"] = np.sort(rng.integers(0, round(DURATION_S * 1e12), n))
        events["crystal"] = rng.choice(crystals, n)
        codes = kev * (1 + 0.1 * rng.standard_normal(n)) / scanner.digitizer.kev_per_adc_code
        events["adc"] = np.clip(codes, 1, np.iinfo(np.uint16).max)
        out.append(events)
    return out
