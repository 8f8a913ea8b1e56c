"""Images out to the formats every viewer reads: NIfTI-1 (nibabel) and DICOM (pydicom).

Geometry (see :mod:`recon.grid`): scanner coordinates are the DICOM patient frame (LPS) of a
head-first supine patient; NIfTI gets ``Image.affine_ras`` (LPS -> RAS flips x and y) as both its
sform and qform (code 1, scanner-anatomical).

DICOM:

- PET: PET Image Storage, one file per axial slice, in one series: int16 pixels with a per-slice
  RescaleSlope (the slice maximum maps to 32767), Units BQML (the image must be in Bq/mL,
  :func:`recon.quant.activity_concentration`), DecayCorrection START with the frame's decay factor,
  the radiopharmaceutical (nuclide code, half-life, positron fraction, injected activity and
  time), ImagePositionPatient / ImageOrientationPatient (axial, rows along +y, columns along +x),
  PixelSpacing, SliceThickness.
- SPECT: NM Image Storage, one multi-frame file (a RECON TOMO volume): uint16 frames with one
  RescaleSlope, the frame positions in the Detector Information Sequence, the energy window and
  the radiopharmaceutical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

from infra.atomic import replacing
from infra.errors import UserError
from recon.grid import LPS_TO_RAS, Image
from recon.outputs.png import DISPLAY_FWHM_MM, for_display, write_mip, write_slices
from recon.quant import decay_factor

#: SNOMED CT codes of PET radionuclides (DICOM CID 4020).
NUCLIDE_CODES = {
    "C-11": ("40565003", "^11^Carbon"),
    "F-18": ("77004003", "^18^Fluorine"),
    "Cu-64": ("3932008", "^64^Copper"),
    "Ga-68": ("35337001", "^68^Gallium"),
}
MANUFACTURER = "bedside-pet"
_INT16_MAX = 32767
_UINT16_MAX = 65535


# ----------------------------------------------------------------------------------------- NIfTI


def write_nifti(image: Image, path: str | Path) -> Path:
    """Write ``image`` as NIfTI-1 (.nii or .nii.gz) with its RAS affine."""
    img = nib.Nifti1Image(np.asarray(image.array, np.float32), image.affine_ras)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = image.units.encode()[:79]
    img.set_sform(image.affine_ras, code=1)
    img.set_qform(image.affine_ras, code=1)
    path = Path(path)
    with replacing(path) as tmp:
        nib.save(img, tmp)
    return path


def read_nifti(path: str | Path) -> Image:
    """An Image from a NIfTI file written by :func:`write_nifti` (axis-aligned affine)."""
    try:
        img = nib.load(str(path))
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise UserError(f"cannot read NIfTI file {path}: {exc}") from None
    affine = np.linalg.inv(LPS_TO_RAS) @ img.affine
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])), atol=1e-6):
        raise UserError(f"{path}: only axis-aligned NIfTI images can be read")
    units = img.header["descrip"].item().decode(errors="replace").strip("\x00 ")
    return Image(np.asarray(img.get_fdata(), np.float32), tuple(np.diag(affine)[:3]),
                 tuple(affine[:3, 3]), units)


# ----------------------------------------------------------------------------------------- DICOM


@dataclass(frozen=True)
class Radiopharmaceutical:
    """What was injected: ``nuclide`` name (e.g. "F-18"), its half-life (s) and positron fraction
    (1 for SPECT nuclides' photon yield is not asked for), the injected activity (Bq) and time."""

    nuclide: str
    half_life_s: float
    positron_fraction: float
    injected_bq: float
    injection_time: dt.datetime
    agent: str = ""


@dataclass(frozen=True)
class Acquisition:
    """The scan: patient identity, start (the decay-correction reference) and duration (s)."""

    start: dt.datetime
    duration_s: float
    patient_name: str = "Anonymous^Phantom"
    patient_id: str = "PHANTOM"
    study_description: str = "bedside scan"
    series_description: str = ""
    scanner: str = ""
    reconstruction: str = ""
    corrections: tuple[str, ...] = ()
    """DICOM CorrectedImage terms applied (e.g. "ATTN", "RAN", "SCAT"); "DECY" is always added."""
    energy_window_kev: tuple[float, float] | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    attenuation_method: str = ""
    """How the attenuation was had (DICOM Attenuation Correction Method, with "ATTN")."""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_instance_uid: str = ""
    """The worklist's study (empty: a new one for each series)."""


def _date(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d")


def _time(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")[:13]


def _base(sop_class: str, modality: str, acq: Acquisition, study_uid: str, series_uid: str,
          frame_uid: str, series_number: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"
    now = dt.datetime.now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = _date(now), _time(now)
    ds.Modality = modality
    ds.PatientName, ds.PatientID = acq.patient_name, acq.patient_id
    ds.PatientBirthDate, ds.PatientSex = acq.patient_birth_date, acq.patient_sex
    if acq.patient_weight_kg:
        ds.PatientWeight = _ds_str(acq.patient_weight_kg)
    if acq.patient_height_m:
        ds.PatientSize = _ds_str(acq.patient_height_m)
    ds.Laterality = ""  # type 2C: the scan is not of one side of a paired organ
    _head_first_supine(ds)
    ds.StudyInstanceUID = acq.study_instance_uid or study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _date(acq.start)
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = _time(acq.start)
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", acq.accession_number, ""
    ds.StudyDescription = acq.study_description
    ds.SeriesDescription = acq.series_description
    ds.SeriesNumber = series_number
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, acq.scanner
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleIntercept = "0"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _head_first_supine(ds: Dataset) -> None:
    """The NM/PET Patient Orientation module of a head-first supine patient (SNOMED CT codes
    of DICOM CIDs 19, 20 and 21: recumbent, supine, headfirst)."""
    orientation = _code("102538003", "SCT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = DicomSequence(
        [_code("40199007", "SCT", "supine")])
    ds.PatientOrientationCodeSequence = DicomSequence([orientation])
    ds.PatientGantryRelationshipCodeSequence = DicomSequence(
        [_code("102540008", "SCT", "headfirst")])


def _radiopharmaceutical(rp: Radiopharmaceutical) -> Dataset:
    item = Dataset()
    item.Radiopharmaceutical = rp.agent or rp.nuclide
    item.RadiopharmaceuticalStartTime = _time(rp.injection_time)
    item.RadiopharmaceuticalStartDateTime = (_date(rp.injection_time)
                                             + _time(rp.injection_time))
    item.RadionuclideTotalDose = f"{rp.injected_bq:.6g}"
    item.RadionuclideHalfLife = f"{rp.half_life_s:.6g}"
    item.RadionuclidePositronFraction = f"{rp.positron_fraction:.6g}"
    code = NUCLIDE_CODES.get(rp.nuclide)
    if code is not None:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = code[0], "SCT", code[1]
        item.RadionuclideCodeSequence = DicomSequence([c])
    else:
        item.RadionuclideCodeSequence = DicomSequence([])
    return item


def _ds_str(value: float) -> str:
    """A DICOM DS value (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8e}"


def _plane(ds: Dataset, image: Image) -> None:
    vx, vy, vz = image.voxel_mm
    ds.Rows, ds.Columns = image.array.shape[1], image.array.shape[0]
    ds.PixelSpacing = [_ds_str(vy), _ds_str(vx)]
    ds.SliceThickness = _ds_str(vz)
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]


@dataclass(frozen=True)
class FrameTiming:
    """A frame of a dynamic series: its start (s after the scan's start), duration (s) and
    number (1-based) among ``of`` frames. The frame's image is decay-corrected to the scan's
    start (DecayCorrection START, its DecayFactor counting the time before the frame)."""

    start_s: float
    duration_s: float
    number: int
    of: int


def write_dicom_pet(image: Image, folder: str | Path, rp: Radiopharmaceutical,
                    acq: Acquisition, series_number: int = 1) -> list[Path]:
    """Write a PET image in Bq/mL as a DICOM series, one file per axial slice."""
    return _write_pet_slices(image, Path(folder), rp, acq, series_number, None,
                             (generate_uid(), generate_uid(), generate_uid()))


def write_dicom_pet_frames(frames: Sequence[Image], timing: Sequence[FrameTiming],
                           folder: str | Path, rp: Radiopharmaceutical, acq: Acquisition,
                           series_number: int = 1) -> list[Path]:
    """Write the frames of a dynamic scan (Bq/mL, decay-corrected to the scan's start) as one
    DYNAMIC DICOM PET series: one file per slice and frame, ImageIndex (frame - 1) x slices +
    slice, each with its frame's reference time, duration and decay factor."""
    uids = (generate_uid(), generate_uid(), generate_uid())
    paths: list[Path] = []
    for image, t in zip(frames, timing, strict=True):
        paths += _write_pet_slices(image, Path(folder), rp, acq, series_number, t, uids)
    return paths


def _write_pet_slices(image: Image, out: Path, rp: Radiopharmaceutical, acq: Acquisition,
                      series_number: int, frame: FrameTiming | None,
                      uids: tuple[str, str, str]) -> list[Path]:
    if image.units != "Bq/mL":
        raise UserError(f"a PET DICOM series needs an image in Bq/mL, got '{image.units}' "
                        "(see recon.quant.activity_concentration)")
    if not np.all(np.isfinite(image.array)):
        raise UserError("image holds non-finite values")
    out.mkdir(parents=True, exist_ok=True)
    nz = image.array.shape[2]
    start_s, duration_s = (frame.start_s, frame.duration_s) if frame else (0.0, acq.duration_s)
    decay = decay_factor(duration_s, rp.half_life_s) * _decay_since_start(start_s, rp)
    reference_s = start_s + _reference_time_s(duration_s, rp.half_life_s)
    frame_start = acq.start + dt.timedelta(seconds=start_s)
    paths = []
    for k in range(nz):
        ds = _base(PositronEmissionTomographyImageStorage, "PT", acq, *uids, series_number)
        ds.AcquisitionDate, ds.AcquisitionTime = _date(frame_start), _time(frame_start)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.InstanceNumber = ds.ImageIndex = k + 1 + (frame.number - 1) * nz if frame else k + 1
        ds.Units, ds.CountsSource = "BQML", "EMISSION"
        ds.SeriesType = ["DYNAMIC" if frame else "STATIC", "IMAGE"]
        if frame:
            ds.NumberOfTimeSlices = frame.of
        dead_time = float(image.meta.get("dead_time_factor", 1.0))
        ds.CorrectedImage = ["DECY", *acq.corrections, *(["DTIM"] if dead_time != 1.0 else [])]
        ds.DecayCorrection = "START"
        ds.DecayFactor = _ds_str(decay)
        if dead_time != 1.0:
            ds.DeadTimeFactor = _ds_str(dead_time)
        ds.RandomsCorrectionMethod = "DLYD" if "RAN" in acq.corrections else "NONE"
        ds.AttenuationCorrectionMethod = ((acq.attenuation_method or "mu-map")[:64].replace(
            "\\", "/") if "ATTN" in acq.corrections else "")
        ds.ReconstructionMethod = acq.reconstruction
        ds.CollimatorType = "NONE"
        ds.NumberOfSlices = nz
        ds.FrameReferenceTime = _ds_str(1000.0 * reference_s)
        ds.ActualFrameDuration = round(1000 * duration_s)
        ds.SliceSensitivityFactor = "1"
        ds.RadiopharmaceuticalInformationSequence = DicomSequence([_radiopharmaceutical(rp)])
        _plane(ds, image)
        x0, y0, z0 = image.origin_mm
        z = z0 + k * image.voxel_mm[2]
        ds.ImagePositionPatient = [_ds_str(x0), _ds_str(y0), _ds_str(z)]
        ds.SliceLocation = _ds_str(z)
        plane = np.maximum(image.array[:, :, k].T, 0.0)
        slope = float(plane.max()) / _INT16_MAX if plane.max() > 0 else 1.0
        pixels = np.rint(plane / slope).astype(np.int16)
        ds.PixelRepresentation = 1
        ds.RescaleSlope = _ds_str(slope)
        ds.PixelData = pixels.tobytes()
        name = f"frame_{frame.number:03d}_slice_{k + 1:04d}.dcm" if frame else \
            f"slice_{k + 1:04d}.dcm"
        path = out / name
        with replacing(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths


def _decay_since_start(start_s: float, rp: Radiopharmaceutical) -> float:
    """exp(lambda t): the decay from the scan's start to ``start_s``, undone."""
    if not rp.half_life_s or rp.half_life_s <= 0:
        return 1.0
    return float(np.exp(np.log(2.0) / rp.half_life_s * start_s))


def _reference_time_s(duration_s: float, half_life_s: float | None) -> float:
    """DICOM FrameReferenceTime: when the activity equals the frame's mean (s from its start)."""
    if half_life_s is None or half_life_s <= 0:
        return duration_s / 2
    lam = np.log(2.0) / half_life_s
    return float(np.log(decay_factor(duration_s, half_life_s)) / lam)


def write_dicom_nm(image: Image, path: str | Path, rp: Radiopharmaceutical, acq: Acquisition,
                   series_number: int = 1) -> Path:
    """Write a SPECT volume as one NM Image Storage (RECON TOMO) multi-frame file."""
    if not np.all(np.isfinite(image.array)):
        raise UserError("image holds non-finite values")
    ds = _base(NuclearMedicineImageStorage, "NM", acq, generate_uid(), generate_uid(),
               generate_uid(), series_number)
    nz = image.array.shape[2]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
    ds.SliceVector = list(range(1, nz + 1))
    ds.NumberOfSlices = nz
    ds.NumberOfDetectors = ds.NumberOfRotations = ds.NumberOfEnergyWindows = 1
    _plane(ds, image)
    ds.SpacingBetweenSlices = _ds_str(image.voxel_mm[2])
    detector = Dataset()
    detector.ImagePositionPatient = [_ds_str(v) for v in image.origin_mm]
    detector.ImageOrientationPatient = ds.ImageOrientationPatient
    detector.CollimatorType = "PARA"
    ds.DetectorInformationSequence = DicomSequence([detector])
    del ds.ImageOrientationPatient  # the NM IOD has it in the detector's item only
    ds.RotationInformationSequence = DicomSequence([])  # type 2: the views are not described
    ds.CountsAccumulated = None  # type 2: a reconstructed volume, not counted frames
    window = Dataset()
    if acq.energy_window_kev is not None:
        rng = Dataset()
        rng.EnergyWindowLowerLimit = _ds_str(acq.energy_window_kev[0])
        rng.EnergyWindowUpperLimit = _ds_str(acq.energy_window_kev[1])
        window.EnergyWindowRangeSequence = DicomSequence([rng])
    window.EnergyWindowName = "PHOTOPEAK"
    ds.EnergyWindowInformationSequence = DicomSequence([window])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([_radiopharmaceutical(rp)])
    ds.CorrectedImage = list(acq.corrections)
    ds.ImageComments = f"pixel value x RescaleSlope: {image.units}"  # the NM IOD has no Units
    volume = np.maximum(image.array, 0.0).transpose(2, 1, 0)      # frames of [y, x]
    slope = float(volume.max()) / _UINT16_MAX if volume.max() > 0 else 1.0
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds_str(slope)
    ds.PixelData = np.rint(volume / slope).astype(np.uint16).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_dicom(paths: str | Path | Sequence[str | Path]) -> Image:
    """An Image from a DICOM PET series (a folder or files, one slice each) or an NM volume,
    values rescaled (RescaleSlope/Intercept); axial, axis-aligned series only."""
    if isinstance(paths, str | Path) and Path(paths).is_dir():
        files = sorted(Path(paths).glob("*.dcm"))
    elif isinstance(paths, str | Path):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    if not files:
        raise UserError(f"no DICOM files in {paths}")
    try:
        sets = [pydicom.dcmread(f) for f in files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise UserError(f"cannot read DICOM: {exc}") from None
    first = sets[0]
    placed = first.DetectorInformationSequence[0] if first.Modality == "NM" else first
    if [float(v) for v in placed.ImageOrientationPatient] != [1, 0, 0, 0, 1, 0]:
        raise UserError("only axial DICOM images (orientation 1\\0\\0\\0\\1\\0) can be read")
    dy, dx = (float(v) for v in first.PixelSpacing)
    if first.Modality == "NM":
        frames = first.pixel_array.astype(np.float64) * float(first.RescaleSlope) + float(
            first.get("RescaleIntercept", 0))
        origin = [float(v) for v in placed.ImagePositionPatient]
        return Image(frames.transpose(2, 1, 0).astype(np.float32),
                     (dx, dy, float(first.SpacingBetweenSlices)), tuple(origin), "counts")
    sets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z = np.array([float(d.ImagePositionPatient[2]) for d in sets])
    dz = float(np.mean(np.diff(z))) if len(z) > 1 else float(first.SliceThickness)
    slices = [d.pixel_array.astype(np.float64) * float(d.RescaleSlope)
              + float(d.get("RescaleIntercept", 0)) for d in sets]
    volume = np.stack(slices, axis=2).transpose(1, 0, 2).astype(np.float32)
    origin = (float(first.ImagePositionPatient[0]), float(first.ImagePositionPatient[1]), z[0])
    units = {"BQML": "Bq/mL", "CNTS": "counts"}.get(str(first.get("Units", "")), "")
    return Image(volume, (dx, dy, dz), origin, units)


def save_outputs(image: Image, stem: str | Path, display_fwhm_mm: float = DISPLAY_FWHM_MM
                 ) -> list[Path]:
    """The everyday outputs of an image: ``STEM.nii.gz`` (as reconstructed), ``STEM_mip.png``
    and one PNG per axial slice in ``STEM_slices/`` (smoothed for display by a Gaussian of
    ``display_fwhm_mm``, 0: not); returns [nifti, mip, slices folder]."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    nifti = write_nifti(image, stem.with_name(stem.name + ".nii.gz"))
    shown = for_display(image, display_fwhm_mm)
    mip = write_mip(shown, stem.with_name(stem.name + "_mip.png"))
    slices = stem.with_name(stem.name + "_slices")
    write_slices(shown, slices)
    return [nifti, mip, slices]


def save_mu_map(image: Image, mu_map: Image, folder: str | Path) -> list[Path]:
    """The mu-map a reconstruction took, beside its image: ``mu_map.nii.gz`` (1/mm) and
    ``mu_map.png`` (the body's edge and bone over the image's central slices,
    :func:`recon.outputs.png.mu_map_picture`)."""
    from recon.outputs.png import write_mu_map_picture

    folder = Path(folder)
    return [write_nifti(mu_map, folder / "mu_map.nii.gz"),
            write_mu_map_picture(image, mu_map, folder / "mu_map.png")]
