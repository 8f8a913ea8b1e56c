"""Sub-commands that make and analyse images: recon, kinetics, dosimetry."""
