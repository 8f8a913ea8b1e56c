"""Calibrations of a scanner model measured on emulated scans: the cross-calibration (counts per
annihilation) and the singles dead time.
"""
