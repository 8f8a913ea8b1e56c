"""Theranostic dosimetry: regional activity at several SPECT time points of one patient, its
exponential fit, the time-integrated activity and the absorbed dose (MIRD, sphere S values)."""
