"""The jit inference benchmark: the port against every other way to run the model.

    python -m port.bench --models=cnn,lstm,rnn,mlp --batch_sizes=1,32,256 \\
        --json_out=bench.json --chart_out=bench.png
    python -m port.bench --models=cnn --systems=onnxruntime,port_predict --repeats=5
    python -m port.bench --workdir=runs      # trained models of `python -m train` instead

Models (the studies' base architectures, seeded random weights unless a
trained ``.keras`` is found under ``--workdir``): ``cnn`` (Conv 32-64-128 3x3
same ReLU, max-pool 2, Flatten, Dense 128, Dropout, Dense 10 softmax on
32x32x3), ``lstm``/``rnn`` (Embedding 64 with ``mask_zero`` -> 2 x
Bidirectional LSTM/SimpleRNN 64 -> Dropout -> Dense 3 softmax, 64 tokens),
``mlp`` (784-256-128-10).

Inputs: CIFAR-10 / MNIST test images when the data is there (``--data_dir``,
``JAXNETS_DATA_DIR`` or the loaders' download cache), else uniform noise. Text models are
timed on **token ids** ``int32 (batch, 64)`` for every system (the ONNX and
tf2jax peers cannot take strings): the NusaX-Senti (Indonesian) test texts
through the model's own ``TextVectorization`` when the data is there, else
synthetic ids whose real lengths follow NusaX's test-set distribution.
Host-side tokenisation is outside every timed call.

Systems (``--systems``), all fed the same rows:

- ``keras_predict``: ``keras_model.predict(x, batch_size)`` (TensorFlow backend);
- ``keras_call``: ``keras_model(batch, training=False)`` per pre-built batch;
- ``tf_xla``: that call under ``tf.function(jit_compile=True)``;
- ``keras_jax``: Keras 3 on the JAX backend, ``predict`` on the same saved
  ``.keras`` model, in a subprocess (the backend is per process) that the
  parent drives batch by batch over a pipe, so it interleaves like the rest;
- ``onnxruntime``: the model exported with ``model.export(format="onnx")``,
  run by ONNX Runtime's CPU provider per pre-built batch;
- ``tf2jax``: ``tf2jax.convert`` of the Keras call, ``jax.jit``-ed, per batch;
- ``port_predict``: ``port.load(keras_model).predict(x, batch_size)``;
- ``port_jit``: the port's ``jax.jit(model.apply)`` per pre-built on-device
  batch (no host-side validation, sorting or padding).

A peer whose package is missing is reported as skipped. Figures per system:
throughput at each batch size (median, min and max of ``--repeats`` timed
passes after one warm-up pass, all systems interleaved A B A B ...; the ratio
port / peer is the median of per-round ratios), batch-1 latency (median, p99;
interleaved too), set-up time and first-call time (includes compilation),
agreement with ``keras_model(x, training=False)``, peak memory (a fresh
process per system) and GFLOP/s against a float32 matmul peak measured in the
same run. Cold start: wall time of a fresh process that loads the saved model
(``jaxnets.load`` / ``keras.saving.load_model``) and returns one prediction.

Everything is printed as markdown, and written to ``--json_out`` (every
figure, raw times included) and ``--chart_out`` (PNG).
"""

import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow and JAX share one GPU in this process: JAX must not grab 75% of
# its memory up front (TF is told to grow on demand in _keras()).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = ("cnn", "lstm", "rnn", "mlp")
SYSTEMS = ("keras_predict", "keras_call", "tf_xla", "keras_jax", "onnxruntime", "tf2jax",
           "port_predict", "port_jit")
PORT_SYSTEMS = ("port_predict", "port_jit")
_MATMUL = "matmul_peak"  # timed in the throughput rounds beside the systems
HEADLINE_PORT = "port_predict"  # what a user calls; port_jit is shown beside it

# Packages a system needs beyond the project's own dependencies (the `bench`
# extra). Missing ones make the system "skipped (not installed)".
REQUIRED_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "tf2onnx", "onnx"),
    "tf2jax": ("tf2jax",),
}

# Real token counts of the 400 NusaX-Senti (Indonesian) test texts under the
# base config's TextVectorization (64 tokens, truncating 2 longer texts): the
# 0th, 5th, ..., 100th percentiles. Synthetic text inputs draw lengths from it.
NUSAX_LENGTH_PERCENTILES = (5, 7, 8, 10, 11, 12, 13, 15, 16, 17, 19, 21, 22, 25, 27, 31, 35,
                            39, 45, 57, 64)
SEQUENCE_LENGTH = 64
VOCABULARY_SIZE = 10_000

# The targets (port / peer ratios; >= unless stated). Never loosened:
# a missed target is reported and explained in BENCHMARKS.md.
TARGETS = {
    "cnn": {"keras_predict": 1.5, "keras_jax": 1.3, "onnxruntime": 1.0},
    "lstm": {"keras_predict": 2.0, "onnxruntime": 1.5},
    "rnn": {"keras_predict": 2.0, "onnxruntime": 1.5},
}
TARGET_PEAK_FRACTION = {"cnn": 0.90}
TARGET_LATENCY = {"onnxruntime": 1.0, "keras_predict": 100.0}  # peer latency / port latency
TARGET_COLD_START = 3.0  # keras cold start / port cold start


@dataclasses.dataclass
class Settings:
  """Everything one benchmark run depends on (the CLI flags)."""
  models: Sequence[str] = MODELS
  batch_sizes: Sequence[int] = (1, 32, 256)
  systems: Sequence[str] = SYSTEMS
  repeats: int = 7
  latency_repeats: int = 101
  num_inputs: int = 4096
  max_batches: int = 32
  workdir: Optional[str] = None
  data_dir: Optional[str] = None
  seed: int = 0
  memory: bool = True
  cold_start: bool = True
  cold_start_repeats: int = 3
  layer_profile: bool = True
  tiny: bool = False  # shrunken models and matmul (tests)
  log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- helpers
def missing_packages(system: str) -> list[str]:
  return [p for p in REQUIRED_PACKAGES.get(system, ()) if importlib.util.find_spec(p) is None]


