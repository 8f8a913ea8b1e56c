"""Figures of merit of images: NEMA NU 2 and NU 4 measures, and the report of a phantom's image."""
