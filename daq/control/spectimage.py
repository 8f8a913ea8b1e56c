"""A SPECT run's image at the stop: OSEM of its projections, in Bq/mL, with a cardiac scan's
scored bull's-eye, and its DICOM NM object where the run is to be sent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hw.scanner import Scanner
from runstore.facts import run_facts
from runstore.rundir import RunDir


@dataclass(frozen=True)
class SpectImage:
    """A SPECT run's image at the stop, and for a cardiac scan its reading (or None)."""

    image: Any
    reading: Any
    """The heart's :class:`recon.spect.reading.CardiacReading` (axis found in the image)."""


def spect_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                dicom: bool = False) -> SpectImage:
    """OSEM of the run's first photopeak's projections with TEW scatter and the product's default
    mu-map (:func:`recon.spect.runimage.default_mu_map`: a cardiac scan's learned map where the
    camera ships one, else the calculated map of the scan's own outline), in Bq/mL where the scanner has the
    sensitivity of the run's nuclide (:mod:`recon.spect.quant`); NIfTI + PNG slices and MIP in
    RUN/images, with ``dicom`` the DICOM NM object ``image_nm.dcm`` too. A cardiac scan (the
    study's body part HEART, or an emulated phantom with a myocardium) is read too
    (:mod:`recon.spect.reading`: ``polar_map.png``, ``polar_map.csv`` with the scores)."""
    import recon
    from recon.spect.quant import quantify_spect
    from recon.spect.runimage import default_mu_map, is_cardiac, nm_description, spect_run_image

    t0 = time.monotonic()
    facts = run_facts(run)
    cardiac = is_cardiac(facts, scanner)
    mu_map = default_mu_map(scanner.name, cardiac)
    image, _ = quantify_spect(spect_run_image(run, scanner, iterations, subsets, mu_map), scanner,
                              facts.nuclide, facts.duration_s)
    paths = list(recon.save_outputs(image, run.images / "image"))
    if dicom:
        paths.append(recon.write_dicom_nm(image, run.images / "image_nm.dcm",
                                          *nm_description(facts, image)))
    reading = None
    if cardiac:
        from recon.spect.reading import correction_of, read_heart

        reading = read_heart(image, scanner.name, correction_of(image), facts.study.sex)
        paths += reading.write(run.images)
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "attenuation": image.meta["attenuation_method"],
                       "seconds": round(time.monotonic() - t0, 2)})
    return SpectImage(image, reading)
