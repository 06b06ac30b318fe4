"""Where the runs of a sweep train: in this process, in worker processes, or on a Ray cluster.

A sweep is a set of independent (variant, seed) runs. The study runner
(:mod:`train.runner`) decides which runs are missing, and hands each one to an
executor as a :class:`~train.executors.base.RunSpec` (names and settings, no
objects, no paths). A worker rebuilds the run from the names, loads the data on
its own node, trains, ports and checks, and sends back every file of the run
directory as bytes (:class:`~train.executors.base.RunOutput`); the driver alone
writes the work directory, so workers need no shared file system.

Modules:
  - ``base``: the spec/output records, the executor interface, writing a run.
  - ``task``: what a worker runs (imports the runner; the runner never imports it).
  - ``local``: ``--workers=N`` worker processes on this machine.
  - ``ray_cluster``: ``--executor=ray``, one Ray task per run.
  - ``choose``: builds the executor the command-line flags ask for.

This ``__init__`` imports nothing, so that the runner can import ``base``
without pulling in the worker side (which imports the runner).
"""
