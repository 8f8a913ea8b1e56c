"""The live pipeline: links -> journal -> decoder -> time merge -> calibration -> sorter -> list-mode."""
