"""Physics of the emulator's kernels: decays and where they happen, photon transport and interactions in the
phantom, its media.
"""
