"""taskfarmer: run thousands of independent shell commands over one or many nodes."""

__version__ = "0.1.0"
