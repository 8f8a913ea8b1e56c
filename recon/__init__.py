"""Reconstruction: list-mode PET (TOF) and SPECT, image export, figures of merit.

Pure array code on ``hw`` dtypes, no I/O besides the exports and the sensitivity cache:

- :class:`Grid`, :func:`default_grid`, :class:`Image` (``array`` [x, y, z], ``voxel_mm``,
  ``origin_mm``, ``affine``): :mod:`recon.grid`;
- :func:`lm_osem`, :func:`lm_mlem` (PET, TOF, randoms from delayeds, attenuation):
  :mod:`recon.osem`; :class:`LiveRecon` (real time): :mod:`recon.live`; the projector:
  :mod:`recon.projector`; sensitivity: :mod:`recon.system`;
- :func:`spect_osem`, :func:`tew_scatter`: :mod:`recon.spect`;
- :func:`activity_concentration` (Bq/mL): :mod:`recon.quant`, with the scanner's cross-calibration
  measured by :mod:`recon.calibrate` (``python -m recon.calibrate SCANNER``); NIfTI / DICOM:
  :mod:`recon.export`; PNG: :mod:`recon.png`; NEMA figures: :mod:`recon.figures`; the AHA polar
  map: :mod:`recon.polarmap`;
- :func:`set_threads`: :mod:`recon.threads`.
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
from recon.export import (
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
from recon.grid import Grid, Image, default_grid
from recon.live import LiveRecon
from recon.lors import LORs
from recon.osem import lm_mlem, lm_osem
from recon.png import write_mip, write_slices
from recon.polarmap import PolarMap, polar_map
from recon.projector import Projector
from recon.quant import activity_concentration
from recon.spect import SpectProjector, spect_osem, tew_scatter
from recon.system import sensitivity
from recon.threads import get_threads, set_threads

__all__ = [
    "Acquisition",
    "FrameTiming",
    "Grid",
    "Image",
    "LORs",
    "LiveRecon",
    "PolarMap",
    "Projector",
    "Radiopharmaceutical",
    "SpectProjector",
    "activity_concentration",
    "default_grid",
    "get_threads",
    "lm_mlem",
    "lm_osem",
    "polar_map",
    "read_dicom",
    "read_nifti",
    "save_outputs",
    "sensitivity",
    "set_threads",
    "spect_osem",
    "tew_scatter",
    "write_dicom_nm",
    "write_dicom_pet",
    "write_dicom_pet_frames",
    "write_mip",
    "write_nifti",
    "write_slices",
]
