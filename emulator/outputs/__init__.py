"""Where the emulator's events go: the boards' frames and their packers (host or firmware), sinks, and the
truth file.
"""