def _keras():
  """Imports Keras; turns TF32 off on either backend so float32 means float32.

  On GPUs TF32 rounds matmul inputs to 10 mantissa bits (~1e-3 output error),
  which would both hide real differences and make the ratios compare unequal
  arithmetic. It has no effect on CPUs.
  """
  import keras  # pylint: disable=import-outside-toplevel
  if keras.backend.backend() == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in tf.config.list_physical_devices("GPU"):
      with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
        tf.config.experimental.set_memory_growth(gpu, True)
  elif keras.backend.backend() == "jax":
    _jax()
  return keras


def _jax():
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_default_matmul_precision", "highest")
  return jax


def _batches(x: np.ndarray, batch_size: int) -> list[np.ndarray]:
  return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def _proc_status_mb(field: str) -> float:
  """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MiB.

  Not ``getrusage``'s ``ru_maxrss``: Linux carries it over ``fork``/``exec``,
  so a child would report its parent's peak. ``VmHWM`` belongs to the address
  space that ``exec`` creates fresh.
  """
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024  # kB
  raise RuntimeError(f"no {field} in /proc/self/status")


# ------------------------------------------------------------------ assets
@dataclasses.dataclass
class Assets:
  """One benchmark model, saved in every form the systems load.

  In the parent the in-memory objects are filled in; a worker process loads
  only what its system needs, from the paths.
  """
  name: str
  keras_path: str
  port_dir: str
  onnx_path: Optional[str] = None
  keras_model: Any = None
  port_model: Any = None

  def keras(self):
    if self.keras_model is None:
      self.keras_model = _keras().saving.load_model(self.keras_path, compile=False)
    return self.keras_model

  def port(self):
    if self.port_model is None:
      import jaxnets  # pylint: disable=import-outside-toplevel
      _jax()
      self.port_model = jaxnets.load(self.port_dir)
    return self.port_model

  def paths(self) -> dict:
    return {"name": self.name, "keras_path": self.keras_path, "port_dir": self.port_dir,
            "onnx_path": self.onnx_path}


# ----------------------------------------------------------------- systems
class System:
  """A way to run the model. ``runner(x, b)`` returns a zero-argument callable
  that processes every row of ``x`` in batches of ``b`` and returns the outputs
  as numpy once they are ready (the callable is what gets timed)."""

  name = ""

  def __init__(self, assets: Assets):
    self.assets = assets

  def setup(self) -> None:
    """Loads/converts what the system needs (timed as set-up, not inference)."""

  def runner(self, x: np.ndarray, batch_size: int) -> Callable[[], Optional[np.ndarray]]:
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
    tensors = [tf.constant(b) for b in _batches(x, batch_size)]
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
    self.session = ort.InferenceSession(self.assets.onnx_path,
                                        providers=["CPUExecutionProvider"])
    self.input_name = self.session.get_inputs()[0].name

  def runner(self, x, batch_size):
    batches = _batches(x, batch_size)
    return lambda: np.concatenate(
        [self.session.run(None, {self.input_name: b})[0] for b in batches])


class Tf2Jax(System):
  """``tf2jax.convert`` of the Keras call, jitted; one conversion per batch shape."""
  name = "tf2jax"

  def setup(self):
    self.model = self.assets.keras()
    self._converted = {}

  def _fn(self, example: np.ndarray):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tf2jax  # pylint: disable=import-outside-toplevel
    jax = _jax()
    key = example.shape
    if key not in self._converted:
      fn, params = tf2jax.convert(
          tf.function(lambda t: self.model(t, training=False), autograph=False), example)
      self._converted[key] = (jax.jit(fn), params)
    return self._converted[key]

  def runner(self, x, batch_size):
    jax = _jax()
    batches = [jax.device_put(b) for b in _batches(x, batch_size)]
    fns = [self._fn(b) for b in _batches(x, batch_size)]

    def run():
      outs = [fn(params, b)[0] for (fn, params), b in zip(fns, batches)]
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
  """The port's jitted forward pass on pre-built, on-device batches."""
  name = "port_jit"

  def setup(self):
    jax = _jax()
    self.model = self.assets.port()
    self._forward = jax.jit(self.model.apply)

  def runner(self, x, batch_size):
    jax = _jax()
    batches = [jax.device_put(b) for b in _batches(x, batch_size)]
    params = self.model.params

    def run():
      outs = [self._forward(params, b) for b in batches]
      return np.concatenate([np.asarray(o) for o in jax.block_until_ready(outs)])
    return run


