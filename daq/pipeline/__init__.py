"""The live pipeline: links -> journal -> decoder -> energy gate -> time merge -> sorter -> list-mode."""
