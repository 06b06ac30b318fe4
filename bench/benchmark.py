"""The jit inference benchmark: the port against every other way to run the model.

    python -m bench --models=cnn,lstm,rnn,mlp --batch_sizes=1,32,256 \\
        --json_out=bench.json --chart_out=bench.png
    python -m bench --models=cnn --systems=onnxruntime,port_predict --repeats=5
    python -m bench --workdir=runs      # trained models of `python -m train` instead

Models and inputs: ``bench/workloads.py``. Systems (``--systems``), all fed
the same rows:

- ``keras_predict``: ``keras_model.predict(x, batch_size)`` (TensorFlow backend);
- ``keras_call``: ``keras_model(batch, training=False)`` per pre-built batch;
- ``tf_xla``: that call under ``tf.function(jit_compile=True)``;
- ``keras_jax``: Keras 3 on the JAX backend, ``predict`` on the same saved
  ``.keras`` model, in a worker process that the parent drives batch by batch
  over a pipe, so it interleaves like the rest;
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

:func:`run` returns every figure as a JSON-able dict; ``bench/report.py``
turns it into markdown and a chart.
"""

import contextlib
import dataclasses
import datetime
from importlib import metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from absl import logging
import numpy as np

import port
from bench import flops
from bench import frameworks
from bench import measure
from bench import report
from bench import systems as systems_lib
from bench import timing
from bench import worker
from bench import workloads
from bench.settings import PORT_SYSTEMS, Settings

_MATMUL = "matmul_peak"  # timed in the throughput rounds beside the systems


