"""The executor the command line asks for (``--executor``, ``--workers``, ``--ray_*``)."""

from train.executors import base
from train.executors import local
from train.executors import ray_cluster

EXECUTORS = ("local", "ray")


def make(
  kind: str = "local",
  *,
  workers: int = 1,
  ray_address: str | None = None,
  cpus_per_run: float = 1.0,
  gpus_per_run: float = 0.0,
) -> base.Executor | None:
  """The executor for these flag values, checked (fast); None means in this process.

  ``local`` with one worker is the embedded path: runs train in the driver,
  one after another, exactly as before executors existed.

  Raises:
    ExecutorError: an unknown kind, a bad worker count, Ray missing or its
      cluster unreachable.
  """
  if kind == "local":
    if int(workers) < 1:
      raise base.ExecutorError(f"--workers must be a positive integer, got {workers}")
    return None if int(workers) == 1 else local.LocalPool(int(workers))
  if kind == "ray":
    executor = ray_cluster.RayExecutor(ray_address, cpus_per_run, gpus_per_run)
    executor.check()
    return executor
  raise base.ExecutorError(f"unknown executor {kind!r}; one of {', '.join(EXECUTORS)}")
