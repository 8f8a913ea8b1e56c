"""A SPECT run's image at the stop: OSEM of its projections, in Bq/mL, with a cardiac scan's
bull's-eye, and its DICOM NM object where the run is to be sent."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from coincidence import spect
from daq.pipeline.process.projections import select_photopeak
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.facts import run_facts
from runstore.projections import read_projections
from runstore.rundir import RunDir

#: OSEM iterations of the image without attenuation correction that the calculated mu-map is
#: outlined on.
OUTLINE_ITERATIONS = 2


@dataclass(frozen=True)
class SpectImage:
    """A SPECT run's image at the stop, and for a cardiac scan its polar map (or None)."""

    image: Any
    polar: Any
    lv: Any
    """The left ventricle's axis the polar map was sampled on (found in the image)."""


def spect_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                dicom: bool = False) -> SpectImage:
    """OSEM of the run's first photopeak's projections with TEW scatter and the calculated mu-map
    of the scan's own outline (:mod:`recon.spect.mumap`), in Bq/mL where the scanner has the
    sensitivity of the run's nuclide (:mod:`recon.spect.quant`); NIfTI + PNG slices and MIP in
    RUN/images, with ``dicom`` the DICOM NM object ``image_nm.dcm`` too. A scan of a phantom
    with a myocardium gets its bull's-eye too, on the axis found in the image
    (``polar_map.png``, ``polar_map.csv``)."""
    import recon
    from recon.spect.quant import quantify_spect

    t0 = time.monotonic()
    facts = run_facts(run)
    image, _ = quantify_spect(spect_run_image(run, scanner, iterations, subsets), scanner,
                              facts.nuclide, facts.duration_s)
    paths = list(recon.save_outputs(image, run.images / "image"))
    if dicom:
        paths.append(recon.write_dicom_nm(image, run.images / "image_nm.dcm",
                                          *nm_description(facts, image)))
    polar, lv = _bullseye(image, facts, scanner)
    if polar is not None:
        from recon.spect.cardiac import write_segments_csv
        from recon.spect.polarmap import SEGMENT_NAMES

        paths.append(polar.write_png(run.images / "polar_map.png"))
        paths.append(write_segments_csv({f"{i + 1} {n}": float(v) for i, (n, v) in enumerate(
            zip(SEGMENT_NAMES, polar.percent, strict=True))}, run.images / "polar_map.csv"))
    run.update(images={"files": [str(p.relative_to(run.path)) for p in paths],
                       "attenuation": image.meta["attenuation_method"],
                       "seconds": round(time.monotonic() - t0, 2)})
    return SpectImage(image, polar, lv)


def nm_description(facts: Any, image: Any) -> tuple[Any, Any]:
    """The radiopharmaceutical and acquisition of a SPECT image's NM object: the run's study,
    the camera's photopeak window, attenuation and scatter corrections."""
    from recon.pet.runimage import describe

    duration = facts.duration_s or 0.0
    rp, acq = describe(facts, {"attenuation_method": image.meta.get("attenuation_method")},
                       duration, "SPECT OSEM",
                       f"OSEM {image.meta['iterations']}i{image.meta['subsets']}s")
    window = image.meta.get("window_kev")
    corrections = tuple(c for c, on in (("ATTN", image.meta.get("attenuation")),
                                        ("SCAT", image.meta.get("scatter"))) if on)
    return rp, dataclasses.replace(acq, corrections=corrections,
                                   energy_window_kev=tuple(window) if window else None)


def _bullseye(image: Any, facts: Any, scanner: Scanner) -> tuple[Any, Any]:
    """(polar map, axis) of a cardiac scan's image, or (None, None)."""
    from recon.pet.runimage import run_phantom

    phantom = run_phantom(facts, scanner)
    if phantom is None or "myocardium" not in phantom.regions():
        return None, None
    from recon.spect.cardiac import map_of
    from recon.spect.lvaxis import find_lv_axis

    lv = find_lv_axis(image)
    return map_of(image, lv), lv


def spect_run_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                    mu_map: str = "estimate", photopeak_kev: float | None = None,
                    body_part: str | None = None) -> Any:
    """The OSEM image (counts) of a SPECT run's projections (``RUN/projections.npz``) in the
    window of ``photopeak_kev`` (None: the first photopeak): TEW scatter, and the attenuation
    ``mu_map`` names (:func:`spect_mu_map`). Its meta records the photopeak window
    (``window_kev``) and the mu-map's words (``attenuation_method``)."""
    import recon

    projections, edges = read_projections(run.path)
    k = select_photopeak(edges, photopeak_kev)
    windows = spect.triple(edges, k)
    counts = projections[3 * k:3 * k + 3]
    scatter = spect.smooth_scatter(spect.tew_scatter(counts, windows))
    energy = float(np.mean(windows.peak))
    grid = recon.default_grid(scanner)

    def osem(mu: Any, n: int) -> Any:
        return recon.spect_osem(counts[spect.PEAK], scanner, scatter, mu, iterations=n,
                                subsets=subsets, grid=grid, energy_kev=energy)

    mu = spect_mu_map(run, scanner, grid, energy, mu_map, body_part,
                      lambda: osem(None, OUTLINE_ITERATIONS))
    image = osem(mu.image, iterations)
    image.meta.update(window_kev=list(windows.peak), attenuation=mu.image is not None,
                      attenuation_method=mu.description)
    return image


def spect_mu_map(run: RunDir, scanner: Scanner, grid: Any, energy_kev: float, choice: str,
                 body_part: str | None, without_attenuation: Callable[[], Any]) -> Any:
    """The mu-map (:class:`recon.corrections.attenuation.MuMap`, 1/mm at ``energy_kev`` on
    ``grid``) that ``choice`` names: ``estimate`` the calculated map of the outline of
    ``without_attenuation()`` (:mod:`recon.spect.mumap`), ``truth`` an emulated run's phantom
    (validation only), ``none``, or a NIfTI file at 511 keV."""
    from recon.corrections import attenuation
    from recon.corrections.attenuation import MuMap
    from recon.pet.runimage import run_phantom
    from recon.spect import mumap

    if choice == attenuation.NONE:
        return MuMap.none()
    facts = run_facts(run)
    phantom = run_phantom(facts, scanner)
    if choice == attenuation.TRUTH:
        if phantom is None:
            raise UserError("--mu-map truth needs an emulated run (its phantom's own map): this "
                            "run names no phantom")
        return MuMap(grid.image(phantom.mu_map(grid, energy_kev), "1/mm"), attenuation.TRUTH,
                     f"emulated phantom's own mu-map ({phantom.name}; validation)")
    if choice != attenuation.ESTIMATE:
        return mumap.at_energy(attenuation.load(choice), grid, energy_kev)
    part = body_part or facts.study.body_part or (
        phantom.body_part if phantom is not None else None)
    return mumap.estimate(without_attenuation(), energy_kev, part)
