"""A SPECT run's image: OSEM of its projections in a photopeak's window, with TEW scatter and the
attenuation correction its ``--mu-map`` names, and the words of its DICOM NM object; the one
pipeline ``petdaq recon`` and the DAQ's image at the stop share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from coincidence import spect
from hw.scanner import Scanner
from infra.errors import UserError
from runstore.facts import RunFacts, run_facts
from runstore.projections import read_projections
from runstore.rundir import RunDir

#: OSEM iterations of the image without attenuation correction that the calculated mu-map is
#: outlined on.
OUTLINE_ITERATIONS = 2
#: A study of this body part is read as a heart (polar map, scores); ``--cardiac`` reads one of
#: these too, and refuses a study of another part.
CARDIAC_PARTS = ("HEART",)
CHEST_PARTS = ("HEART", "CHEST", "THORAX")


def spect_run_image(run: RunDir, scanner: Scanner, iterations: int = 4, subsets: int = 6,
                    mu_map: str = "estimate", photopeak_kev: float | None = None,
                    body_part: str | None = None) -> Any:
    """The OSEM image (counts) of a SPECT run's projections (``RUN/projections.npz``) in the
    window of ``photopeak_kev`` (None: the first photopeak): TEW scatter, and the attenuation
    ``mu_map`` names (:func:`spect_mu_map`). Its meta records the photopeak window
    (``window_kev``), the mu-map's words (``attenuation_method``) and kind
    (``attenuation_kind``: :class:`recon.corrections.attenuation.MuMap`'s method)."""
    import recon

    projections, edges = read_projections(run.path)
    k = spect.select_photopeak(edges, photopeak_kev)
    windows = spect.triple(edges, k)
    peak, scatter = peak_and_scatter(projections[3 * k:3 * k + 3], windows)
    energy = float(np.mean(windows.peak))
    grid = recon.default_grid(scanner)

    def osem(mu: Any, n: int) -> Any:
        return recon.spect_osem(peak, scanner, scatter, mu, iterations=n,
                                subsets=subsets, grid=grid, energy_kev=energy)

    mu = spect_mu_map(run, scanner, grid, energy, mu_map, body_part,
                      lambda: osem(None, OUTLINE_ITERATIONS))
    image = osem(mu.image, iterations)
    image.meta.update(window_kev=list(windows.peak), attenuation=mu.image is not None,
                      attenuation_method=mu.description, attenuation_kind=mu.method)
    return image


def peak_and_scatter(counts: np.ndarray, windows: spect.EnergyWindows
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A photopeak's counts and its smoothed TEW scatter estimate, from the projections of its
    triple of windows [lower, peak, upper, ...] (float32)."""
    counts = np.asarray(counts, np.float32)
    return counts[spect.PEAK], spect.smooth_scatter(spect.tew_scatter(counts, windows))


def spect_mu_map(run: RunDir, scanner: Scanner, grid: Any, energy_kev: float, choice: str,
                 body_part: str | None, without_attenuation: Callable[[], Any]) -> Any:
    """The mu-map (:class:`recon.corrections.attenuation.MuMap`, 1/mm at ``energy_kev`` on
    ``grid``) that ``choice`` names: ``estimate`` the calculated map of the outline of
    ``without_attenuation()`` (:mod:`recon.spect.mumap`), ``learned`` the camera's shipped
    model's map of that image (:mod:`recon.spect.learnedmap`; a ``.onnx`` file: that model's),
    ``truth`` an emulated run's phantom (validation only), ``none``, or a NIfTI file at
    511 keV."""
    from recon.corrections import attenuation
    from recon.corrections.attenuation import MuMap
    from recon.pet.runimage import run_phantom
    from recon.spect import learnedmap, mumap

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
    if is_learned(choice):
        model = learnedmap.model_for(scanner.name, choice)
        return learnedmap.predict(model, without_attenuation(), energy_kev)
    if choice != attenuation.ESTIMATE:
        return mumap.at_energy(attenuation.load(choice), grid, energy_kev)
    part = body_part or facts.study.body_part or (
        phantom.body_part if phantom is not None else None)
    return mumap.estimate(without_attenuation(), energy_kev, part)


def default_mu_map(camera: str, cardiac: bool) -> str:
    """A SPECT run's ``--mu-map`` when none is chosen: ``learned`` for a cardiac scan on a camera
    that ships a learned model and normal limits of its maps (the product's CT-less correction),
    else ``estimate`` (the calculated map)."""
    from recon.corrections import attenuation
    from recon.spect import learnedmap, normals

    if cardiac and learnedmap.shipped(camera) is not None and any(
            x.correction == attenuation.LEARNED for x in normals.shipped(camera)):
        return attenuation.LEARNED
    return attenuation.ESTIMATE


def is_learned(choice: str) -> bool:
    """Whether a ``--mu-map`` choice asks for a learned map (``learned`` or a model file)."""
    from recon.corrections import attenuation

    return choice == attenuation.LEARNED or choice.lower().endswith(".onnx")


def method_of(choice: str) -> str:
    """The map's method (:class:`recon.corrections.attenuation.MuMap`'s) that a ``--mu-map``
    choice gives."""
    from recon.corrections import attenuation

    if is_learned(choice):
        return attenuation.LEARNED
    return {attenuation.NONE: "none", attenuation.ESTIMATE: "calculated",
            attenuation.TRUTH: "truth"}.get(choice, "file")


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


def is_cardiac(facts: RunFacts, scanner: Scanner) -> bool:
    """A scan of a heart: its study's body part says so, or it emulated a phantom with a
    myocardium."""
    if (facts.study.body_part or "") in CARDIAC_PARTS:
        return True
    from recon.pet.runimage import run_phantom

    phantom = run_phantom(facts, scanner)
    return phantom is not None and "myocardium" in phantom.regions()


def not_a_heart(facts: RunFacts, scanner: Scanner, body_part: str | None = None) -> str | None:
    """Why the run cannot be a heart's scan (``body_part``, else its study's, is another part,
    or it emulated a phantom without a myocardium), or None."""
    part = (body_part or facts.study.body_part or "").upper() or None
    if part is not None and part not in CHEST_PARTS:
        return f"the scan is of the {part}, not of a heart"
    from recon.pet.runimage import run_phantom

    phantom = run_phantom(facts, scanner)
    if phantom is not None and "myocardium" not in phantom.regions():
        return f"the run's phantom '{phantom.name}' has no heart (no myocardium)"
    return None
