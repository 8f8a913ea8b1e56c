"""SPECT: OSEM with a collimator model, quantification, the left ventricle's axis, the 17-segment polar map
and cardiac figures.
"""
