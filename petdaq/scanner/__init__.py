"""Sub-commands about the scanner itself: scanners, calibrate, sensitivity."""
