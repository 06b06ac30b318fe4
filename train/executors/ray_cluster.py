"""``--executor=ray``: every run is a Ray task, on a local Ray instance or a cluster.

Without ``--ray_address`` a local instance is started (all CPUs and GPUs of this
machine) and shut down at the end; with it, the driver connects to a running
cluster (``ray start --head`` / ``ray start --address=...``, see BUILD.md) and
only disconnects. Each task asks for ``--cpus_per_run`` CPUs and
``--gpus_per_run`` GPUs, so Ray runs as many runs at once as the nodes hold;
with one GPU per run, a GPU node trains one run per GPU (Ray sets
``CUDA_VISIBLE_DEVICES`` for the task).

A task whose worker process dies is retried by Ray (``max_retries``); an
exception raised by the run itself is not retried, it stops the sweep.
"""

import importlib.util
import math
import socket
from typing import Callable

from absl import logging

from train.executors import base
from train.executors import task

MAX_RETRIES = 3
POLL_S = 1.0  # ray.wait wakes this often, so that Ctrl-C is seen at once
CONNECT_TIMEOUT_S = 3.0
CANCEL_ROUNDS = 3  # ray.cancel tries per run at Ctrl-C
CANCEL_WAIT_S = 10.0  # how long each try waits for the cancelled runs to stop
TASK_NAME = "jaxnets_run"  # workers show up as "ray::jaxnets_run" while training
INSTALL = 'pip install -e ".[ray]"  (or: pip install "ray>=2.50,<3")'


def ray_installed() -> bool:
  return importlib.util.find_spec("ray") is not None


def _host_port(address: str) -> tuple[str, int] | None:
  """``host:port`` of an address (``ray://`` client addresses too); None for e.g. ``auto``."""
  text = address.split("://", 1)[-1].rstrip("/")
  host, sep, port = text.rpartition(":")
  if not sep or not port.isdigit():
    return None
  return host.strip("[]") or "127.0.0.1", int(port)


