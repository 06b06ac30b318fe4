"""The ways to run a model that the benchmark compares (``--systems``).

Each system is fed the same rows. ``keras_jax`` lives in a worker process
(``bench/worker.py``; the Keras backend is chosen per process) that the parent
drives one call at a time, so it is interleaved with the rest. Frameworks are
imported when a system is set up, not here: a worker loads only its own.
"""

import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from typing import Any, Callable

import numpy as np

from bench import frameworks

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Packages a system needs beyond the project's own dependencies (the `bench`
# extra). Missing ones make the system "skipped (not installed)".
REQUIRED_PACKAGES: dict[str, tuple[str, ...]] = {
  "onnxruntime": ("onnxruntime", "tf2onnx", "onnx"),
  "tf2jax": ("tf2jax",),
}

# Systems that run in a worker process, and what that process's environment adds.
WORKER_ENV = {"keras_jax": {"KERAS_BACKEND": "jax"}}


def missing_packages(system: str) -> list[str]:
  return [p for p in REQUIRED_PACKAGES.get(system, ()) if importlib.util.find_spec(p) is None]


def batches(x: np.ndarray, batch_size: int) -> list[np.ndarray]:
  return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def worker_command(mode: str, spec: dict) -> list[str]:
  """The command line of a worker process (run it with ``cwd=REPO_ROOT``)."""
  return [sys.executable, "-m", "bench.worker", mode, json.dumps(spec)]


@dataclasses.dataclass
class Assets:
  """One benchmark model, saved in every form the systems load.

  In the parent the in-memory objects are filled in; a worker process loads
  only what its system needs, from the paths.
  """

  name: str
  keras_path: str
  port_dir: str
  onnx_path: str | None = None
  keras_model: Any = None
  port_model: Any = None

  def keras(self):
    if self.keras_model is None:
      self.keras_model = frameworks.keras().saving.load_model(self.keras_path, compile=False)
    return self.keras_model

  def port(self):
    if self.port_model is None:
      import jaxnets  # pylint: disable=import-outside-toplevel

      frameworks.jax()
      self.port_model = jaxnets.load(self.port_dir)
    return self.port_model

  def paths(self) -> dict:
    return {
      "name": self.name,
      "keras_path": self.keras_path,
      "port_dir": self.port_dir,
      "onnx_path": self.onnx_path,
    }


class System:
  """A way to run the model. ``runner(x, b)`` returns a zero-argument callable
  that processes every row of ``x`` in batches of ``b`` and returns the outputs
  as numpy once they are ready (the callable is what gets timed)."""

  name = ""

  def __init__(self, assets: Assets):
    self.assets = assets

  def setup(self) -> None:
    """Loads/converts what the system needs (timed as set-up, not inference)."""

  def runner(self, x: np.ndarray, batch_size: int) -> Callable[[], np.ndarray | None]:
    raise NotImplementedError

  def outputs(self, x: np.ndarray, batch_size: int) -> np.ndarray:
    return self.runner(x, batch_size)()

  def close(self) -> None:
    pass


class KerasPredict(System):
  """``model.predict`` of whatever backend this process runs (TF in the parent)."""

  name = "keras_predict"

  def setup(self):
    self.model = self.assets.keras()

  def runner(self, x, batch_size):
    return lambda: self.model.predict(x, batch_size=batch_size, verbose=0)


class KerasCall(System):
  """``model(batch, training=False)`` per pre-built ``tf.Tensor`` batch."""

  name = "keras_call"

  def setup(self):
    self.model = self.assets.keras()

  def _call(self, t):
    return self.model(t, training=False)

  def runner(self, x, batch_size):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tensors = [tf.constant(b) for b in batches(x, batch_size)]
    return lambda: np.concatenate([np.asarray(self._call(t)) for t in tensors])


class TfXla(KerasCall):
  """The Keras call under ``tf.function(jit_compile=True)`` (XLA via TensorFlow)."""

  name = "tf_xla"

  def setup(self):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    super().setup()
    self._call = tf.function(lambda t: self.model(t, training=False), jit_compile=True)


class OnnxRuntime(System):
  """ONNX Runtime, CPU provider, default threading, per pre-built numpy batch."""

  name = "onnxruntime"

  def setup(self):
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    self.session = ort.InferenceSession(self.assets.onnx_path, providers=["CPUExecutionProvider"])
    self.input_name = self.session.get_inputs()[0].name

  def runner(self, x, batch_size):
    pieces = batches(x, batch_size)
    return lambda: np.concatenate([self.session.run(None, {self.input_name: b})[0] for b in pieces])


