"""Corrections of PET data estimated apart from the reconstruction: randoms from the delayed window, single-
scatter simulation.
"""