class RayExecutor(base.Executor):
  """Runs each :class:`~train.executors.base.RunSpec` as a Ray task."""

  def __init__(
    self,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    max_retries: int = MAX_RETRIES,
  ):
    self.address = address or None
    self.cpus_per_run, self.gpus_per_run = float(cpus_per_run), float(gpus_per_run)
    self.max_retries = int(max_retries)
    self._refs: dict = {}  # ObjectRef -> RunSpec
    self._owned = False  # this driver started the Ray instance (and shuts it down)
    self._remote = None
    self._failure: base.RunFailed | None = None

  def check(self) -> None:
    """Ray importable and the cluster's port answering; a few seconds at most."""
    if not ray_installed():
      raise base.ExecutorError(f"--executor=ray needs Ray, which is not installed: {INSTALL}")
    if (
      self.cpus_per_run < 0 or self.gpus_per_run < 0 or not (self.cpus_per_run or self.gpus_per_run)
    ):
      raise base.ExecutorError(
        f"a run must ask for some CPUs or GPUs (cpus_per_run={self.cpus_per_run:g}, "
        f"gpus_per_run={self.gpus_per_run:g})"
      )
    target = _host_port(self.address) if self.address else None
    if target is not None:
      try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
      except OSError as e:
        raise base.ExecutorError(
          f"cannot reach the Ray cluster at --ray_address={self.address} ({e}); start its "
          "head node with `ray start --head --port=6379` and pass that node's "
          "address as host:6379, or leave --ray_address out for a local Ray instance"
        ) from None

  def start(self, log: Callable[[str], None]) -> None:
    import logging  # pylint: disable=import-outside-toplevel

    import ray  # pylint: disable=import-outside-toplevel

    if not ray.is_initialized():
      try:
        ray.init(
          address=self.address,
          include_dashboard=False,
          log_to_driver=False,  # worker output stays in Ray's logs: progress stays readable
          logging_level=logging.WARNING,
        )
      except (ConnectionError, RuntimeError, ValueError) as e:
        where = self.address or "a local instance"
        raise base.ExecutorError(f"cannot start Ray on {where}: {e}") from None
      self._owned = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    slots, fits = 0, []
    for node in nodes:
      cpus, gpus = node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0)
      fit = math.inf
      if self.cpus_per_run:
        fit = min(fit, math.floor(cpus / self.cpus_per_run))
      if self.gpus_per_run:
        fit = min(fit, math.floor(gpus / self.gpus_per_run))
      fits.append(f"{cpus:g} CPU/{gpus:g} GPU")
      slots += int(fit)
    total = ray.cluster_resources()
    log(
      f"executor: ray {ray.__version__}, "
      f"{'cluster at ' + self.address if self.address else 'a local Ray instance'}: "
      f"{len(nodes)} node(s) ({', '.join(fits)}), {total.get('CPU', 0):g} CPUs, "
      f"{total.get('GPU', 0):g} GPUs in all; {self.cpus_per_run:g} CPU + "
      f"{self.gpus_per_run:g} GPU per run -> up to {slots} runs at once"
    )
    if slots < 1:
      # Ray would keep such tasks pending for ever.
      self.close()
      raise base.ExecutorError(
        f"no node of the cluster has {self.cpus_per_run:g} CPU(s) and {self.gpus_per_run:g} "
        f"GPU(s) for one run (nodes: {', '.join(fits) or 'none'}); lower --cpus_per_run / "
        "--gpus_per_run or add nodes"
      )
    self.slots = slots
    self._remote = ray.remote(
      num_cpus=self.cpus_per_run,
      num_gpus=self.gpus_per_run,
      max_retries=self.max_retries,
      retry_exceptions=False,  # a run that raises would raise again
    )(task.run_task).options(name=TASK_NAME)

  def submit(self, spec: base.RunSpec) -> None:
    self._refs[self._remote.remote(spec)] = spec

  @property
  def pending(self) -> int:
    return len(self._refs)

  def wait(self) -> list[base.RunOutput]:
    import ray  # pylint: disable=import-outside-toplevel

    if self._failure is not None:
      raise self._failure
    if not self._refs:
      return []
    ready = []
    while not ready:
      ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=POLL_S)
    # Whatever else finished meanwhile comes back in the same call.
    ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
    outputs = []
    for ref in ready:
      spec = self._refs.pop(ref)
      try:
        outputs.append(ray.get(ref))
      except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(e.cause, BaseException) else e
        self._failure = self._failure or base.RunFailed(spec, f"{type(cause).__name__}: {cause}")
      except ray.exceptions.RayError as e:
        # WorkerCrashedError, OutOfMemoryError, NodeDiedError ... after Ray's retries.
        self._failure = self._failure or base.RunFailed(
          spec, f"{type(e).__name__} after {self.max_retries} retries: {e}"
        )
    if self._failure is not None and not outputs:
      raise self._failure
    return outputs

  def cancel(self) -> None:
    """Cancels every run and waits until Ray reports each one stopped.

    One ``ray.cancel`` can miss a task caught between being scheduled and
    starting (seen on a loaded 2-core machine: a worker still trained 30 s
    after Ctrl-C), so cancelling repeats for the runs not yet stopped.
    """
    import ray  # pylint: disable=import-outside-toplevel

    refs = list(self._refs)
    self._refs.clear()
    for _ in range(CANCEL_ROUNDS):
      for ref in refs:
        try:
          ray.cancel(ref, force=True)  # force: stop a running task's worker too
        except Exception:  # pylint: disable=broad-except
          pass  # finished meanwhile, or the cluster is gone: nothing left to stop
      try:
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
      except Exception:  # pylint: disable=broad-except
        return  # the cluster is gone, and its workers with it
      if not refs:
        return
    logging.warning(
      "%d cancelled Ray run(s) had not stopped after %d tries; their workers may still "
      "be running (Ray dashboard: task %s)",
      len(refs),
      CANCEL_ROUNDS,
      TASK_NAME,
    )

  def close(self) -> None:
    if self._owned:
      import ray  # pylint: disable=import-outside-toplevel

      ray.shutdown()
      self._owned = False
