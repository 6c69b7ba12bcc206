"""``python -m taskfarmer`` is ``farmer``."""

from .cli import main

main()