class Tf2Jax(System):
  """``tf2jax.convert`` of the Keras call, jitted; one conversion per batch shape."""

  name = "tf2jax"

  def setup(self):
    self.model = self.assets.keras()
    self._converted = {}

  def _fn(self, example: np.ndarray):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tf2jax  # pylint: disable=import-outside-toplevel

    jax = frameworks.jax()
    key = example.shape
    if key not in self._converted:
      fn, params = tf2jax.convert(
        tf.function(lambda t: self.model(t, training=False), autograph=False), example
      )
      self._converted[key] = (jax.jit(fn), params)
    return self._converted[key]

  def runner(self, x, batch_size):
    jax = frameworks.jax()
    pieces = batches(x, batch_size)
    on_device = [jax.device_put(b) for b in pieces]
    fns = [self._fn(b) for b in pieces]

    def run():
      outs = [fn(params, b)[0] for (fn, params), b in zip(fns, on_device)]
      return np.concatenate([np.asarray(o) for o in jax.block_until_ready(outs)])

    return run


class PortPredict(System):
  """``jaxnets.Model.predict``: host validation, length sorting/trimming for
  text, padded last batch, all batches dispatched before any is read back."""

  name = "port_predict"

  def setup(self):
    self.model = self.assets.port()

  def runner(self, x, batch_size):
    return lambda: self.model.predict(x, batch_size=batch_size)


class PortJit(System):
  """The port's jitted forward pass on pre-built, on-device batches.

  Runs ``Model.apply_fast`` (the guarded fast forms, ``jaxnets.guards``) and,
  for a batch it flags, ``Model.apply``: what a user calling the pure
  functions under ``jax.jit`` does to get ``predict``'s answers.
  """

  name = "port_jit"

  def setup(self):
    jax = frameworks.jax()
    self.model = self.assets.port()
    self._fast = jax.jit(self.model.apply_fast)
    self._exact = jax.jit(self.model.apply)

  def runner(self, x, batch_size):
    jax = frameworks.jax()
    on_device = [jax.device_put(b) for b in batches(x, batch_size)]
    params = self.model.params

    # As predict: the fast pass only where some layer takes a fast form at
    # these shapes (below jaxnets.settings' thresholds none does).
    if not self.model.has_fast_paths(on_device[0]):

      def run_exact():
        outs = jax.block_until_ready([self._exact(params, b) for b in on_device])
        return np.concatenate([np.asarray(o) for o in outs])

      return run_exact

    def run():
      outs = jax.block_until_ready([self._fast(params, b) for b in on_device])
      return np.concatenate(
        [
          np.asarray(self._exact(params, b) if bool(flagged) else out)
          for (out, flagged), b in zip(outs, on_device)
        ]
      )

    return run


class RemoteSystem(System):
  """A system living in a worker subprocess, driven one call at a time over a
  pipe (so it is interleaved with the in-process systems); the pipe round trip
  (~0.1 ms) is inside its timings."""

  def __init__(self, assets: Assets, name: str, env: dict[str, str], workspace: str):
    super().__init__(assets)
    self.name = name
    self._env = env
    self._workspace = workspace
    self._keys = 0
    self._proc = None

  def setup(self):
    self._stderr = open(os.path.join(self._workspace, f"{self.name}.stderr"), "w+b")  # pylint: disable=consider-using-with
    self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
      worker_command("serve", {"system": self.name, "assets": self.assets.paths()}),
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self._stderr,
      cwd=REPO_ROOT,
      env={**os.environ, **self._env},
      text=True,
    )
    self._request({"op": "ready"})

  def _request(self, message: dict) -> dict:
    self._proc.stdin.write(json.dumps(message) + "\n")
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    reply = json.loads(line) if line else {"error": "worker exited"}
    if "error" in reply:
      self._stderr.seek(0)
      tail = self._stderr.read().decode(errors="replace")[-2000:]
      raise RuntimeError(f"{self.name} worker: {reply['error']}\n{tail}")
    return reply

  def runner(self, x, batch_size):
    self._keys += 1
    path = os.path.join(self._workspace, f"{self.name}-{self._keys}.npy")
    np.save(path, x)
    key = self._keys
    self._request({"op": "prepare", "key": key, "path": path, "batch_size": batch_size})
    return lambda: self._request({"op": "run", "key": key})

  def outputs(self, x, batch_size):
    path = os.path.join(self._workspace, f"{self.name}-out.npy")
    self.runner(x, batch_size)
    self._request({"op": "run", "key": self._keys, "out": path})
    return np.load(path)

  def close(self):
    if self._proc is not None and self._proc.poll() is None:
      with contextlib.suppress(Exception):
        self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self._proc.stdin.flush()
      try:
        self._proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._proc.kill()
    self._proc = None


_LOCAL = {
  cls.name: cls
  for cls in (KerasPredict, KerasCall, TfXla, OnnxRuntime, Tf2Jax, PortPredict, PortJit)
}
_LOCAL["keras_jax"] = KerasPredict  # inside a KERAS_BACKEND=jax worker process


def make_system(name: str, assets: Assets, workspace: str, *, in_worker: bool = False) -> System:
  if name in WORKER_ENV and not in_worker:
    return RemoteSystem(assets, name, WORKER_ENV[name], workspace)
  return _LOCAL[name](assets)
