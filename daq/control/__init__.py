"""Run control and the DAQ service: starting and finishing runs, the live image and frames, monitor."""
