"""The emulated detector: the ring's crystals as photons see them, their own Lu-176, the front-end
electronics and digitizers.
"""
