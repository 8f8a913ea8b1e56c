"""Kinetic analysis of dynamic images: regions, time-activity curves, Patlak, Logan, SUVR, SUV."""
