"""Phantoms in and out of files: the TOML format, NIfTI volumes, CT numbers."""
