"""Event record layouts shared by every stage above the wire.

Time is always integer picoseconds (int64) since run start; energies are keV (float32).
"""

from __future__ import annotations

import numpy as np

#: What a digitizer sends, after decoding: one detected photon, uncalibrated.
#: ``t`` ps since run start (int64), ``crystal`` global crystal index, ``adc`` the raw ADC code.
RAW_DTYPE = np.dtype([("t", np.int64), ("crystal", np.int32), ("adc", np.uint16)])

#: A calibrated single: ``t`` ps (int64), ``crystal`` global index (int32), ``energy`` keV (float32).
SINGLE_DTYPE = np.dtype([("t", np.int64), ("crystal", np.int32), ("energy", np.float32)])

#: A coincidence. ``t`` ps of the earlier single; ``dt`` = t_b - t_a in ps (int32, >= 0 for
#: prompts since a is the earlier single); ``delayed`` 1 for delayed-window coincidences.
COINC_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("crystal_a", np.int32),
        ("crystal_b", np.int32),
        ("energy_a", np.float32),
        ("energy_b", np.float32),
        ("dt", np.int32),
        ("delayed", np.uint8),
    ]
)
