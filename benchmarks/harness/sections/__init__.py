"""The sections of the report, in the order they run: one module each."""

SECTIONS = ("throughput", "scale", "contention")
