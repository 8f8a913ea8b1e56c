"""The DAQ: the live pipeline (:mod:`daq.pipeline`), run control and the service
(:mod:`daq.control`), the performance tools (:mod:`daq.perf`) and the monitor and control
message schema (:mod:`daq.messages`, all that the console imports)."""

import hw  # noqa: F401  (first: it configures numba's disk cache)
