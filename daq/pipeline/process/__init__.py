"""From decoded singles to coincidences: energy gate, time merge, calibration, projections."""
