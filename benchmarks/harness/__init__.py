"""The benchmark harness behind ``benchmarks/bench.py`` (standard library only, Python 3.9+).

- :mod:`.cli`: the options and the run (``main``);
- :mod:`.tools`: the tools compared (farmer, xargs, GNU parallel, PyTaskFarmer) and how each
  is found; :mod:`.ptf` installs PyTaskFarmer into its own virtualenv;
- :mod:`.procs`: starting, waiting for and killing process trees, and watching them
  (:class:`~.procs.LineCounter`, :class:`~.procs.TreeSampler`);
- :mod:`.files`: tasklists and the line counts of the records the tools leave;
- :mod:`.context`: one run of the harness (its directory, numbered run directories, results);
- :mod:`.sections`: one module per section of the report (throughput, scale, contention);
- :mod:`.report`: the markdown output (tables, number formats, the machine description).
"""
