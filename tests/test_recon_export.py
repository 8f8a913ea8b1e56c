"""Exports: NIfTI and DICOM read back to the same array and geometry; PNG; quantification."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicomcheck import dciodvfy_errors, needs_dciodvfy

from infra.errors import UserError
from recon.grid import Grid
from recon.outputs.export import (
    Acquisition,
    FrameTiming,
    Radiopharmaceutical,
    read_dicom,
    read_nifti,
    save_outputs,
    write_dicom_nm,
    write_dicom_pet,
    write_dicom_pet_frames,
    write_nifti,
)
from recon.outputs.png import write_png
from recon.quant import activity_concentration, decay_factor

START = dt.datetime(2026, 3, 4, 10, 30, 0)
FDG = Radiopharmaceutical("F-18", 6586.2, 0.967, 2.0e8, START - dt.timedelta(minutes=45), "FDG")
ACQ = Acquisition(START, 600.0, scanner="bedside-brain", reconstruction="LM-OSEM 2i10s TOF",
                  corrections=("RAN",))


@pytest.fixture
def image():
    grid = Grid((24, 20, 12), (2.0, 2.5, 3.0), (-23.0, -24.0, -16.5))
    x, y, z = grid.centres_mm()
    a = 5000.0 * np.exp(-((x - 4) ** 2 + (y + 6) ** 2 + (z - 3) ** 2) / 200.0) + 100.0
    return grid.image(a.astype(np.float32), "Bq/mL")


def _same_geometry(a, b):
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    assert a.array.shape == b.array.shape


def test_nifti_and_dicom_read_back_to_the_same_image(image, tmp_path):
    write_nifti(image, tmp_path / "img.nii.gz")
    write_dicom_pet(image, tmp_path / "dicom", FDG, ACQ)
    nii = read_nifti(tmp_path / "img.nii.gz")
    dcm = read_dicom(tmp_path / "dicom")
    for back in (nii, dcm):
        _same_geometry(back, image)
        assert back.units == "Bq/mL"
    np.testing.assert_array_equal(nii.array, image.array)
    # int16 with a per-slice slope: half a quantum of the slice maximum
    step = image.array.max(axis=(0, 1)) / 32767
    assert np.all(np.abs(dcm.array - image.array) <= 0.5 * step[None, None, :] + 1e-3)
    # and the two files agree with each other
    np.testing.assert_allclose(dcm.array, nii.array, atol=float(step.max()))


def test_nifti_affine_is_ras(image, tmp_path):
    nii = nib.load(write_nifti(image, tmp_path / "img.nii"))
    centre = nii.affine @ np.array([0, 0, 0, 1.0])
    # voxel 0 is at LPS (-23, -24, -16.5): in RAS (+23, +24, -16.5)
    np.testing.assert_allclose(centre[:3], [23.0, 24.0, -16.5])
    assert nib.aff2axcodes(nii.affine) == ("L", "P", "S")
    assert nii.header.get_sform(coded=True)[1] == 1


def test_pet_series_is_a_proper_series(image, tmp_path):
    paths = write_dicom_pet(image, tmp_path / "dicom", FDG, ACQ)
    sets = [pydicom.dcmread(p) for p in paths]
    assert len(sets) == image.array.shape[2]
    first = sets[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128" and first.Modality == "PT"
    assert len({d.StudyInstanceUID for d in sets}) == len({d.SeriesInstanceUID for d in sets}) == 1
    assert len({d.SOPInstanceUID for d in sets}) == len(sets)
    assert [int(d.InstanceNumber) for d in sets] == list(range(1, len(sets) + 1))
    assert first.Units == "BQML" and first.DecayCorrection == "START"
    assert float(first.DecayFactor) == pytest.approx(decay_factor(600.0, 6586.2), rel=1e-6)
    assert "DECY" in first.CorrectedImage and first.RandomsCorrectionMethod == "DLYD"
    rp = first.RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideHalfLife) == 6586.2
    assert float(rp.RadionuclideTotalDose) == 2.0e8
    assert rp.RadiopharmaceuticalStartTime.startswith("094500")
    assert rp.RadionuclideCodeSequence[0].CodeValue == "77004003"
    assert [float(v) for v in first.PixelSpacing] == [2.5, 2.0]
    assert float(first.SliceThickness) == 3.0
    z = [float(d.ImagePositionPatient[2]) for d in sets]
    np.testing.assert_allclose(np.diff(z), 3.0)
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_nm_volume_reads_back(image, tmp_path):
    counts = image.scaled(1.0, "counts")
    path = write_dicom_nm(counts, tmp_path / "spect.dcm", FDG, ACQ)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.20" and ds.Modality == "NM"
    assert int(ds.NumberOfFrames) == image.array.shape[2]
    back = read_dicom(path)
    _same_geometry(back, image)
    assert np.abs(back.array - image.array).max() <= 0.5 * image.array.max() / 65535 + 1e-3


@needs_dciodvfy
def test_every_dicom_object_passes_dciodvfy(image, tmp_path):
    """A static and a dynamic PET series and an NM volume: no error from dicom3tools'
    validator (its warnings are about attributes beyond the IOD, such as the NM volume's
    RescaleSlope)."""
    tc99m = Radiopharmaceutical("Tc-99m", 21624.0, 1.0, 4.0e8, START, "")
    spect = Acquisition(START, 600.0, scanner="spect-dual-head", energy_window_kev=(126.0, 154.0))
    files = [write_dicom_pet(image, tmp_path / "pet", FDG, ACQ)[0],
             *write_dicom_pet_frames([image, image], [FrameTiming(0.0, 60.0, 1, 2),
                                                      FrameTiming(60.0, 60.0, 2, 2)],
                                     tmp_path / "dynamic", FDG, ACQ)[::image.array.shape[2]],
             write_dicom_nm(image.scaled(1.0, "counts"), tmp_path / "nm.dcm", tc99m, spect)]
    for path in files:
        assert dciodvfy_errors(path) == [], path.name
    ds = pydicom.dcmread(files[0])
    assert ds.PatientGantryRelationshipCodeSequence[0].CodeMeaning == "headfirst"
    assert "PatientPosition" not in ds  # the code sequences say it


def test_pet_dicom_needs_bq_per_ml(image, tmp_path):
    with pytest.raises(UserError, match="Bq/mL"):
        write_dicom_pet(image.scaled(1.0, "counts"), tmp_path, FDG, ACQ)


def test_png_files_decode(image, tmp_path):
    from PySide6.QtGui import QImage

    grey = write_png(tmp_path / "g.png", np.arange(12, dtype=np.uint8).reshape(3, 4))
    red = np.zeros((5, 2, 3), np.uint8)
    red[..., 0] = 255
    rgb = write_png(tmp_path / "c.png", red)
    qg, qc = QImage(str(grey)), QImage(str(rgb))
    assert (qg.width(), qg.height()) == (4, 3) and qg.pixelColor(3, 2).red() == 11
    assert (qc.width(), qc.height()) == (2, 5) and qc.pixelColor(1, 4).red() == 255
    files = save_outputs(image, tmp_path / "out" / "image")
    assert files[0].name == "image.nii.gz" and files[1].name == "image_mip.png"
    assert len(list(files[2].glob("*.png"))) == image.array.shape[2]
    mip = QImage(str(files[1]))
    nx, nz = image.array.shape[0], image.array.shape[2]
    k = -(-256 // max(nx, nz))  # magnified by whole pixels to 256 across
    assert (mip.width(), mip.height()) == (k * nx, k * nz) and max(k * nx, k * nz) >= 256
    # the white level ignores the hottest 0.5 %: a single hot voxel does not blacken the rest
    hot = image.array.copy()
    hot[0, 0, 0] = 1e3 * hot.max()
    from recon.outputs.png import mip_picture

    picture = mip_picture(type(image)(hot, image.voxel_mm, image.origin_mm, image.units))
    assert np.count_nonzero(picture == 255) > 1 and np.median(picture[picture > 0]) > 20


def test_activity_concentration():
    grid = Grid((2, 2, 2), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0))         # 10 uL voxels
    counts = grid.image(np.full(grid.shape, 1000.0, np.float32), "counts")
    bq = activity_concentration(counts, 100.0)
    np.testing.assert_allclose(bq.array, 1000.0 / 100.0 / 0.01)
    assert bq.units == "Bq/mL"
    decayed = activity_concentration(counts, 100.0, branching=0.5, half_life_s=100.0)
    lam = math.log(2) / 100.0
    start = 1000.0 / 0.5 / 0.01 * lam / (1 - math.exp(-lam * 100.0))
    np.testing.assert_allclose(decayed.array, start, rtol=1e-5)
    with pytest.raises(UserError):
        activity_concentration(bq, 100.0)


def test_pictures_are_smoothed_for_display_and_the_stored_image_is_not(image, tmp_path):
    from gui.views import gaussian_filter  # the console's display filter: the same Gaussian
    from recon.outputs.png import DISPLAY_FWHM_MM, smoothed

    rng = np.random.default_rng(4)
    noisy = rng.poisson(5.0, (24, 20, 12)).astype(np.float32)
    voxel = (2.0, 2.5, 3.0)
    ours = smoothed(noisy, 6.0, voxel)
    assert np.allclose(ours, gaussian_filter(noisy, 6.0, voxel), rtol=1e-5, atol=1e-5)
    assert ours.std() < 0.5 * noisy.std() and abs(ours[8:-8, 8:-8, 4:-4].mean() - 5.0) < 0.3
    assert np.array_equal(smoothed(noisy, 0.1, voxel), noisy)  # under a voxel: left alone
    files = save_outputs(image, tmp_path / "image")
    assert np.array_equal(read_nifti(files[0]).array, image.array)  # stored as reconstructed
    plain = save_outputs(image, tmp_path / "plain", display_fwhm_mm=0)
    assert files[1].read_bytes() != plain[1].read_bytes() and DISPLAY_FWHM_MM > 0


def test_an_image_is_written_whole_or_not_at_all(image, tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) leaves no partial file under the final name:
    a first write leaves nothing, a rewrite leaves the previous image as it was."""
    import errno

    def half_then_full(img, path):
        Path(path).write_bytes(b"\x1f\x8b half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "image.nii.gz"
    with monkeypatch.context() as m:
        m.setattr(nib, "save", half_then_full)
        with pytest.raises(OSError, match="No space"):
            write_nifti(image, path)
    assert list(tmp_path.iterdir()) == []
    write_nifti(image, path)
    before = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(nib, "save", half_then_full)
        with pytest.raises(OSError):
            write_nifti(image, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    np.testing.assert_allclose(nib.load(path).get_fdata(), image.array, rtol=1e-6)
