"""The run store: what a run directory is, readable without the DAQ.

The run directory and its typed start and stop documents (:mod:`runstore.rundir`,
:mod:`runstore.rundocs`), what a reconstruction needs to know of a run
(:mod:`runstore.facts`), the list-mode file (:mod:`runstore.listmode`), a SPECT run's
projections (:mod:`runstore.projections`), the singles rates (:mod:`runstore.singlesrates`) and
the PETSIRD export (:mod:`runstore.petsird`).
"""

import hw  # noqa: F401  (first: it configures numba's disk cache)
