"""Measurements beside the interleaved systems: the float32 matmul peak, the
port layer by layer, and cold start (process start to first prediction)."""

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from bench import flops
from bench import frameworks
from bench import timing
from bench.systems import REPO_ROOT, Assets


def matmul(n: int) -> tuple[Callable[[], Any], int]:
  """A jitted float32 ``n x n`` matmul (blocking, compiled already) and its FLOP count."""
  jax = frameworks.jax()
  jnp = jax.numpy
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  product = jax.jit(jnp.matmul)
  product(a, b).block_until_ready()
  return (lambda: product(a, b).block_until_ready()), 2 * n**3


def matmul_peak(sizes: Sequence[int], repeats: int = 7) -> dict:
  """Median GFLOP/s of jitted float32 square matmuls; the best size is the peak."""
  result = {}
  for n in sizes:
    fn, flop_count = matmul(n)
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
  jax = frameworks.jax()
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
    repeats=repeats,
    warmup=1,
  )
  counts = flops.per_layer_total(model, x)
  rows, total = [], result["median"][len(layers)]
  for k, (name, cls, flop_count) in enumerate(counts, start=1):
    previous = result["times"].get(k - 1)
    deltas = [t - (previous[i] if previous else 0.0) for i, t in enumerate(result["times"][k])]
    seconds = statistics.median(deltas)
    rows.append(
      {
        "layer": name,
        "class": cls,
        "flops": flop_count,
        "ms": 1e3 * seconds,
        "share": seconds / total,
        "gflops": flop_count / seconds / 1e9 if seconds > 0 and flop_count else None,
      }
    )
  return rows


def cold_start(assets: Assets, x1_path: str, repeats: int) -> dict:
  """Fresh process to first prediction, port vs Keras, interleaved rounds.

  The clock runs from spawning the process until it has printed its first
  prediction (read by the parent); the process's own exit (interpreter and
  framework teardown) is recorded as ``exit_s`` but is not part of the figure.
  One warm-up round first fills the page cache.
  """
  scripts = {
    "port": (
      "import json, time; t0 = time.perf_counter()\n"
      "import numpy as np, jaxnets; t1 = time.perf_counter()\n"
      f"m = jaxnets.load({assets.port_dir!r}); t2 = time.perf_counter()\n"
      f"y = m.predict(np.load({x1_path!r})); t3 = time.perf_counter()\n"
      "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, "
      "'predict_s': t3 - t2, 'output': y.tolist()}), flush=True)\n"
    ),
    "keras": (
      "import json, time; t0 = time.perf_counter()\n"
      "import numpy as np, keras; t1 = time.perf_counter()\n"
      f"m = keras.saving.load_model({assets.keras_path!r}); t2 = time.perf_counter()\n"
      f"y = m.predict(np.load({x1_path!r}), verbose=0); t3 = time.perf_counter()\n"
      "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, "
      "'predict_s': t3 - t2, 'output': y.tolist()}), flush=True)\n"
    ),
  }
  env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
  runs = {name: [] for name in scripts}

  def launch(name):
    start = time.perf_counter()
    with subprocess.Popen(
      [sys.executable, "-c", scripts[name]],
      stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
      stderr=subprocess.PIPE,
      text=True,
      cwd=REPO_ROOT,
      env=env,
    ) as proc:
      line = proc.stdout.readline()
      first = time.perf_counter() - start
      _, err = proc.communicate()
      if proc.returncode or not line:
        raise RuntimeError(f"cold start ({name}) failed:\n{err[-2000:]}")
    runs[name].append(
      {**json.loads(line), "first_prediction_s": first, "exit_s": time.perf_counter() - start}
    )

  timing.interleaved({n: (lambda n=n: launch(n)) for n in scripts}, repeats=repeats, warmup=1)
  out = {}
  for name in scripts:
    timed = runs[name][-repeats:]
    out[name] = {
      "first_prediction_s": statistics.median(r["first_prediction_s"] for r in timed),
      "times_s": [r["first_prediction_s"] for r in timed],
      **{
        k: statistics.median(r[k] for r in timed)
        for k in ("import_s", "load_s", "predict_s", "exit_s")
      },
    }
  out["outputs_max_abs_diff"] = float(
    np.max(np.abs(np.asarray(runs["port"][-1]["output"]) - np.asarray(runs["keras"][-1]["output"])))
  )
  out["keras_over_port"] = statistics.median(
    k["first_prediction_s"] / p["first_prediction_s"]
    for p, k in zip(runs["port"][-repeats:], runs["keras"][-repeats:])
  )
  return out