class RemoteSystem(System):
  """A system living in a worker subprocess (``keras_jax``: the Keras backend
  is chosen per process). The parent drives it one call at a time over a pipe,
  so it is interleaved with the in-process systems; the pipe round trip
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
        _worker_command("serve", {"system": self.name, "assets": self.assets.paths()}),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=REPO_ROOT,
        env={**os.environ, **self._env}, text=True)
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


_LOCAL = {cls.name: cls for cls in (KerasPredict, KerasCall, TfXla, OnnxRuntime, Tf2Jax,
                                    PortPredict, PortJit)}
_LOCAL["keras_jax"] = KerasPredict  # inside a KERAS_BACKEND=jax worker process
_WORKER_ENV = {"keras_jax": {"KERAS_BACKEND": "jax"}}


def make_system(name: str, assets: Assets, workspace: str, *, in_worker: bool = False) -> System:
  if name in _WORKER_ENV and not in_worker:
    return RemoteSystem(assets, name, _WORKER_ENV[name], workspace)
  return _LOCAL[name](assets)


# ------------------------------------------------------------------ worker
# Workers load this file by path, not as ``port.bench``: importing the ``port``
# package would import JAX into, e.g., the ONNX Runtime memory probe.
_BOOT = ("import importlib.util, sys\n"
         "spec = importlib.util.spec_from_file_location('jaxnets_bench_worker', sys.argv[1])\n"
         "module = importlib.util.module_from_spec(spec)\n"
         "spec.loader.exec_module(module)\n"
         "module.worker_main(sys.argv[2], sys.argv[3])\n")


def _worker_command(mode: str, spec: dict) -> list[str]:
  return [sys.executable, "-c", _BOOT, os.path.abspath(__file__), mode, json.dumps(spec)]


def worker_main(mode: str, spec_json: str) -> None:
  """Entry point of a worker subprocess (``serve`` or ``memory``)."""
  spec = json.loads(spec_json)
  # The protocol owns the real stdout; anything a library prints goes to stderr.
  protocol = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
  name = spec["system"]
  if name == "keras_jax":
    os.environ["KERAS_BACKEND"] = "jax"

  def reply(message):
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()

  if mode == "memory":
    try:
      reply(_memory_probe(name, spec))
    except Exception as e:  # pylint: disable=broad-except
      reply({"error": f"{type(e).__name__}: {e}"})
    return
  workspace = tempfile.mkdtemp(prefix="bench-worker-")
  system = make_system(name, Assets(**spec["assets"]), workspace, in_worker=True)
  runners, inputs = {}, {}
  for line in sys.stdin:
    message = json.loads(line)
    try:
      op = message["op"]
      if op == "quit":
        break
      if op == "ready":
        system.setup()
        reply({"ok": True})
      elif op == "prepare":
        x = np.load(message["path"])
        inputs[message["key"]] = (x, message["batch_size"])
        runners[message["key"]] = system.runner(x, message["batch_size"])
        reply({"ok": True})
      elif op == "run":
        start = time.perf_counter()
        out = runners[message["key"]]()
        seconds = time.perf_counter() - start
        if message.get("out"):
          np.save(message["out"], np.asarray(out))
        reply({"seconds": seconds})
      else:
        reply({"error": f"unknown op {op!r}"})
    except Exception as e:  # pylint: disable=broad-except
      reply({"error": f"{type(e).__name__}: {e}"})


def _import_for(name: str) -> None:
  """Imports the frameworks ``name`` runs on (before the memory baseline)."""
  if name.startswith("port"):
    import jaxnets  # pylint: disable=import-outside-toplevel,unused-import
    _jax()
  elif name == "onnxruntime":
    import onnxruntime  # pylint: disable=import-outside-toplevel,unused-import
  else:
    _keras()
    if name == "tf2jax":
      import tf2jax  # pylint: disable=import-outside-toplevel,unused-import


def _memory_probe(name: str, spec: dict) -> dict:
  """Peak RSS of this fresh process: import, load, one pass at the batch size."""
  _import_for(name)
  rss_after_import = _proc_status_mb("VmRSS")
  system = make_system(name, Assets(**spec["assets"]), tempfile.mkdtemp(), in_worker=True)
  system.setup()
  x = np.load(spec["inputs"])
  system.runner(x, spec["batch_size"])()
  peak = _proc_status_mb("VmHWM")
  return {"peak_rss_mb": peak, "rss_after_import_mb": rss_after_import,
          "peak_minus_import_mb": peak - rss_after_import,
          "accelerator_peak_mb": _accelerator_peak_mb()}


def _accelerator_peak_mb() -> Optional[float]:
  """Peak accelerator memory of this process (None on CPU-only runs)."""
  peaks = []
  if "jax" in sys.modules:
    jax = sys.modules["jax"]
    for device in jax.local_devices():
      stats = device.memory_stats() if device.platform != "cpu" else None
      if stats and "peak_bytes_in_use" in stats:
        peaks.append(stats["peak_bytes_in_use"] / 2**20)
  if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
    for device in tf.config.list_logical_devices("GPU"):
      peaks.append(tf.config.experimental.get_memory_info(device.name)["peak"] / 2**20)
  return sum(peaks) if peaks else None


# ------------------------------------------------------------------ models
def randomize_weights(model, seed: int) -> None:
  """Seeded normal weights scaled by 1/sqrt(fan_in): realistic activations."""
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    shape = tuple(variable.shape)
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    variable.assign(rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32))


# Where `python -m train` keeps a trained model of each benchmark architecture
# (<workdir>/<family>/<study>/<variant>/seed<k>/model.keras): the CNN and MLP
# base configs appear in several studies; the text models are the "2-layers"
# variant (2 x Bidirectional 64) of the layers study.
_TRAINED = {
    "cnn": ("cnn/conv_layers/3-conv", "cnn/filters/32-64-128", "cnn/kernels/3-3-3",
            "cnn/pooling/max"),
    "lstm": ("lstm/layers/2-layers",),
    "rnn": ("rnn/layers/2-layers",),
    "mlp": ("mlp/recipe/256-128",),
}


def find_trained(workdir: str, name: str) -> Optional[str]:
  """``<workdir>/<name>.keras``, else the first trained run of the architecture."""
  import glob  # pylint: disable=import-outside-toplevel
  direct = os.path.join(workdir, f"{name}.keras")
  if os.path.isfile(direct):
    return direct
  for run_dir in _TRAINED[name]:
    found = sorted(glob.glob(os.path.join(workdir, run_dir, "seed*", "model.keras")))
    if found:
      return found[0]
  return None


def _synthetic_vectorizer(keras, tiny: bool):
  from train import models  # pylint: disable=import-outside-toplevel
  size = 200 if tiny else VOCABULARY_SIZE
  words = np.array([" ".join(f"w{i}" for i in range(size - 2))], dtype=object)
  return models.make_vectorizer(words, max_tokens=size,
                                sequence_length=16 if tiny else SEQUENCE_LENGTH)


_NUSAX_TEST = os.path.join("nusax-senti", "indonesian", "test.csv")


def data_file(data_dir: Optional[str], relative: str) -> Optional[str]:
  """The data root holding ``relative``: the data directory, else the loaders'
  download cache (filled by an earlier ``python -m train`` on, e.g., Colab)."""
  roots = [data_dir] if data_dir else []
  with contextlib.suppress(Exception):
    from train import data  # pylint: disable=import-outside-toplevel
    roots.append(str(data.cache_dir()))
  for root in roots:
    if os.path.isfile(os.path.join(root, relative)):
      return root
  return None


def build_keras(name: str, settings: Settings, data_dir: Optional[str]):
  """(keras model on numeric input, vectorizer or None, weights description)."""
  keras = _keras()
  from train import models  # pylint: disable=import-outside-toplevel
  path = find_trained(settings.workdir, name) if settings.workdir else None
  if path:
    model = keras.saving.load_model(path, compile=False)
    weights = f"trained ({os.path.relpath(path)})"
  else:
    tiny = settings.tiny
    keras.utils.set_random_seed(settings.seed)
    if name == "cnn":
      model = models.build_cnn(filters=(4, 8) if tiny else (32, 64, 128),
                               kernel_sizes=(3, 3) if tiny else (3, 3, 3),
                               dense_units=16 if tiny else 128, input_shape=(32, 32, 3))
    elif name == "mlp":
      model = models.build_mlp(hidden_units=(16,) if tiny else (256, 128))
    else:
      vectorizer = None
      root = data_file(data_dir, _NUSAX_TEST)
      if root and not tiny:
        from train import data  # pylint: disable=import-outside-toplevel
        vectorizer = models.make_vectorizer(data.load_nusax(data_dir=root).train_texts)
      vectorizer = vectorizer or _synthetic_vectorizer(keras, tiny)
      units = (8,) if tiny else (64, 64)
      model = models.build_text(vectorizer, cell="lstm" if name == "lstm" else "simple_rnn",
                                units=units, embedding_dim=8 if tiny else 64, name=name)
    randomize_weights(model, settings.seed)
    weights = f"seeded random (seed {settings.seed})"
    if settings.workdir:
      weights += f"; no trained model under {settings.workdir}"
  vectorizer = None
  if type(model.layers[0]).__name__ == "TextVectorization":
    # Every system is timed on token ids: the same layers behind an int input.
    vectorizer = model.layers[0]
    length = vectorizer.get_config()["output_sequence_length"]
    model = keras.Sequential([keras.Input((length,), dtype="int32", name="tokens")]
                             + model.layers[1:], name=f"{name}_tokens")
  return model, vectorizer, weights


def make_inputs(name: str, count: int, settings: Settings, data_dir: Optional[str],
                vectorizer, input_shape) -> tuple[np.ndarray, str]:
  """``count`` rows in random order (the test set repeated as needed)."""
  rng = np.random.default_rng(settings.seed)
  if name in ("cnn", "mlp"):
    file = {"cnn": "cifar10.npz", "mlp": "mnist.npz"}[name]
    root = data_file(data_dir, file)
    if root:
      with np.load(os.path.join(root, file)) as d:
        x = d["x_test"].astype(np.float32) / 255.0
      x = x.reshape((len(x),) + tuple(input_shape))
      source = f"{file} x_test"
    else:
      x = rng.uniform(size=(count,) + tuple(input_shape)).astype(np.float32)
      source = "uniform noise"
  else:
    length = int(input_shape[0])
    root = data_file(data_dir, _NUSAX_TEST)
    if root and not settings.tiny:
      from train import data  # pylint: disable=import-outside-toplevel
      texts = data.load_nusax(data_dir=root).test_texts
      x = np.asarray(vectorizer(np.asarray(texts, dtype=object))).astype(np.int32)
      source = f"NusaX-Senti indonesian test texts ({len(texts)}), token ids"
    else:
      vocab = int(vectorizer.vocabulary_size())
      quantiles = np.interp(rng.uniform(size=count) * 20, np.arange(21),
                            NUSAX_LENGTH_PERCENTILES)
      lengths = np.clip(np.round(quantiles * length / SEQUENCE_LENGTH), 1, length).astype(int)
      x = rng.integers(2, vocab, size=(count, length)).astype(np.int32)
      x[np.arange(length)[None, :] >= lengths[:, None]] = 0
      source = "synthetic token ids, NusaX-Senti test length distribution"
  x = x[rng.permutation(len(x))]
  x = np.resize(x, (count,) + x.shape[1:]) if len(x) != count else x
  return x, source


# ------------------------------------------------------------- measurement
def _matmul(n: int) -> tuple[Callable[[], Any], int]:
  """A jitted float32 ``n x n`` matmul (blocking) and its FLOP count."""
  jax = _jax()
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  return (lambda: matmul(a, b).block_until_ready()), 2 * n**3


def matmul_peak(tiny: bool = False, repeats: int = 7) -> dict:
  """Median GFLOP/s of jitted float32 square matmuls; the best size is the peak."""
  result = {}
  for n in (128, 256) if tiny else (1024, 2048, 3072):
    fn, flop_count = _matmul(n)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    result[str(n)] = flop_count / statistics.median(times) / 1e9
  best = max(result, key=result.get)
  return {"gflops_by_size": result, "gflops": result[best], "size": int(best)}


def layer_profile(model, x: np.ndarray, repeats: int) -> list[dict]:
  """Where the port's time goes: jitted prefixes ``layers[:k]`` of the model,
  timed interleaved on one on-device batch; a layer's time is the median
  per-round difference between consecutive prefixes (XLA fuses across layers,
  so this attributes a fused whole approximately; small negatives are noise).
  Text batches are timed as given (padded), FLOPs counted at real lengths."""
  from port import flops  # pylint: disable=import-outside-toplevel
  from port import timing  # pylint: disable=import-outside-toplevel
  jax = _jax()
  layers = model.layers

  def prefix(k):
    def forward(params, v):
      mask = None
      for layer in layers[:k]:
        v, mask = layer.apply(params.get(layer.name, {}), v, mask)
      return v
    return jax.jit(forward)

  batch = jax.device_put(x)
  fns = {k: prefix(k) for k in range(1, len(layers) + 1)}
  result = timing.interleaved(
      {k: (lambda f=f: f(model.params, batch).block_until_ready()) for k, f in fns.items()},
      repeats=repeats, warmup=1)
  counts = flops.per_layer_total(model, x)
  rows, total = [], result["median"][len(layers)]
  for k, (name, cls, flop_count) in enumerate(counts, start=1):
    previous = result["times"].get(k - 1)
    deltas = [t - (previous[i] if previous else 0.0) for i, t in enumerate(result["times"][k])]
    seconds = statistics.median(deltas)
    rows.append({"layer": name, "class": cls, "flops": flop_count, "ms": 1e3 * seconds,
                 "share": seconds / total,
                 "gflops": flop_count / seconds / 1e9 if seconds > 0 and flop_count else None})
  return rows


def _agreement(got, expected) -> dict:
  got = np.asarray(got)
  if got.shape != expected.shape:
    return {"max_abs_diff": None, "argmax_equal": None, "error": f"shape {got.shape}"}
  return {"max_abs_diff": float(np.max(np.abs(got - expected))),
          "argmax_equal": float(np.mean(got.argmax(-1) == expected.argmax(-1)))}


def _stats(times: list[float], rows: int) -> dict:
  median = statistics.median(times)
  return {"times_s": times, "median_s": median, "min_s": min(times), "max_s": max(times),
          "rows": rows, "rows_per_s": rows / median, "rows_per_s_min": rows / max(times),
          "rows_per_s_max": rows / min(times)}


def _ratios(result: dict, names: list[str]) -> dict:
  """``{port: {peer: median per-round t_peer / t_port}}`` (> 1: port faster)."""
  return {p: {q: result["ratio"][(p, q)] for q in names if q != p}
          for p in PORT_SYSTEMS if p in names}


def _cold_start(assets: Assets, x1_path: str, repeats: int) -> dict:
  """Fresh process to first prediction, port vs Keras, interleaved rounds.

  The clock runs from spawning the process until it has printed its first
  prediction (read by the parent); the process's own exit (interpreter and
  framework teardown) is recorded as ``exit_s`` but is not part of the figure.
  One warm-up round first fills the page cache.
  """
  from port import timing  # pylint: disable=import-outside-toplevel
  scripts = {
      "port": ("import json, time; t0 = time.perf_counter()\n"
               "import numpy as np, jaxnets; t1 = time.perf_counter()\n"
               f"m = jaxnets.load({assets.port_dir!r}); t2 = time.perf_counter()\n"
               f"y = m.predict(np.load({x1_path!r})); t3 = time.perf_counter()\n"
               "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, "
               "'predict_s': t3 - t2, 'output': y.tolist()}), flush=True)\n"),
      "keras": ("import json, time; t0 = time.perf_counter()\n"
                "import numpy as np, keras; t1 = time.perf_counter()\n"
                f"m = keras.saving.load_model({assets.keras_path!r}); t2 = time.perf_counter()\n"
                f"y = m.predict(np.load({x1_path!r}), verbose=0); t3 = time.perf_counter()\n"
                "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, "
                "'predict_s': t3 - t2, 'output': y.tolist()}), flush=True)\n"),
  }
  env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
  runs = {name: [] for name in scripts}

  def launch(name):
    start = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", scripts[name]], stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                          stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env) as proc:
      line = proc.stdout.readline()
      first = time.perf_counter() - start
      _, err = proc.communicate()
      if proc.returncode or not line:
        raise RuntimeError(f"cold start ({name}) failed:\n{err[-2000:]}")
    runs[name].append({**json.loads(line), "first_prediction_s": first,
                       "exit_s": time.perf_counter() - start})

  timing.interleaved({n: (lambda n=n: launch(n)) for n in scripts}, repeats=repeats, warmup=1)
  out = {}
  for name in scripts:
    timed = runs[name][-repeats:]
    out[name] = {"first_prediction_s": statistics.median(r["first_prediction_s"] for r in timed),
                 "times_s": [r["first_prediction_s"] for r in timed],
                 **{k: statistics.median(r[k] for r in timed)
                    for k in ("import_s", "load_s", "predict_s", "exit_s")}}
  out["outputs_max_abs_diff"] = float(np.max(np.abs(
      np.asarray(runs["port"][-1]["output"]) - np.asarray(runs["keras"][-1]["output"]))))
  out["keras_over_port"] = statistics.median(
      k["first_prediction_s"] / p["first_prediction_s"]
      for p, k in zip(runs["port"][-repeats:], runs["keras"][-repeats:]))
  return out


def _memory(name: str, assets: Assets, inputs_path: str, batch_size: int) -> dict:
  env = {**os.environ, **_WORKER_ENV.get(name, {})}
  spec = {"system": name, "assets": assets.paths(), "inputs": inputs_path,
          "batch_size": batch_size}
  done = subprocess.run(_worker_command("memory", spec), capture_output=True, text=True,
                        cwd=REPO_ROOT, env=env, check=False)
  lines = done.stdout.strip().splitlines()
  reply = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
  if "error" in reply:
    return {"error": reply["error"][-500:]}
  return reply


def bench_model(name: str, settings: Settings, workspace: str, matmul_size: int) -> dict:
  """Every measurement for one model; returns its JSON record."""
  import port  # pylint: disable=import-outside-toplevel
  from port import flops  # pylint: disable=import-outside-toplevel
  from port import timing  # pylint: disable=import-outside-toplevel
  log = settings.log
  data_dir = settings.data_dir
  keras_model, vectorizer, weights = build_keras(name, settings, data_dir)
  input_shape = tuple(keras_model.inputs[0].shape[1:])
  x_all, source = make_inputs(name, settings.num_inputs, settings, data_dir, vectorizer,
                              input_shape)
  log(f"[{name}] {weights}; inputs: {source}, {x_all.shape} {x_all.dtype}")

  model_dir = os.path.join(workspace, name)
  os.makedirs(model_dir, exist_ok=True)
  assets = Assets(name, os.path.join(model_dir, "model.keras"), os.path.join(model_dir, "port"),
                  keras_model=keras_model)
  keras_model.save(assets.keras_path)
  start = time.perf_counter()
  assets.port_model = port.load(keras_model)
  port_convert_s = time.perf_counter() - start
  assets.port_model.save(assets.port_dir)
  record = {"model": name, "weights": weights, "inputs": source,
            "input_shape": list(input_shape), "input_dtype": str(x_all.dtype),
            "num_inputs": len(x_all), "param_count": assets.port_model.param_count,
            "port_convert_s": port_convert_s, "systems": {}}
  per_example = flops.per_layer(assets.port_model, x_all.shape[1:])
  record["flops_per_layer_full_length"] = [
      {"layer": n, "class": c, "flops": f} for n, c, f in per_example]

  b_max = max(settings.batch_sizes)
  # Whole batches only (every pre-built batch has one shape), unless fewer rows
  # than one batch exist at all.
  rows_for = {}
  for b in settings.batch_sizes:
    rows = min(len(x_all), b * settings.max_batches)
    rows_for[b] = rows // b * b if rows >= b else rows
  x_check = x_all[:rows_for[b_max]]
  expected = np.concatenate([np.asarray(keras_model(b, training=False))
                             for b in _batches(x_check, 256)])

  systems: dict[str, System] = {}
  for system_name in settings.systems:
    entry = record["systems"].setdefault(system_name, {})
    missing = missing_packages(system_name)
    if missing:
      entry["status"] = f"skipped (not installed: {', '.join(missing)})"
      log(f"[{name}] {system_name}: {entry['status']}")
      continue
    system = None
    try:
      if system_name == "onnxruntime" and assets.onnx_path is None:
        start = time.perf_counter()
        assets.onnx_path = os.path.join(model_dir, "model.onnx")
        with contextlib.redirect_stdout(sys.stderr):
          keras_model.predict(x_all[:1], verbose=0)  # export needs a built model
          keras_model.export(assets.onnx_path, format="onnx", verbose=False)
        entry["export_s"] = time.perf_counter() - start
      system = make_system(system_name, assets, workspace)
      start = time.perf_counter()
      system.setup()
      entry["setup_s"] = time.perf_counter() - start
      first = system.runner(x_check[:b_max], b_max)
      start = time.perf_counter()
      first()
      entry["first_call_s"] = time.perf_counter() - start
      entry["agreement"] = _agreement(system.outputs(x_check, b_max), expected)
      entry["status"] = "ok"
      systems[system_name] = system
      log(f"[{name}] {system_name}: set-up {entry['setup_s']:.2f} s, first call "
          f"{entry['first_call_s']:.2f} s, max abs diff {entry['agreement']['max_abs_diff']}")
    except Exception as e:  # pylint: disable=broad-except
      entry["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
      log(f"[{name}] {system_name}: {entry['status']}")
      if system is not None:
        with contextlib.suppress(Exception):
          system.close()

  names = list(systems)
  record["throughput"] = {}
  # The matmul peak is timed inside every round too, so that "% of peak"
  # compares the port with the hardware under the same load (a per-round
  # ratio like the others), not with a peak measured minutes apart.
  matmul, matmul_flops = _matmul(matmul_size)
  try:
    for b in settings.batch_sizes:
      x = x_all[:rows_for[b]]
      runners = {n: s.runner(x, b) for n, s in systems.items()}
      runners[_MATMUL] = matmul
      log(f"[{name}] throughput, batch {b}: {len(x)} rows x {settings.repeats} rounds ...")
      result = timing.interleaved(runners, repeats=settings.repeats, warmup=1)
      useful = flops.model_flops(assets.port_model, x)
      per_system = {}
      for n in names:
        stats = _stats(result["times"][n], len(x))
        stats["gflops"] = useful / stats["median_s"] / 1e9
        stats["peak_fraction"] = statistics.median(
            (useful / t) / (matmul_flops / t_mm)
            for t, t_mm in zip(result["times"][n], result["times"][_MATMUL]))
        per_system[n] = stats
      record["throughput"][str(b)] = {
          "rows": len(x), "flops": useful, "systems": per_system,
          "matmul": {"size": matmul_size, "times_s": result["times"][_MATMUL],
                     "gflops": matmul_flops / result["median"][_MATMUL] / 1e9},
          "port_speedup": _ratios(result, names)}

    # Batch-1 latency: a row of median real length for text models.
    if flops.is_text(assets.port_model):
      lengths = flops.real_lengths(x_all)
      row = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
    else:
      row = 0
    x1 = x_all[row:row + 1]
    log(f"[{name}] batch-1 latency x {settings.latency_repeats} rounds ...")
    runners = {n: s.runner(x1, 1) for n, s in systems.items()}
    result = timing.interleaved(runners, repeats=settings.latency_repeats, warmup=3)
    record["latency"] = {
        "row_real_length": int(flops.real_lengths(x1)[0]) if flops.is_text(
            assets.port_model) else None,
        "systems": {n: {"median_ms": 1e3 * result["median"][n],
                        "p99_ms": 1e3 * float(np.percentile(result["times"][n], 99)),
                        "min_ms": 1e3 * result["min"][n], "times_s": result["times"][n]}
                    for n in names},
        "port_speedup": _ratios(result, names)}
  finally:
    for system in systems.values():
      system.close()

  if settings.layer_profile and "port_jit" in systems:
    log(f"[{name}] per-layer profile of the port ...")
    record["layer_profile"] = {"batch_size": b_max, "layers": layer_profile(
        assets.port_model, x_all[:b_max], settings.repeats)}

  inputs_path = os.path.join(model_dir, "inputs.npy")
  np.save(inputs_path, x_all[:rows_for[b_max]])
  if settings.memory:
    for n in names:
      log(f"[{name}] peak memory of {n} (fresh process) ...")
      record["systems"][n]["memory"] = _memory(n, assets, inputs_path, b_max)
  if settings.cold_start:
    x1_path = os.path.join(model_dir, "x1.npy")
    np.save(x1_path, x1)
    log(f"[{name}] cold start x {settings.cold_start_repeats} rounds ...")
    try:
      record["cold_start"] = _cold_start(assets, x1_path, settings.cold_start_repeats)
    except RuntimeError as e:
      record["cold_start"] = {"error": str(e)[-1000:]}
  return record


# ----------------------------------------------------------------- targets
def evaluate_targets(record: dict) -> list[dict]:
  """Every issue target that applies to the record's model, for both ways of
  running the port (``port_predict`` is the headline): value and verdict."""
  name, out = record["model"], []
  b = str(max(int(k) for k in record["throughput"])) if record.get("throughput") else None

  def add(port, what, value, required, unit="x"):
    out.append({"model": name, "port": port, "target": what, "value": value,
                "required": required, "unit": unit,
                "met": None if value is None else value >= required})

  for port in PORT_SYSTEMS:
    if port not in record["systems"] or record["systems"][port].get("status") != "ok":
      continue
    if b is not None:
      speedup = record["throughput"][b]["port_speedup"].get(port, {})
      for peer, required in TARGETS.get(name, {}).items():
        add(port, f"throughput @{b}: port / {peer}", speedup.get(peer), required)
      if name in TARGET_PEAK_FRACTION:
        stats = record["throughput"][b]["systems"][port]
        add(port, f"GFLOP/s @{b} / matmul peak", stats["peak_fraction"],
            TARGET_PEAK_FRACTION[name], "of peak")
    if record.get("latency"):
      speedup = record["latency"]["port_speedup"].get(port, {})
      for peer, required in TARGET_LATENCY.items():
        add(port, f"batch-1 latency: {peer} / port", speedup.get(peer), required)
  cold = record.get("cold_start", {})
  if "keras_over_port" in cold:
    add("jaxnets.load", "cold start: keras / port", cold["keras_over_port"], TARGET_COLD_START)
  return out


# ----------------------------------------------------------------- reports
def _fmt(value, spec=".0f", none="—"):
  return none if value is None else format(value, spec)


def markdown(results: dict) -> str:
  """The whole run as markdown: environment, headline targets, per-model tables."""
  env = results["environment"]
  lines = ["# jaxnets inference benchmark", "",
           f"- command: `{env['command']}`",
           f"- {env['cpu_model']}, {env['cpu_count']} CPUs; load average before/after: "
           f"{env['load_before']} / {env.get('load_after', '—')}",
           f"- JAX devices: {env['jax_devices']}; " + ", ".join(
               f"{k} {v}" for k, v in env["versions"].items()),
           f"- float32 matmul peak (jitted {results['matmul_peak_before']['size']}^2 matmul): "
           f"{results['matmul_peak_before']['gflops']:.0f} GFLOP/s before the models, "
           f"{results['matmul_peak_after']['gflops']:.0f} after; it is also timed in every "
           "throughput round, and \"% peak\" is the median per-round ratio of a system's "
           "GFLOP/s to the matmul's", ""]
  targets = results["targets"]
  if targets:
    lines += ["## Targets (ratios are medians of interleaved per-round ratios; > 1: the port "
              "is faster)", "",
              "| model | port | target | measured | required | met |",
              "|---|---|---|---|---|---|"]
    for t in targets:
      value = (_fmt(t["value"], ".0%") if t["unit"] == "of peak"
               else _fmt(t["value"], ".2f") + "x" if t["value"] is not None else "—")
      required = (f"{t['required']:.0%}" if t["unit"] == "of peak" else f"{t['required']:g}x")
      met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
      lines.append(f"| {t['model']} | {t['port']} | {t['target']} | {value} | ≥ {required} "
                   f"| {met} |")
    lines.append("")
  for record in results["models"]:
    lines += _model_tables(record)
  return "\n".join(lines)


def _model_tables(record: dict) -> list[str]:
  name = record["model"]
  lines = [f"## {name}: {record['weights']}; {record['param_count']:,} parameters", "",
           f"Inputs: {record['inputs']}, {record['input_dtype']} "
           f"{tuple(record['input_shape'])}.", ""]
  batch_keys = list(record.get("throughput", {}))
  b_max = max(batch_keys, key=int) if batch_keys else None
  header = (["system"] + [f"rows/s @{b}" for b in batch_keys]
            + [f"port ÷ it @{b}" for b in batch_keys]
            + ["GFLOP/s (% peak)", "batch-1 ms: median / p99", "port ÷ it, batch 1",
               "set-up s", "first call s", "peak RSS MB (after import)", "max abs diff"])
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  latency = record.get("latency", {})
  for system, entry in record["systems"].items():
    if entry.get("status") != "ok":
      lines.append(f"| {system} | {entry.get('status')} |" + " |" * (len(header) - 2))
      continue
    cells = [system]
    for b in batch_keys:
      s = record["throughput"][b]["systems"][system]
      cells.append(f"{s['rows_per_s']:,.0f} ({s['rows_per_s_min']:,.0f}–"
                   f"{s['rows_per_s_max']:,.0f})")
    for b in batch_keys:
      ratio = record["throughput"][b]["port_speedup"].get(HEADLINE_PORT, {}).get(system)
      cells.append("—" if ratio is None else f"{ratio:.2f}")
    s = record["throughput"][b_max]["systems"][system]
    cells.append(f"{s['gflops']:.1f} ({s['peak_fraction']:.0%})")
    lat = latency.get("systems", {}).get(system)
    cells.append("—" if lat is None else f"{lat['median_ms']:.3f} / {lat['p99_ms']:.3f}")
    ratio = latency.get("port_speedup", {}).get(HEADLINE_PORT, {}).get(system)
    cells.append("—" if ratio is None else f"{ratio:.2f}")
    cells += [_fmt(entry.get("setup_s"), ".2f"), _fmt(entry.get("first_call_s"), ".2f")]
    memory = entry.get("memory")
    if memory is None:
      cells.append("—")
    elif "error" in memory:
      cells.append("error")
    else:
      cells.append(f"{memory['peak_rss_mb']:,.0f} (+{memory['peak_minus_import_mb']:,.0f})")
    cells.append(_fmt(entry["agreement"]["max_abs_diff"], ".1e"))
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  if "port_jit" in record["systems"] and batch_keys:
    ratios = record["throughput"][b_max]["port_speedup"].get("port_jit", {})
    if ratios:
      lines += ["`port_jit` ÷ peers @" + b_max + ": " + ", ".join(
          f"{k} {v:.2f}" for k, v in ratios.items()), ""]
  profile = record.get("layer_profile")
  if profile:
    lines += [f"Port, layer by layer (jitted prefixes, batch {profile['batch_size']}):", "",
              "| layer | class | MFLOP | ms | share | GFLOP/s |", "|---|---|---|---|---|---|"]
    for row in profile["layers"]:
      lines.append(f"| {row['layer']} | {row['class']} | {row['flops'] / 1e6:,.1f} | "
                   f"{row['ms']:.2f} | {row['share']:.0%} | {_fmt(row['gflops'], '.1f')} |")
    lines.append("")
  cold = record.get("cold_start")
  if cold and "error" not in cold:
    stage = lambda side: (f"{cold[side]['first_prediction_s']:.2f} s (import "
                          f"{cold[side]['import_s']:.2f}, load {cold[side]['load_s']:.2f}, "
                          f"predict {cold[side]['predict_s']:.2f}; exit done at "
                          f"{cold[side]['exit_s']:.2f})")
    lines += [f"Cold start, spawn to first prediction (median of {len(cold['port']['times_s'])} "
              f"interleaved rounds): port {stage('port')}; keras {stage('keras')}; keras ÷ port "
              f"{cold['keras_over_port']:.2f}", ""]
  elif cold:
    lines += [f"Cold start failed: {cold['error'][:200]}", ""]
  return lines


def chart(results: dict, path: str) -> None:
  """Per model: throughput at the largest batch and batch-1 latency, per system."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  records = [r for r in results["models"] if r.get("throughput")]
  fig, axes = plt.subplots(2, max(1, len(records)), figsize=(4.5 * max(1, len(records)), 8),
                           squeeze=False)
  for col, record in enumerate(records):
    b = max(record["throughput"], key=int)
    names = list(record["throughput"][b]["systems"])
    colors = ["tab:red" if n in PORT_SYSTEMS else "tab:gray" for n in names]
    rates = [record["throughput"][b]["systems"][n]["rows_per_s"] for n in names]
    errors = [[r - record["throughput"][b]["systems"][n]["rows_per_s_min"] for n, r in
               zip(names, rates)],
              [record["throughput"][b]["systems"][n]["rows_per_s_max"] - r for n, r in
               zip(names, rates)]]
    ax = axes[0][col]
    ax.bar(names, rates, color=colors, yerr=errors, capsize=3)
    ax.set_title(f"{record['model']}: throughput @ batch {b}")
    ax.set_ylabel("rows / s (median; bars: min–max)")
    ax.tick_params(axis="x", rotation=60)
    ax = axes[1][col]
    lat = record.get("latency", {}).get("systems", {})
    ax.bar(list(lat), [v["median_ms"] for v in lat.values()],
           color=["tab:red" if n in PORT_SYSTEMS else "tab:gray" for n in lat])
    ax.set_yscale("log")
    ax.set_title(f"{record['model']}: batch-1 latency")
    ax.set_ylabel("ms (median, log scale)")
    ax.tick_params(axis="x", rotation=60)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --------------------------------------------------------------------- run
