"""Quick speed check: the port vs Keras, in one process, timed interleaved.

    python -m port.speedcheck                                  # random inputs
    python -m port.speedcheck --data_dir ../shared/data        # real CIFAR-10/MNIST test images
    python -m port.speedcheck --models cnn --rows 2000 --repeats 3

Builds the spec's CNN (Conv 32-64-128, 3x3, same, ReLU, each followed by
max-pool 2; Flatten, Dense 128 ReLU, Dropout, Dense 10 softmax) on 32x32x3
inputs and the MNIST MLP (784-256-128-10), gives them seeded random weights,
ports them with ``port.load`` and measures, A B A B ... after warm-up
(``port.timing.interleaved``):

- throughput: ``keras_model.predict(x, batch_size)`` vs
  ``port.load(keras_model).predict(x, batch_size)`` on ``--rows`` inputs;
- batch-1 latency: ``keras_model.predict`` on one row vs the port's
  ``predict`` on one row and its jitted ``model(x1)`` (``block_until_ready``);
  Keras's direct ``keras_model(x1)`` call is shown too, for context.

Reported ratios are medians of per-round ratios (``> 1``: the port is faster).
The full benchmark command (more systems, GPU) belongs to a later issue; this
is the check that the port meets its targets: >= 1.5x Keras's throughput and
>= 100x lower batch-1 latency than ``keras_model.predict``.
"""

import os
import pathlib
import resource
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
from absl import app  # pylint: disable=wrong-import-position
from absl import flags as absl_flags  # pylint: disable=wrong-import-position

from flags import common as common_flags  # pylint: disable=wrong-import-position
from port import bench  # pylint: disable=wrong-import-position

_MODELS = absl_flags.DEFINE_multi_enum(
    "models", ["cnn", "mlp"], ["cnn", "mlp"], "Models to time (repeat the flag for several).")
_ROWS = absl_flags.DEFINE_integer("rows", 10_000, "Inputs per throughput run.", lower_bound=1)
_BATCH_SIZE = absl_flags.DEFINE_integer("batch_size", 256, "predict batch size.", lower_bound=1)
_REPEATS = absl_flags.DEFINE_integer(
    "repeats", 5, "Interleaved rounds for throughput.", lower_bound=1)
_LATENCY_REPEATS = absl_flags.DEFINE_integer(
    "latency_repeats", 15, "Interleaved rounds of batch-1 call bursts.", lower_bound=1)

# Back-to-back calls per timed batch-1 burst (see ``_latency``).
KERAS_BURST = 3
PORT_BURST = 20

TARGET_THROUGHPUT = 1.5
TARGET_LATENCY = 100.0


def build_cnn(seed: int):
  """The spec's CIFAR-10 CNN with seeded random weights (Keras model)."""
  import keras  # pylint: disable=import-outside-toplevel
  layers = keras.layers
  model = keras.Sequential([keras.Input((32, 32, 3))], name="spec_cnn")
  for filters in (32, 64, 128):
    model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
    model.add(layers.MaxPooling2D(2))
  for layer in (layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
                layers.Dense(10, activation="softmax")):
    model.add(layer)
  bench.randomize_weights(model, seed)
  return model


def build_mlp(seed: int):
  """The MNIST MLP (784-256-128-10, ReLU, Dropout 0.3) with seeded random weights."""
  import keras  # pylint: disable=import-outside-toplevel
  layers = keras.layers
  model = keras.Sequential([
      keras.Input((784,)), layers.Dense(256, activation="relu"), layers.Dropout(0.3),
      layers.Dense(128, activation="relu"), layers.Dropout(0.3),
      layers.Dense(10, activation="softmax")], name="mnist_mlp")
  bench.randomize_weights(model, seed)
  return model


def inputs(name: str, rows: int, seed: int, data_dir: str | None) -> tuple[np.ndarray, str]:
  """``rows`` inputs for ``name``: real test images when a data directory is known."""
  data_dir = data_dir or os.environ.get("JAXNETS_DATA_DIR")
  filename = {"cnn": "cifar10.npz", "mlp": "mnist.npz"}[name]
  if data_dir and (pathlib.Path(data_dir) / filename).is_file():
    with np.load(pathlib.Path(data_dir) / filename) as d:
      x = d["x_test"].astype(np.float32) / 255.0
    x = np.resize(x, (rows,) + x.shape[1:])  # repeats the test set if rows > 10,000
    source = f"{filename} x_test"
  else:
    shape = (32, 32, 3) if name == "cnn" else (28, 28)
    x = np.random.default_rng(seed).uniform(size=(rows,) + shape).astype(np.float32)
    source = "uniform random"
  if name == "mlp":
    x = x.reshape(rows, 784)
  return x, source


