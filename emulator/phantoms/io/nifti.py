"""Voxel volumes in NIfTI files, in the product's convention: the file's affine is RAS of the scanner frame.

A volume's affine maps voxel indices to scanner mm (LPS); its NIfTI holds ``LPS_TO_RAS @ affine``,
as every image the product writes (:mod:`recon.outputs.export`), so an image written by ``petdaq
recon`` reads back where it was. Any affine (rotated, flipped) is taken as it is.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from emulator.phantoms.volume import LPS_TO_RAS
from infra.atomic import replacing
from infra.errors import UserError


def read_volume(path: Path, what: str, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """(values [i, j, k] float64, affine voxel -> scanner mm) of the NIfTI ``path``, the
    ``what`` of the phantom file ``origin``; one line naming both when it cannot be read."""
    if not path.is_file():
        raise UserError(f"phantom file {origin}: its {what} {path} does not exist")
    try:
        img = nib.load(str(path))
        values = np.asarray(img.dataobj, dtype=np.float64)
        affine = np.asarray(img.affine, np.float64)
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"phantom file {origin}: cannot read its {what} {path}: {reason}"
                        ) from None
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if values.ndim != 3:
        raise UserError(f"phantom file {origin}: its {what} {path} is {values.ndim}-D "
                        f"{values.shape}, not a 3-D volume")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise UserError(f"phantom file {origin}: its {what} {path} has no usable affine")
    return values, LPS_TO_RAS @ affine


def write_volume(path: Path, values: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``values`` (float32, or int16 labels) with the scanner-frame ``affine``."""
    img = nib.Nifti1Image(values, LPS_TO_RAS @ np.asarray(affine, np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    img.header["xyzt_units"] = 2  # mm
    with replacing(path) as tmp:
        nib.save(img, str(tmp))
    return path
