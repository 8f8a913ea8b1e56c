"""The hospital's DICOM network: the site's nodes (``dicom.toml``), C-ECHO and C-STORE to them, and
a persistent outbox that delivers a run's DICOM objects once a node answers."""
