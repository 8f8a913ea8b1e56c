"""Reconstruction: list-mode PET (TOF) and SPECT, corrections, image outputs, figures of merit.

Pure array code on ``hw`` dtypes, no I/O besides the outputs and the sensitivity cache. The rooms:

- shared here: image grids (:mod:`recon.grid`), quantification (:mod:`recon.quant`), frame
  schedules (:mod:`recon.frames`), kernel threads (:mod:`recon.threads`), the array cache;
- :mod:`recon.pet`: lines of response, the projector, the system model, list-mode OSEM, the live
  image, a run's image and its dynamic frames, the two-pass scatter correction;
- :mod:`recon.corrections`: randoms from the delayed window, single-scatter simulation;
- :mod:`recon.spect`: SPECT OSEM, its quantification, the LV axis, the AHA polar map;
- :mod:`recon.outputs`: NIfTI, DICOM, BIDS-PET, PNG;
- :mod:`recon.metrics`: NEMA NU 2 / NU 4 figures and the phantom report;
- :mod:`recon.calibration`: the cross-calibration (``python -m recon.calibration.crosscal
  SCANNER``) and the dead-time fit (``python -m recon.calibration.deadtime``);
- :mod:`recon.kinetics`, :mod:`recon.dosimetry`: analyses of images over time.
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
from recon.grid import Grid, Image, default_grid
from recon.outputs.export import (
    Acquisition,
    FrameTiming,
    Radiopharmaceutical,
    read_dicom,
    read_nifti,
    save_mu_map,
    save_outputs,
    write_dicom_nm,
    write_dicom_pet,
    write_dicom_pet_frames,
    write_nifti,
)
from recon.outputs.png import write_mip, write_slices
from recon.pet.live import LiveRecon
from recon.pet.lors import LORs
from recon.pet.osem import lm_mlem, lm_osem
from recon.pet.projector import Projector
from recon.pet.system import sensitivity
from recon.quant import activity_concentration
from recon.spect.osem import SpectProjector, spect_osem, tew_scatter
from recon.spect.polarmap import PolarMap, polar_map
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
    "save_mu_map",
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
