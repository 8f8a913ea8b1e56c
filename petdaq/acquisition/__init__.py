"""Sub-commands that acquire: run, acquire, serve, keys, emulate, count-rate, bench, console."""
