"""PET list-mode reconstruction: lines of response, the projector, the system model, OSEM, the live image, a
run's image and its dynamic frames.
"""
