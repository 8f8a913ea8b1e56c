"""The technologist's console: a pyqtgraph window on the DAQ's monitor and control sockets.

It talks to a running acquisition only through ZeroMQ (``daq.messages`` schema), so it can run
on another machine and its crashes never touch an acquisition. Qt is imported only by the
window modules; ``petdaq.acquisition.console.add_commands`` registers ``petdaq console`` without importing it.
"""