def check(keras_model, x: np.ndarray, *, batch_size: int, repeats: int,
          latency_repeats: int) -> dict:
  """Times Keras and the port on ``x``; returns the timings and median ratios."""
  import jax  # pylint: disable=import-outside-toplevel
  import port  # pylint: disable=import-outside-toplevel
  from port import timing  # pylint: disable=import-outside-toplevel

  model = port.load(keras_model)
  expected = keras_model.predict(x, batch_size=batch_size, verbose=0)
  got = model.predict(x, batch_size=batch_size)
  agreement = {"max_abs_diff": float(np.max(np.abs(got - expected))),
               "argmax_equal": float(np.mean(got.argmax(-1) == expected.argmax(-1)))}

  cpu_seconds = {"keras.predict": [], "port.predict": []}

  def with_cpu_time(name, fn):
    # Process CPU time (all threads) per run: how much work each system does,
    # whatever share of the cores the other processes on the machine leave it.
    def run():
      start = _cpu_time()
      fn()
      cpu_seconds[name].append(_cpu_time() - start)
    return run

  throughput = timing.interleaved({
      "keras.predict": with_cpu_time(
          "keras.predict", lambda: keras_model.predict(x, batch_size=batch_size, verbose=0)),
      "port.predict": with_cpu_time(
          "port.predict", lambda: model.predict(x, batch_size=batch_size)),
  }, repeats=repeats, warmup=1)
  throughput["cpu_seconds"] = {name: statistics.median(t[-repeats:])
                               for name, t in cpu_seconds.items()}

  x1 = x[:1]
  x1_device = jax.device_put(x1)
  latency = _latency({
      "keras.predict": (lambda: keras_model.predict(x1, verbose=0), KERAS_BURST),
      "keras(x1)": (lambda: np.asarray(keras_model(x1, training=False)), KERAS_BURST),
      "port.predict": (lambda: model.predict(x1), PORT_BURST),
      "port(x1)": (lambda: model(x1_device).block_until_ready(), PORT_BURST),
  }, repeats=latency_repeats)
  return {"agreement": agreement, "throughput": throughput, "latency": latency,
          "rows": len(x), "batch_size": batch_size}


def _latency(systems: dict, repeats: int) -> dict:
  """Per-call batch-1 latency, timed as interleaved bursts of back-to-back calls.

  A single call timed right after another system's pays for that system's
  leftovers (TensorFlow's worker threads keep spinning for milliseconds after
  its work, taking the CPU from whatever runs next). Bursts of ``n`` calls
  spread that cost over ``n`` calls, as in a serving loop; bursts of the
  systems still alternate, so slow drifts in machine load hit all of them.
  """
  from port import timing  # pylint: disable=import-outside-toplevel

  def burst(fn, n):
    def run():
      for _ in range(n):
        fn()
    return run

  raw = timing.interleaved({name: burst(fn, n) for name, (fn, n) in systems.items()},
                           repeats=repeats, warmup=1)
  times = {name: [t / systems[name][1] for t in raw["times"][name]] for name in systems}
  return {"times": times,
          "median": {name: statistics.median(t) for name, t in times.items()},
          "ratio": {(a, b): statistics.median(tb / ta for ta, tb in zip(times[a], times[b]))
                    for a in systems for b in systems if a != b}}


def report(name: str, source: str, result: dict) -> list[str]:
  """Prints one model's results; returns the targets it missed."""
  rows, thr, lat = result["rows"], result["throughput"], result["latency"]
  agreement = result["agreement"]
  print(f"\n== {name}: {rows} inputs ({source}) ==")
  print(f"agreement: max abs diff {agreement['max_abs_diff']:.2e}, "
        f"argmax equal {agreement['argmax_equal']:.2%}")
  print(f"throughput (batch_size={result['batch_size']}):")
  for system, seconds in thr["median"].items():
    print(f"  {system:14s} median {seconds:8.3f} s  {rows / seconds:10.0f} rows/s  "
          f"(CPU time {thr['cpu_seconds'][system]:.3f} s)")
  speedup = thr["ratio"][("port.predict", "keras.predict")]
  print(f"  port / keras throughput, median of per-round ratios: {speedup:.2f}x "
        f"(target >= {TARGET_THROUGHPUT}x)")
  print("batch-1 latency (per call, from interleaved bursts of back-to-back calls):")
  for system, seconds in lat["median"].items():
    print(f"  {system:14s} median {seconds * 1e3:9.3f} ms")
  missed = []
  for port_system in ("port.predict", "port(x1)"):
    ratio = lat["ratio"][(port_system, "keras.predict")]
    print(f"  keras.predict / {port_system}: {ratio:8.1f}x (target >= {TARGET_LATENCY:.0f}x)")
    if ratio < TARGET_LATENCY:
      missed.append(f"{name}: batch-1 latency of {port_system} only {ratio:.1f}x lower")
  ratio = lat["ratio"][("port(x1)", "keras(x1)")]
  print(f"  keras(x1) / port(x1): {ratio:8.1f}x (context: Keras's direct call)")
  if speedup < TARGET_THROUGHPUT:
    missed.append(f"{name}: throughput only {speedup:.2f}x Keras's")
  return missed


def _cpu_time() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _load() -> str:
  return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import jax  # pylint: disable=import-outside-toplevel
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
        f"load average {_load()} (other processes slow both systems, the port's two "
        "XLA threads most)")
  builders = {"cnn": build_cnn, "mlp": build_mlp}
  missed = []
  for name in dict.fromkeys(_MODELS.value):
    keras_model = builders[name](common_flags.SEED.value)
    x, source = inputs(name, _ROWS.value, common_flags.SEED.value, common_flags.DATA_DIR.value)
    result = check(keras_model, x, batch_size=_BATCH_SIZE.value, repeats=_REPEATS.value,
                   latency_repeats=_LATENCY_REPEATS.value)
    missed += report(name, source, result)
  print(f"\nload average at the end: {_load()}")
  print("\nall targets met" if not missed else "\ntargets missed:\n  " + "\n  ".join(missed))
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
