"""``--workers=N``: N runs at once in worker processes on this machine.

Each worker is a fresh interpreter (``spawn``: TensorFlow does not survive a
``fork``), so it pays the TensorFlow/Keras import once, then trains run after
run. A worker that dies (killed, out of memory) breaks the pool: the runs it and
its siblings held are retried in a new pool, up to ``max_retries`` times each;
the driver writes each run once, whatever ran twice.
"""

import concurrent.futures as cf
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from train.executors import base
from train.executors import task

MAX_RETRIES = 3  # as the Ray executor's default
POLL_S = 1.0  # wait() wakes this often, so that Ctrl-C is seen at once


class LocalPool(base.Executor):
  """Runs each :class:`~train.executors.base.RunSpec` in one of ``workers`` processes."""

  def __init__(self, workers: int, max_retries: int = MAX_RETRIES):
    if int(workers) < 1:
      raise base.ExecutorError(f"workers must be a positive integer, got {workers}")
    self.slots = int(workers)
    self.max_retries = int(max_retries)
    self._pool = None
    self._futures: dict[cf.Future, base.RunSpec] = {}
    self._attempts: dict[str, int] = {}
    self._failure: base.RunFailed | None = None
    self._log: Callable[[str], None] = lambda line: None

  def start(self, log: Callable[[str], None]) -> None:
    self._log = log
    self._new_pool()
    log(
      f"executor: local, {self.slots} worker processes on this machine "
      f"({os.cpu_count()} CPUs); each loads the data and TensorFlow once"
    )

  def _new_pool(self) -> None:
    self._pool = cf.ProcessPoolExecutor(
      max_workers=self.slots,
      mp_context=multiprocessing.get_context("spawn"),
      initializer=task.init_worker,
      initargs=(os.getpid(),),
    )

  def submit(self, spec: base.RunSpec) -> None:
    self._attempts.setdefault(spec.run_key, 0)
    self._futures[self._pool.submit(task.run_task, spec)] = spec

  @property
  def pending(self) -> int:
    return len(self._futures)

  def wait(self) -> list[base.RunOutput]:
    if self._failure is not None:
      raise self._failure
    if not self._futures:
      return []
    done = set()
    while not done:
      done, _ = cf.wait(list(self._futures), timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
    outputs, broken = [], []
    for future in done:
      spec = self._futures.pop(future)
      try:
        outputs.append(future.result())
      except BrokenProcessPool:
        broken.append(spec)
      except Exception as e:  # pylint: disable=broad-except
        if self._failure is None:
          self._failure = base.RunFailed(spec, f"{type(e).__name__}: {e}")
    if broken:
      self._retry(broken)
    if self._failure is not None and not outputs:
      raise self._failure
    return outputs

  def _retry(self, broken: list[base.RunSpec]) -> None:
    # A dying worker breaks the whole pool: every run it held fails with
    # BrokenProcessPool, now or as wait() reaches it. Those are resubmitted to a
    # new pool; a run that finished (or raised) before the break is kept.
    old, self._futures, again = self._futures, {}, list(broken)
    for future, spec in old.items():
      if future.done() and not future.cancelled():
        if not isinstance(future.exception(), BrokenProcessPool):
          self._futures[future] = spec
          continue
      again.append(spec)
    self._pool.shutdown(wait=False, cancel_futures=True)
    self._new_pool()
    self._log(f"a worker process died; {len(again)} unfinished run(s) go to new workers")
    for spec in again:
      self._attempts[spec.run_key] += 1
      if self._attempts[spec.run_key] > self.max_retries:
        if self._failure is None:
          self._failure = base.RunFailed(
            spec, f"its worker process died {self._attempts[spec.run_key]} times"
          )
        continue
      self.submit(spec)

  def cancel(self) -> None:
    for future in self._futures:
      future.cancel()
    self._futures.clear()
    if self._pool is not None:
      terminate = getattr(self._pool, "terminate_workers", None)  # Python >= 3.14
      if terminate is not None:
        terminate()
      else:
        # No public way before 3.14 to stop a running task: end its process.
        for process in list((self._pool._processes or {}).values()):  # pylint: disable=protected-access
          process.terminate()
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None
