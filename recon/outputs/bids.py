"""A dynamic image as BIDS-PET: ``sub-<label>_pet.nii.gz`` (4D, Bq/mL) and its ``_pet.json``.

The sidecar has every field BIDS-PET requires (:data:`REQUIRED`). TimeZero is the injection when
the study gives it (else the scan's start); ScanStart, InjectionStart, FrameTimesStart and
ImageDecayCorrectionTime are seconds from it, of the kinetic clock: an emulated kinetic run's
model time (``KineticTimeScale`` times the acquisition's; its DICOM series keeps the
acquisition's). What the study lacks is written "n/a" and named by
:func:`missing_study_fields`, never guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from infra.atomic import replacing
from infra.errors import UserError
from recon.outputs.export import MANUFACTURER
from recon.pet.dynamic import DynamicImage

#: The fields BIDS-PET requires in a ``_pet.json`` (BIDS 1.9, rules/sidecars/pet.yaml).
REQUIRED = (
    "Manufacturer", "ManufacturersModelName", "Units", "TracerName", "TracerRadionuclide",
    "InjectedRadioactivity", "InjectedRadioactivityUnits", "InjectedMass", "InjectedMassUnits",
    "SpecificRadioactivity", "SpecificRadioactivityUnits", "ModeOfAdministration", "TimeZero",
    "ScanStart", "InjectionStart", "FrameTimesStart", "FrameDuration", "AcquisitionMode",
    "ImageDecayCorrected", "ImageDecayCorrectionTime", "ReconMethodName",
    "ReconMethodParameterLabels", "ReconMethodParameterUnits", "ReconMethodParameterValues",
    "ReconFilterType", "AttenuationCorrection",
)


def subject_label(patient_id: str | None, run_name: str) -> str:
    """The BIDS subject label: the patient id (or the run's name) in letters and digits."""
    label = re.sub(r"[^A-Za-z0-9]", "", patient_id or run_name)
    return label or "unknown"


def missing_study_fields(dyn: DynamicImage) -> list[str]:
    """The study's fields a complete sidecar needs and the run lacks."""
    study = dyn.facts.study
    return [name for name, value in (("radiopharmaceutical", study.radiopharmaceutical),
                                     ("injected_mbq", study.injected_mbq),
                                     ("injection_time_utc", study.injection_time_utc))
            if value is None]


def sidecar(dyn: DynamicImage) -> dict[str, Any]:
    """The ``_pet.json`` of a dynamic image."""
    facts, study = dyn.facts, dyn.facts.study
    rp, _acq = dyn.quantified
    start = dt.datetime.fromisoformat(facts.start_utc) if facts.start_utc else None
    injection = dt.datetime.fromisoformat(study.injection_time_utc) \
        if study.injection_time_utc else None
    zero = injection or start
    scan_start_s = (start - zero).total_seconds() if start and zero else 0.0
    meta = dyn.images[0].meta
    scale = facts.kinetic_time_scale
    doc: dict[str, Any] = {
        "Manufacturer": MANUFACTURER,
        "ManufacturersModelName": facts.scanner or "n/a",
        "Units": "Bq/mL",
        "TracerName": study.radiopharmaceutical or "n/a",
        "TracerRadionuclide": facts.nuclide or "n/a",
        "InjectedRadioactivity": study.injected_mbq if study.injected_mbq else "n/a",
        "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus",
        "TimeZero": zero.strftime("%H:%M:%S") if zero else "00:00:00",
        "ScanStart": round(scan_start_s, 3),
        "InjectionStart": 0 if injection else "n/a",
        "FrameTimesStart": [round(scan_start_s + f.start_s * scale, 6) for f in dyn.frames],
        "FrameDuration": [round(f.duration_s * scale, 6) for f in dyn.frames],
        "AcquisitionMode": "list mode",
        "ImageDecayCorrected": bool(rp.half_life_s),
        "ImageDecayCorrectionTime": round(scan_start_s, 3),
        "DecayCorrectionFactor": [round(v, 6) for v in dyn.decay_factors],
        "ReconMethodName": "LM-OSEM" + (" TOF" if meta.get("tof") else ""),
        "ReconMethodParameterLabels": ["updates"],
        "ReconMethodParameterUnits": ["none"],
        "ReconMethodParameterValues": [min(dyn.updates)],
        "UpdatesPerFrame": dyn.updates,
        "ReconFilterType": "none",
        "AttenuationCorrection": meta.get("attenuation_method", "none")
        if meta.get("attenuation") else "none",
        "RandomsCorrection": "delayed window" if meta.get("randoms") != "none" else "none",
        "ScatterCorrectionMethod": "single-scatter simulation, tail-fitted"
        if meta.get("scatter") else "none",
        "PromptCounts": dyn.prompts,
        "DeadTimeCorrectionFactor": [round(float(i.meta.get("dead_time_factor", 1.0)), 6)
                                     for i in dyn.images],
        "KineticTimeScale": facts.kinetic_time_scale,
    }
    if study.weight_kg:
        doc["BodyWeight"], doc["BodyWeightUnits"] = study.weight_kg, "kg"
    if facts.phantom:
        doc["EmulatedPhantom"] = facts.phantom
    return doc


def write_bids(dyn: DynamicImage, folder: Path, label: str) -> tuple[Path, Path]:
    """Write ``sub-<label>_pet.nii.gz`` and ``sub-<label>_pet.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    first = dyn.images[0]
    img = nib.Nifti1Image(dyn.array, first.affine_ras)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"Bq/mL"
    img.set_sform(first.affine_ras, code=1)
    img.set_qform(first.affine_ras, code=1)
    nifti = folder / f"sub-{label}_pet.nii.gz"
    with replacing(nifti) as tmp:
        nib.save(img, tmp)
    side = folder / f"sub-{label}_pet.json"
    with replacing(side) as tmp:
        tmp.write_text(json.dumps(sidecar(dyn), indent=2) + "\n")
    return nifti, side


def read_bids(folder: Path) -> tuple[np.ndarray, dict[str, Any], Any]:
    """(the 4D array [x, y, z, frame], the sidecar, the NIfTI image) of a dynamic folder."""
    found = sorted(folder.glob("sub-*_pet.nii.gz"))
    if not found:
        raise UserError(f"{folder} holds no dynamic image (sub-*_pet.nii.gz): reconstruct the "
                        "frames first (petdaq recon RUN --frames ...)")
    if len(found) > 1:
        raise UserError(f"{folder} holds {len(found)} dynamic images "
                        f"({', '.join(f.name for f in found)}): keep one")
    nifti = found[0]
    side = nifti.with_name(nifti.name.replace(".nii.gz", ".json"))
    try:
        img = nib.load(str(nifti))
        doc = json.loads(side.read_text())
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise UserError(f"cannot read the dynamic image {nifti}: {exc}") from None
    return np.asarray(img.get_fdata(), np.float32), doc, img