def _cpu_model() -> str:
  with contextlib.suppress(OSError):
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


def _load_average() -> str:
  return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _versions() -> dict[str, str]:
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  out = {"python": platform.python_version()}
  for package in ("jax", "jaxlib", "tensorflow", "keras", "onnxruntime", "tf2onnx", "tf2jax",
                  "numpy"):
    with contextlib.suppress(metadata.PackageNotFoundError):
      out[package] = metadata.version(package)
  return out


def run(settings: Settings, command: str = "") -> dict:
  """Runs the whole benchmark; returns the results dict (JSON-able)."""
  unknown = set(settings.models) - set(MODELS)
  if unknown:
    raise ValueError(f"unknown models {sorted(unknown)}; valid: {', '.join(MODELS)}")
  unknown = set(settings.systems) - set(SYSTEMS)
  if unknown:
    raise ValueError(f"unknown systems {sorted(unknown)}; valid: {', '.join(SYSTEMS)}")
  if not settings.batch_sizes or min(settings.batch_sizes) < 1:
    raise ValueError(f"batch sizes must be positive, got {settings.batch_sizes}")
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)  # tf2jax logs every converted function
  jax = _jax()
  data_dir = settings.data_dir or os.environ.get("JAXNETS_DATA_DIR") or None
  if data_dir and not os.path.isabs(data_dir):
    data_dir = os.path.join(REPO_ROOT, data_dir) if not os.path.isdir(data_dir) else data_dir
  settings = dataclasses.replace(settings, data_dir=data_dir)
  results = {"environment": {
      "command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "load_before": _load_average(),
      "jax_devices": [str(d) for d in jax.devices()], "versions": _versions(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "data_dir": data_dir},
      "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "log"}}
  settings.log("measuring the float32 matmul peak ...")
  results["matmul_peak_before"] = matmul_peak(settings.tiny)
  results["models"] = []
  with tempfile.TemporaryDirectory(prefix="jaxnets-bench-") as workspace:
    for name in settings.models:
      results["models"].append(bench_model(name, settings, workspace,
                                           results["matmul_peak_before"]["size"]))
  results["matmul_peak_after"] = matmul_peak(settings.tiny)
  results["targets"] = [t for r in results["models"] for t in evaluate_targets(r)]
  results["environment"]["load_after"] = _load_average()
  return results


def _json_default(value):
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  return str(value)


def main(argv) -> None:
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
  from flags import common  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = absl_flags.FLAGS
  settings = Settings(
      models=tuple(dict.fromkeys(f.models)), batch_sizes=tuple(int(b) for b in f.batch_sizes),
      systems=tuple(dict.fromkeys(f.systems)), repeats=f.repeats,
      latency_repeats=f.latency_repeats, num_inputs=f.num_inputs, max_batches=f.max_batches,
      workdir=common.WORKDIR.value if f["workdir"].present else None,
      data_dir=common.DATA_DIR.value, seed=common.SEED.value, memory=f.memory,
      cold_start=f.cold_start, cold_start_repeats=f.cold_start_repeats,
      layer_profile=f.layer_profile, tiny=f.tiny)
  command = "python -m port.bench " + " ".join(sys.argv[1:])
  try:
    results = run(settings, command)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  text = markdown(results)
  print(text, flush=True)
  if f.json_out:
    with open(f.json_out, "w", encoding="utf-8") as out:
      json.dump({**results, "markdown": text}, out, indent=1, default=_json_default)
  if f.chart_out:
    chart(results, f.chart_out)


def define_flags() -> None:
  """The CLI's flags (defined only when run as a program, so importing this
  module in tests defines none)."""
  from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
  from flags import common  # pylint: disable=import-outside-toplevel,unused-import
  absl_flags.DEFINE_list("models", list(MODELS), f"Models to time, from {', '.join(MODELS)}.")
  absl_flags.DEFINE_list("batch_sizes", ["1", "32", "256"], "Batch sizes for throughput.")
  absl_flags.DEFINE_list("systems", list(SYSTEMS), f"Systems to time, from {', '.join(SYSTEMS)}.")
  absl_flags.DEFINE_integer("repeats", 7, "Timed interleaved rounds per batch size.",
                            lower_bound=1)
  absl_flags.DEFINE_integer("latency_repeats", 101, "Timed rounds for batch-1 latency.",
                            lower_bound=1)
  absl_flags.DEFINE_integer("num_inputs", 4096, "Rows per model (the test set repeated "
                            "or cut to this).", lower_bound=1)
  absl_flags.DEFINE_integer("max_batches", 32, "At most this many batches per timed pass "
                            "(rows = min(num_inputs, batch_size * max_batches)).", lower_bound=1)
  absl_flags.DEFINE_bool("memory", True, "Measure peak memory (one fresh process per system).")
  absl_flags.DEFINE_bool("cold_start", True, "Measure cold start (fresh processes).")
  absl_flags.DEFINE_integer("cold_start_repeats", 3, "Timed cold-start rounds.", lower_bound=1)
  absl_flags.DEFINE_bool("layer_profile", True, "Time the port layer by layer (jitted "
                         "prefixes of the model) at the largest batch size.")
  absl_flags.DEFINE_string("json_out", None, "Write every figure here as JSON.")
  absl_flags.DEFINE_string("chart_out", None, "Write a PNG chart here.")
  absl_flags.DEFINE_bool("tiny", False, "Shrunken models and matmul (for tests).")


if __name__ == "__main__":
  from absl import app as _app
  define_flags()
  _app.run(main)
