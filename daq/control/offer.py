"""What this installation can emulate (scanners with their default energy windows, phantoms,
nuclides): the ``offer`` of the service's status reply, from which the console fills its form."""

from __future__ import annotations

import functools
from typing import Any

from daq import messages


@functools.cache
def scan_offer() -> dict[str, Any]:
    """The offer (:func:`daq.messages.offer_message`) of the built-in scanners, phantoms and
    nuclides."""
    from emulator import phantoms
    from hw import builtin_scanners, load_scanner, nuclides

    scanners = {}
    for name in builtin_scanners():
        s = load_scanner(name)
        lo, hi = s.acquisition["energy_window_kev"]
        scanners[name] = {"kind": s.kind, "energy_window_kev": [float(lo), float(hi)],
                          "module_grid": [s.n_module_rings, s.n_modules]}
    return messages.offer_message(scanners, phantoms.names(), nuclides.names())
