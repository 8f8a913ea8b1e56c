"""A SPECT scan's mu-map at its photopeak energy: the calculated map of its own outline, a file's
map, or (for validation) an emulated phantom's, scaled from 511 keV by water's attenuation.

The calculated map is PET's (:mod:`recon.corrections.attenuation`): the outline of the OSEM
image without attenuation correction, water inside, a skull for a head. A map at 511 keV (a
file's, in 1/mm or Hounsfield units) is scaled to the photopeak by water's ratio
``mu_water(E) / mu_water(511 keV)``; bone's own ratio differs from water's by under 5 % from
100 to 250 keV (its photo-electric share grows faster), the map's bone is that much low.
"""

from __future__ import annotations

import numpy as np

from emulator.physics.media import mu_water
from recon.corrections import attenuation
from recon.corrections.attenuation import MuMap
from recon.grid import Grid, Image

#: Photon energy of the maps that come from outside or are calculated (keV).
MAP_KEV = 511.0
#: The first outline is where the smoothed image exceeds this fraction of its hottest: a SPECT
#: torso's myocardium and liver take up ten times the body's background (the cardiac phantom's
#: body median is 0.12 of its 99.9th percentile, the air outside 0.004), where PET's
#: :data:`recon.corrections.attenuation.FIRST_FRACTION` would outline the heart alone.
FIRST_FRACTION = 0.05
#: FWHM (mm) of the smoothing before the outline: SPECT's noise at a day-7 Lu-177 scan's counts
#: breaks PET's 6 mm outline's edge (a 203 mm cylinder's outline 24 % short of its volume, against
#: 3 % with 10 mm; 4 % over at ten times the counts).
OUTLINE_FWHM_MM = 10.0


def water_ratio(energy_kev: float) -> float:
    """Water's attenuation at ``energy_kev`` over its attenuation at 511 keV (1.60 at 140 keV)."""
    return float(mu_water(energy_kev) / mu_water(MAP_KEV))


def at_energy(mu_map: MuMap, grid: Grid, energy_kev: float) -> MuMap:
    """``mu_map`` (1/mm at 511 keV) on ``grid``, scaled to ``energy_kev``."""
    if mu_map.image is None:
        return mu_map
    on = attenuation.on_grid(mu_map, grid).image
    scaled = Image(np.ascontiguousarray(on.array * np.float32(water_ratio(energy_kev))),
                   on.voxel_mm, on.origin_mm, "1/mm", dict(on.meta, energy_kev=energy_kev))
    return MuMap(scaled, mu_map.method, mu_map.description)


def estimate(without_attenuation: Image, energy_kev: float, body_part: str | None) -> MuMap:
    """The calculated map at ``energy_kev`` of the outline of an OSEM image without attenuation
    correction (a head's, with its skull, when ``body_part`` is one)."""
    body = attenuation.outline(without_attenuation.array, without_attenuation.grid.voxel_mm,
                               FIRST_FRACTION, OUTLINE_FWHM_MM)
    head = attenuation.is_head(body_part)
    layers = attenuation.HEAD if head else None
    mu = attenuation.calculated(body, without_attenuation.grid, layers)
    mu.meta.update(method="calculated", body_part=body_part or "")
    words = ("calculated: outline of the emission, water"
             + (f", {layers.words()}" if head else ""))
    return at_energy(MuMap(mu, "calculated", words), without_attenuation.grid, energy_kev)
