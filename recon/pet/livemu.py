"""The live image's attenuation: Chang's first-order correction from the live image's own outline,
the cheapest estimate that makes the console's image roughly quantitative while the scan runs.

The live reconstruction has no attenuation in its model (a new mu-map would mean new event
weights and a new sensitivity image mid-scan). Once it holds :data:`MIN_PROMPTS` prompts, its
image (an emission image without attenuation correction) is outlined as the run's final image
is (:func:`recon.pet.mumap.calculated_map`: a skull for a head, lungs in another body), and a
background thread computes the sensitivity image with that map (a chunk of lines at a time
under the kernels' lock, :func:`recon.pet.system.sensitivity`); from then on each live image is
multiplied by ``s_without / s_with``, the mean attenuation correction over the lines through
each voxel (Chang, IEEE Trans Nucl Sci 25:638 (1978)), exact for a point and a few per cent off
for a body's distributed activity. The run's final image and frames take the full correction.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from recon.grid import Image
from recon.outputs.png import smoothed
from recon.pet.mumap import calculated_map
from recon.pet.system import PairFactor, sensitivity

#: Prompts of the live image before its outline is drawn.
MIN_PROMPTS = 300_000
#: Monte-Carlo LORs of the attenuated sensitivity image the factors come from.
SAMPLES = 10_000_000
#: FWHM (mm) that smooths the factors (smooth themselves) of the Monte-Carlo noise.
SMOOTH_FWHM_MM = 10.0


class LiveAttenuation:
    """Chang's factors for a live reconstruction (``em``: its
    :class:`recon.pet.osem.ListModeEM`, whose sensitivity has no attenuation)."""

    def __init__(self, em: object, body_part: str | None = None,
                 normalization: PairFactor | None = None, samples: int = SAMPLES) -> None:
        self.em, self.body_part, self.normalization = em, body_part, normalization
        self.samples = samples
        self.factors: np.ndarray | None = None
        """[x, y, z] float32 once computed (None before)."""
        self.words = ""
        self.error: str | None = None
        """Why the factors could not be had (the live image then stays uncorrected)."""
        self._thread: threading.Thread | None = None

    def corrected(self, image: Image, prompts: int) -> Image:
        """``image`` times the factors once they are ready (its meta says so); the first call
        with :data:`MIN_PROMPTS` prompts starts their computation from ``image``."""
        if self.factors is not None:
            meta = {**image.meta, "attenuation": True, "attenuation_method": self.words}
            return replace(image, array=(image.array * self.factors).astype(np.float32),
                           meta=meta)
        if self._thread is None and prompts >= MIN_PROMPTS:
            self._thread = threading.Thread(target=self._compute, args=(image.array.copy(),),
                                            name="live-attenuation", daemon=True)
            self._thread.start()
        return image

    def wait(self, timeout_s: float | None = None) -> bool:
        """Whether the factors are ready (waiting up to ``timeout_s`` for them)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.factors is not None

    def _compute(self, emission: np.ndarray) -> None:
        try:
            self._factors(emission)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _factors(self, emission: np.ndarray) -> None:
        em = self.em
        grid = em.grid
        mu, words = calculated_map(emission, grid, self.body_part)
        with_mu = sensitivity(em.scanner, grid, mu, self.samples, k=em.k, use_cache=False,
                              normalization=self.normalization)
        without = em.sensitivity
        factors = np.divide(without, with_mu, out=np.ones_like(without, np.float32),
                            where=(with_mu > 0) & (without > 0))
        factors = np.where(without > 0, smoothed(factors, SMOOTH_FWHM_MM, grid.voxel_mm), 1.0)
        self.words = words.replace("calculated: outline of the emission",
                                   "Chang first-order, live outline")
        self.factors = factors.astype(np.float32)

