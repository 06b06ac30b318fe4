"""The worker side: train one run from its :class:`~train.executors.base.RunSpec`.

:func:`run_task` is what a worker process (``--workers=N``) or a Ray task
executes. It rebuilds the run from names with the runner's own code, trains it
in a temporary directory on the worker's node, and returns the directory's
files as bytes; nothing is written where the driver could see it. The data is
loaded on the worker (its ``--data_dir`` / ``JAXNETS_DATA_DIR`` copy or the
download cache) and kept for the worker's next run of the same sweep.
"""

import os
import pathlib
import signal
import socket
import tempfile
import threading
import time

from jaxnets import device_policy
from train.executors import base

# (dataset name, settings) -> the runner's Dataset; one entry, the current sweep's.
_DATA_CACHE: dict = {}


def init_worker(parent_pid: int) -> None:
  """Initializer of a ``--workers=N`` process: Ctrl-C is the driver's business, and a
  worker whose driver died (killed with SIGKILL) stops instead of training on."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)

  def watch_parent():
    while os.getppid() == parent_pid:
      time.sleep(1.0)
    os._exit(1)  # the driver is gone: nobody would receive this run

  threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()


def _prepare(backend: str) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Before Keras is first imported in this worker; a worker that already imported
  # it with another backend is caught by the run-key check below.
  os.environ.setdefault("KERAS_BACKEND", backend)
  # The driver's memory and precision policy (inherited through the environment by
  # local workers; a Ray worker gets its defaults), TensorFlow included once loaded.
  device_policy.apply()


def run_task(spec: base.RunSpec) -> base.RunOutput:
  """Trains, saves and port-checks one run on this node; returns its files.

  Raises:
    RuntimeError: the run key computed here differs from the driver's (other
      data or library versions on this node), or the run cannot be found.
  """
  _prepare(spec.backend)
  # pylint: disable=import-outside-toplevel
  # Imported here: importing this module (to submit it) must not load TensorFlow.
  import tensorflow as tf

  from train import runner
  from train import studies

  # As the driver does for local runs: the same numbers for the same seeds.
  tf.config.experimental.enable_op_determinism()
  settings = spec.settings
  family = studies.FAMILIES[spec.family]
  study = family.study(spec.study)
  cache_key = (family.dataset, settings)
  if cache_key not in _DATA_CACHE:
    _DATA_CACHE.clear()
    _DATA_CACHE[cache_key] = runner.load_dataset(family, settings)
  dataset = _DATA_CACHE[cache_key]

  with tempfile.TemporaryDirectory(prefix="jaxnets-run-") as tmp:
    jobs = runner.plan_jobs(family, study, settings, dataset, pathlib.Path(tmp))
    matches = [j for j in jobs if j.variant.name == spec.variant and j.seed == spec.seed]
    if len(matches) != 1:
      raise RuntimeError(f"{spec.label}: no such run in this worker's copy of train.studies")
    job = matches[0]
    if job.run_key != spec.run_key:
      raise RuntimeError(
        f"{spec.label}: this worker ({socket.gethostname()}) computes run key "
        f"{job.run_key}, the driver {spec.run_key}: its data ({dataset.description}) or "
        "library versions differ from the driver's; install the same versions and data "
        "on every node"
      )
    failure = None
    try:
      runner.train_and_check(job, dataset, settings)
    except runner.PortMismatchError as e:
      # Sent back with port_check_failed.json; the driver raises it with its own path.
      failure = str(e).replace(os.fspath(job.run_dir), "{run_dir}")
    files = {
      path.relative_to(job.run_dir).as_posix(): path.read_bytes()
      for path in sorted(job.run_dir.rglob("*"))
      if path.is_file()
    }
  return base.RunOutput(spec.run_key, files, failure, socket.gethostname(), os.getpid())
