"""absl flag definitions shared by every jaxnets command-line entry point.

Each flag is defined exactly once, here; entry points import this package and
read the values through the returned ``FlagHolder`` objects, e.g.::

    from flags import common
    common.DATA_DIR.value

Keeping definitions in one module means ``--data_dir`` means the same thing for
the training sweeps, the benchmark and the smoke run.
"""
