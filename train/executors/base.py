"""What the runner and the executors exchange, and the executor interface.

The driver (the process running ``python -m train``) turns each missing run
into a :class:`RunSpec` and submits it; an executor runs it somewhere and
returns a :class:`RunOutput` holding the run directory's files as bytes, which
:func:`write_run` puts into the driver's work directory, ``result.json`` last,
as :func:`train.runner.train_and_check` does in-process. A run is therefore
counted once however often its task ran: only the output the driver receives
is written, and it is written once.

Nothing here imports TensorFlow, Keras or the runner.
"""

import abc
import dataclasses
import os
import pathlib
import shutil
from typing import Any, Callable


class ExecutorError(RuntimeError):
  """The executor cannot be used as asked (missing package, unreachable cluster, ...)."""


class RunFailed(RuntimeError):
  """A run's task raised, or its worker kept dying past the retries."""

  def __init__(self, spec: "RunSpec", message: str):
    super().__init__(f"{spec.label}: {message}")
    self.spec = spec


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run, by name: what a worker needs to rebuild it and nothing node-specific.

  Attributes:
    family, study, variant: names in :mod:`train.studies`.
    seed: the run's seed.
    run_key: the driver's key for the run; the worker recomputes it from its own
      data and library versions and refuses to train when it differs.
    settings: the runner's ``Settings`` (a frozen dataclass; ``data_dir`` is
      taken as a path on the worker's node, None meaning its own
      ``JAXNETS_DATA_DIR`` or download cache).
    backend: the driver's Keras backend (part of the run key).
    label: ``family/study/variant seed k``, for messages.
  """

  family: str
  study: str
  variant: str
  seed: int
  run_key: str
  settings: Any
  backend: str
  label: str


@dataclasses.dataclass(frozen=True)
class RunOutput:
  """A finished run as it travels back to the driver.

  Attributes:
    run_key: the spec's key.
    files: run-directory-relative POSIX path -> contents, every file the run
      wrote (``model.keras``, ``history.json``, ``result.json``, ``tb/...``).
    failure: None, or the port check's complaint (the files then hold
      ``port_check_failed.json`` instead of ``result.json``).
    host, pid: where it ran (for messages).
  """

  run_key: str
  files: dict
  failure: str | None
  host: str
  pid: int


def write_run(run_dir: pathlib.Path, output: RunOutput, result_file: str) -> None:
  """Writes a run received from a worker into ``run_dir``, ``result_file`` last.

  Leftovers of a run killed in an earlier session are wiped, as
  ``train_and_check`` does; a finished run is never overwritten.
  """
  if run_dir.exists():
    if (run_dir / result_file).exists():
      raise RuntimeError(f"{run_dir} holds a finished run; it is never overwritten")
    shutil.rmtree(run_dir)
  run_dir.mkdir(parents=True)
  names = sorted(output.files, key=lambda name: (name == result_file, name))
  for name in names:
    path = run_dir / pathlib.PurePosixPath(name)
    if run_dir.resolve() not in path.resolve().parents:
      raise RuntimeError(f"a worker sent a file outside its run directory: {name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a reader never sees half a result.json.
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(output.files[name])
    os.replace(tmp, path)


class Executor(abc.ABC):
  """Runs :class:`RunSpec` s somewhere and hands back their outputs as they finish.

  Use: ``check()`` (cheap, before any work), then ``start(log)``, ``submit``
  every run, ``wait()`` until all are back, and ``close()``; ``cancel()`` drops
  whatever has not finished (Ctrl-C, or a failed run), keeping nothing of it.
  """

  #: How many runs it trains at once (for the ETA).
  slots: int = 1

  def check(self) -> None:
    """Raises :class:`ExecutorError` when the executor cannot work (fast, no side effects)."""

  @abc.abstractmethod
  def start(self, log: Callable[[str], None]) -> None:
    """Starts workers or connects; logs the resources it has."""

  @abc.abstractmethod
  def submit(self, spec: RunSpec) -> None:
    """Queues one run."""

  @abc.abstractmethod
  def wait(self) -> list[RunOutput]:
    """Blocks until at least one queued run finished; returns the finished ones.

    Raises :class:`RunFailed` for a run whose task raised (the others stay queued).
    """

  @abc.abstractmethod
  def cancel(self) -> None:
    """Drops every queued or running run (their workers are stopped)."""

  @abc.abstractmethod
  def close(self) -> None:
    """Releases workers / disconnects. Safe to call twice."""

  @property
  @abc.abstractmethod
  def pending(self) -> int:
    """Runs submitted and not yet returned by :meth:`wait`."""
