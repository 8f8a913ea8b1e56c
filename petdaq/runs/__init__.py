"""Sub-commands over existing runs: import, replay, sort, recover, info, export, send."""
