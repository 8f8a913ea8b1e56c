"""Record layouts inside the emulator and the truth that can be saved beside a run.

A *deposit* is the energy one photon leaves in one crystal (all its interactions there summed);
the electronics turn deposits into singles. Truth is never sent on the wire.
"""

from __future__ import annotations

import numpy as np

#: Kinds of photon (``kind`` in deposits and truth); NOISE: a noisy channel's own trigger.
ANNIHILATION, LU176, GAMMA, NOISE = 0, 1, 2, 3

#: Decay ids of the scanner's own Lu-176 decays start here (the source's decays count from 0).
LU176_ID_BASE = 1 << 48

#: One photon's deposit in one crystal. ``t`` ps at its first interaction there, ``energy`` keV,
#: ``x, y, z`` mm where the photon was emitted (annihilation point, decay point in a crystal).
DEPOSIT_DTYPE = np.dtype([
    ("t", np.int64), ("crystal", np.int32), ("energy", np.float64), ("decay", np.int64),
    ("photon", np.int16), ("kind", np.uint8), ("scatters", np.uint8),
    ("x", np.float32), ("y", np.float32), ("z", np.float32),
])

#: The truth of one single, aligned with the singles it describes. ``decay`` unique per decay
#: (-1 none); ``photon`` index within the decay (0, 1 annihilation photons; Lu-176: 0 the local
#: beta, 1-3 the cascade gammas; gamma emitters: 2 + line index); ``kind`` ANNIHILATION, LU176,
#: GAMMA or NOISE; ``scatters`` Compton/coherent scatterings in the phantom; ``x, y, z`` mm the photon's
#: emission point; ``energy`` keV deposited (summed over pile-up); ``t`` ps of the first
#: interaction, before the time resolution; ``pileup`` deposits of other decays summed into it.
TRUTH_DTYPE = np.dtype([
    ("decay", np.int64), ("photon", np.int16), ("kind", np.uint8), ("scatters", np.uint8),
    ("x", np.float32), ("y", np.float32), ("z", np.float32), ("energy", np.float32),
    ("t", np.int64), ("pileup", np.uint8),
])

#: A single inside the electronics, before digitisation: the truth plus what the digitizer needs
#: (``t_meas`` ps, the trigger time with the time resolution; ``crystal``).
PENDING_DTYPE = np.dtype([*TRUTH_DTYPE.descr, ("t_meas", np.int64), ("crystal", np.int32)])

#: The emulator's bookkeeping, in the order of its counters array.
COUNTERS = (
    "decays",               # decays of the source
    "histories",            # SPECT: simulated histories (each stands for several decays)
    "lu176_decays",         # intrinsic decays in the crystals
    "photons",              # photons emitted (annihilation, gamma, Lu-176 cascade)
    "photons_absorbed",     # photo-electrically absorbed in the phantom, no deposit before
    "photons_scattered",    # scattered at least once in the phantom
    "photons_escaped",      # left without depositing in any crystal
    "deposits",             # photon x crystal deposits
    "deposits_rejected",    # lost to the crystal efficiency
    "below_threshold",      # deposits that did not trigger (and piled on nothing)
    "dead_time_losses",     # deposits lost because their module was dead
    "pileups",              # deposits of another decay summed into a single
    "singles",              # singles digitised
)

#: Indices into the counters array, for the kernels.
(DECAYS, HISTORIES, LU176_DECAYS, PHOTONS, ABSORBED, SCATTERED, ESCAPED, DEPOSITS, REJECTED,
 BELOW_THRESHOLD, DEAD_TIME_LOSSES, PILEUPS, SINGLES) = range(len(COUNTERS))
