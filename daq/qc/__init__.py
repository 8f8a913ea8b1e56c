"""Daily quality control from the crystals' own Lu-176: a blank run's figures per crystal, module
and board (:mod:`daq.qc.figures`), the scanner's baseline and history (:mod:`daq.qc.store`),
the checks against it (:mod:`daq.qc.checks`) and the report (:mod:`daq.qc.report`)."""
