#!/usr/bin/env python3
"""Benchmark harness for taskfarmer.

Compares ``farmer`` with ``xargs -P`` (the floor), GNU parallel and PyTaskFarmer 0.1.0 on
trivial tasks, then measures how the farmer copes with a 1,000,000-line tasklist and with
several farmers sharing one workdir.  Standard library only; see benchmarks/README.md.

    python benchmarks/bench.py [--quick] [--json OUT] [--farmer-cmd CMD]

The harness itself is the package ``benchmarks/harness``, next to this script.
"""

from __future__ import annotations

import os
import sys

# On sys.path already when run as a script; not when run by runpy or `python -m benchmarks.bench`.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