def run(settings: Settings, command: str = "") -> dict:
  """Runs the whole benchmark; returns the results dict (JSON-able)."""
  logging.set_verbosity(logging.WARNING)  # tf2jax logs every converted function
  jax = frameworks.jax()
  data_dir = settings.data_dir or os.environ.get("JAXNETS_DATA_DIR") or None
  if data_dir and not os.path.isabs(data_dir) and not os.path.isdir(data_dir):
    data_dir = os.path.join(systems_lib.REPO_ROOT, data_dir)
  settings = dataclasses.replace(settings, data_dir=data_dir)
  results = {
    "environment": {
      "command": command,
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "cpu_model": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "load_before": _load_average(),
      "jax_devices": [str(d) for d in jax.devices()],
      "versions": _versions(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "data_dir": data_dir,
    },
    "settings": settings.record(),
  }
  settings.log("measuring the float32 matmul peak ...")
  results["matmul_peak_before"] = measure.matmul_peak(settings.matmul_sizes)
  results["models"] = []
  with tempfile.TemporaryDirectory(prefix="jaxnets-bench-") as workspace:
    for name in settings.models:
      results["models"].append(
        bench_model(name, settings, workspace, results["matmul_peak_before"]["size"])
      )
  results["matmul_peak_after"] = measure.matmul_peak(settings.matmul_sizes)
  results["targets"] = [t for r in results["models"] for t in report.evaluate_targets(r)]
  results["environment"]["load_after"] = _load_average()
  return results


def bench_model(name: str, settings: Settings, workspace: str, matmul_size: int) -> dict:
  """Every measurement for one model; returns its JSON record."""
  log = settings.log
  workload = workloads.build(name, settings)
  x_all = workload.x
  log(f"[{name}] {workload.weights}; inputs: {workload.inputs}, {x_all.shape} {x_all.dtype}")
  model_dir = os.path.join(workspace, name)
  assets, port_convert_s = _save_assets(name, workload.keras_model, model_dir)
  record = {
    "model": name,
    "weights": workload.weights,
    "inputs": workload.inputs,
    "input_shape": list(x_all.shape[1:]),
    "input_dtype": str(x_all.dtype),
    "num_inputs": len(x_all),
    "param_count": assets.port_model.param_count,
    "port_convert_s": port_convert_s,
    "systems": {},
  }
  record["flops_per_layer_full_length"] = [
    {"layer": n, "class": c, "flops": f}
    for n, c, f in flops.per_layer(assets.port_model, x_all.shape[1:])
  ]

  b_max = max(settings.batch_sizes)
  # Whole batches only (every pre-built batch has one shape), unless fewer rows
  # than one batch exist at all.
  rows_for = {}
  for b in settings.batch_sizes:
    rows = min(len(x_all), b * settings.max_batches)
    rows_for[b] = rows // b * b if rows >= b else rows
  systems = _set_up(
    settings,
    assets,
    x_all,
    x_all[: rows_for[b_max]],
    b_max,
    record["systems"],
    workspace,
    model_dir,
  )
  # Batch-1 latency: a row of median real length for text models.
  if flops.is_text(assets.port_model):
    lengths = flops.real_lengths(x_all)
    row = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
  else:
    row = 0
  x1 = x_all[row : row + 1]
  matmul = measure.matmul(matmul_size)
  try:
    record["throughput"] = {
      str(b): _throughput(
        name, settings, systems, assets.port_model, x_all[: rows_for[b]], b, matmul, matmul_size
      )
      for b in settings.batch_sizes
    }
    record["latency"] = _latency(name, settings, systems, assets.port_model, x1)
  finally:
    for system in systems.values():
      system.close()

  if settings.layer_profile and "port_jit" in systems:
    log(f"[{name}] per-layer profile of the port ...")
    record["layer_profile"] = {
      "batch_size": b_max,
      "layers": measure.layer_profile(assets.port_model, x_all[:b_max], settings.repeats),
    }
  if settings.memory:
    inputs_path = os.path.join(model_dir, "inputs.npy")
    np.save(inputs_path, x_all[: rows_for[b_max]])
    for n in systems:
      log(f"[{name}] peak memory of {n} (fresh process) ...")
      record["systems"][n]["memory"] = worker.measure_memory(n, assets, inputs_path, b_max)
  if settings.cold_start:
    x1_path = os.path.join(model_dir, "x1.npy")
    np.save(x1_path, x1)
    log(f"[{name}] cold start x {settings.cold_start_repeats} rounds ...")
    try:
      record["cold_start"] = measure.cold_start(assets, x1_path, settings.cold_start_repeats)
    except RuntimeError as e:
      record["cold_start"] = {"error": str(e)[-1000:]}
  return record


def _save_assets(name: str, keras_model, model_dir: str) -> tuple[systems_lib.Assets, float]:
  """The model saved as ``.keras`` and ported (timed) and saved as jaxnets."""
  os.makedirs(model_dir, exist_ok=True)
  assets = systems_lib.Assets(
    name,
    os.path.join(model_dir, "model.keras"),
    os.path.join(model_dir, "port"),
    keras_model=keras_model,
  )
  keras_model.save(assets.keras_path)
  start = time.perf_counter()
  assets.port_model = port.load(keras_model)
  port_convert_s = time.perf_counter() - start
  assets.port_model.save(assets.port_dir)
  return assets, port_convert_s


def _set_up(
  settings: Settings,
  assets: systems_lib.Assets,
  x_all: np.ndarray,
  x_check: np.ndarray,
  batch_size: int,
  entries: dict,
  workspace: str,
  model_dir: str,
) -> dict[str, systems_lib.System]:
  """Sets up every system, times its first call and checks it against Keras.

  Fills ``entries[system]`` (status, set-up and first-call seconds, agreement);
  returns the systems that work. A missing package or a failure is recorded,
  not raised.
  """
  log, name, keras_model = settings.log, assets.name, assets.keras_model
  expected = np.concatenate(
    [np.asarray(keras_model(b, training=False)) for b in systems_lib.batches(x_check, 256)]
  )
  # The parity rule's float64 reference (port.compare): every system's
  # distance from it is recorded beside its max abs diff from Keras.
  try:
    reference = port.comparison.run_keras(
      port.float64_reference(keras_model), port.comparison.to_float64(x_check)
    )[0]
  except ValueError as e:
    log(f"[{name}] no float64 reference: {e}")
    reference = None
  systems = {}
  for system_name in settings.systems:
    entry = entries.setdefault(system_name, {})
    missing = systems_lib.missing_packages(system_name)
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
      system = systems_lib.make_system(system_name, assets, workspace)
      start = time.perf_counter()
      system.setup()
      entry["setup_s"] = time.perf_counter() - start
      first = system.runner(x_check[:batch_size], batch_size)
      start = time.perf_counter()
      first()
      entry["first_call_s"] = time.perf_counter() - start
      entry["agreement"] = _agreement(system.outputs(x_check, batch_size), expected, reference)
      entry["status"] = "ok"
      systems[system_name] = system
      log(
        f"[{name}] {system_name}: set-up {entry['setup_s']:.2f} s, first call "
        f"{entry['first_call_s']:.2f} s, max abs diff {entry['agreement']['max_abs_diff']}"
      )
    except Exception as e:  # pylint: disable=broad-except
      entry["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
      log(f"[{name}] {system_name}: {entry['status']}")
      if system is not None:
        with contextlib.suppress(Exception):
          system.close()
  return systems


def _throughput(
  name: str,
  settings: Settings,
  systems: dict,
  port_model,
  x: np.ndarray,
  batch_size: int,
  matmul: tuple[Callable[[], Any], int],
  matmul_size: int,
) -> dict:
  """Interleaved throughput rounds at one batch size, the matmul peak among them.

  The matmul (``measure.matmul(matmul_size)``) is timed inside every round, so
  that "% of peak" compares the port with the hardware under the same load (a
  per-round ratio like the others), not with a peak measured minutes apart.
  """
  runners = {n: s.runner(x, batch_size) for n, s in systems.items()}
  runners[_MATMUL], matmul_flops = matmul
  settings.log(
    f"[{name}] throughput, batch {batch_size}: {len(x)} rows x {settings.repeats} rounds ..."
  )
  result = timing.interleaved(runners, repeats=settings.repeats, warmup=1)
  useful = flops.model_flops(port_model, x)
  per_system = {}
  for n in systems:
    stats = _stats(result["times"][n], len(x))
    stats["gflops"] = useful / stats["median_s"] / 1e9
    stats["peak_fraction"] = statistics.median(
      (useful / t) / (matmul_flops / t_mm)
      for t, t_mm in zip(result["times"][n], result["times"][_MATMUL])
    )
    per_system[n] = stats
  return {
    "rows": len(x),
    "flops": useful,
    "systems": per_system,
    "matmul": {
      "size": matmul_size,
      "times_s": result["times"][_MATMUL],
      "gflops": matmul_flops / result["median"][_MATMUL] / 1e9,
    },
    "port_speedup": _ratios(result, list(systems)),
  }


def _latency(name: str, settings: Settings, systems: dict, port_model, x1: np.ndarray) -> dict:
  """Interleaved batch-1 calls on the row ``x1``."""
  settings.log(f"[{name}] batch-1 latency x {settings.latency_repeats} rounds ...")
  runners = {n: s.runner(x1, 1) for n, s in systems.items()}
  result = timing.interleaved(runners, repeats=settings.latency_repeats, warmup=3)
  return {
    "row_real_length": (int(flops.real_lengths(x1)[0]) if flops.is_text(port_model) else None),
    "systems": {
      n: {
        "median_ms": 1e3 * result["median"][n],
        "p99_ms": 1e3 * float(np.percentile(result["times"][n], 99)),
        "min_ms": 1e3 * result["min"][n],
        "times_s": result["times"][n],
      }
      for n in systems
    },
    "port_speedup": _ratios(result, list(systems)),
  }


def _agreement(got, expected, reference) -> dict:
  """A system's outputs judged by the parity rule (``port.comparison.judge``):
  max abs diff from Keras, both float32 distances from the float64 reference,
  the bound and whether the system is within it."""
  got = np.asarray(got)
  if got.shape != expected.shape:
    return {"max_abs_diff": None, "argmax_equal": None, "error": f"shape {got.shape}"}
  comparison = port.comparison.judge(got, expected, reference)
  return {
    "max_abs_diff": comparison.max_abs_diff,
    "argmax_equal": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
    "system_f64_error": comparison.port_error,
    "keras_f64_error": comparison.keras_error,
    "bound": comparison.bound,
    "within_rule": comparison.ok,
  }


def _stats(times: list[float], rows: int) -> dict:
  median = statistics.median(times)
  return {
    "times_s": times,
    "median_s": median,
    "min_s": min(times),
    "max_s": max(times),
    "rows": rows,
    "rows_per_s": rows / median,
    "rows_per_s_min": rows / max(times),
    "rows_per_s_max": rows / min(times),
  }


def _ratios(result: dict, names: list[str]) -> dict:
  """``{port: {peer: median per-round t_peer / t_port}}`` (> 1: port faster)."""
  return {
    p: {q: result["ratio"][(p, q)] for q in names if q != p} for p in PORT_SYSTEMS if p in names
  }


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
  out = {"python": platform.python_version()}
  for package in (
    "jax",
    "jaxlib",
    "tensorflow",
    "keras",
    "onnxruntime",
    "tf2onnx",
    "tf2jax",
    "numpy",
  ):
    with contextlib.suppress(metadata.PackageNotFoundError):
      out[package] = metadata.version(package)
  return out
