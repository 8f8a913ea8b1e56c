"""Images out of the reconstruction: NIfTI and DICOM, BIDS-PET for dynamic images, PNG pictures."""
