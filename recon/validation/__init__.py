"""Validation on populations of virtual patients: every method measured across many phantoms, not one."""
