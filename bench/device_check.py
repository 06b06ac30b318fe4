"""``python -m bench --preset=device_check``: does the port run right, and fast, on this machine?

One command, at most 10 minutes on one GPU, for the GPU a user actually has (a Colab runtime):

    python -m bench --preset=device_check                 # report under results/bench/
    python -m bench --preset=device_check --require_gpu   # exit 1 at once without a GPU

It writes a JSON report ``{"backend", "devices", "versions", "precision", "checks": [...]}`` and a
short markdown file beside it. Each check is ``{"name", "passed", "status", "figure", "figure_is",
"note", "details", "seconds"}``: ``status`` is ``passed``, ``failed`` or ``skipped`` (``passed``
is then ``null``), ``figure`` the check's one headline number, ``figure_is`` what that number is,
``details`` every figure behind it. Checks:

- ``cuda_lowering``: the spec CNN, 2xBiLSTM text model and MLP lowered for CUDA hold no CPU-only
  construct or CPU-measured speed choice (``bench/cuda_lowering.py``; ``jax.export`` lowers for
  CUDA on any machine).
- ``cnn_parity``, ``lstm_parity``, ``mlp_parity``: the port against Keras on this backend through
  ``port.compare`` at batches 1, 7 and 256 (``bench/workloads.py``'s models with seeded random
  weights; the text rows are masked token ids of varied real lengths, an empty and a full one
  among them).
- ``cross_backend``: the port on this backend against the port on the CPU (skipped on a CPU).
- ``runner_smoke``: the LSTM direction study on 200 rows for 1 epoch through ``train.runner``, in
  a temporary work directory: its port check passes.
- ``inference_speed``: port vs Keras ``predict`` at batch 1 and 256 (interleaved timing,
  ``bench/timing.py``), with the jitted pass on inputs already on the device and the
  host-to-device copy timed separately; passes when the port's ``predict`` is faster everywhere.
- ``train_speed``: one epoch of the JAX trainer vs Keras ``fit`` (``bench/train_speed.py``) with
  both sides at the same float32 precision (the device policy's ``parity`` mode), with the
  accelerator memory peaks where the backend reports them; passes when the precisions match and
  both trained.

On a machine without a GPU every check that needs none runs, at smaller sizes (about 2 minutes
on 2 CPU cores), ``cross_backend`` is skipped, and the command exits 0 when nothing failed.
``--require_gpu`` stops first, with one line and exit status 1, when JAX's backend is not a GPU.
Checks that read a dataset (``runner_smoke``, ``train_speed``) are skipped when it is not on this
machine (``--data_dir``, ``JAXNETS_DATA_DIR`` or the download cache): a check never downloads.
"""

import dataclasses
import json
import os
import pathlib
import platform
import re
import resource
import sys
import tempfile
import time
import traceback
from importlib import metadata
from typing import Any, Callable

import jax
import numpy as np

import port
from bench import cuda_lowering
from bench import frameworks
from bench import report as report_lib
from bench import settings as settings_lib
from bench import timing
from bench import train_speed
from bench import workloads
from jaxnets import device_policy
from train import data
from train import runner

CHECKS = (
  "cuda_lowering",
  "cnn_parity",
  "lstm_parity",
  "mlp_parity",
  "cross_backend",
  "runner_smoke",
  "inference_speed",
  "train_speed",
)
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
PARITY_MODELS = ("cnn", "lstm", "mlp")
PARITY_BATCHES = (1, 7, 256)
SPEED_BATCHES = (1, 256)
DEFAULT_DIR = os.path.join("results", "bench")
VERSIONED = ("jax", "jaxlib", "tensorflow", "keras", "numpy", "optax", "flax")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How much the size-dependent checks run.

  Attributes:
    speed_rows: rows timed per model at each of ``SPEED_BATCHES``.
    speed_repeats: interleaved timed rounds per model and batch size.
    train_models: the families whose one-epoch training is timed.
    train_rows: training rows per timed epoch.
    train_repeats: timed epochs per trainer (after one warm-up epoch each).
  """

  speed_rows: dict
  speed_repeats: int
  train_models: tuple[str, ...]
  train_rows: int
  train_repeats: int


# Sized to about 10 minutes on one GPU, and about 2 minutes on 2 CPU cores.
GPU_SIZES = Sizes({1: 128, 256: 4096}, 5, ("cnn", "lstm", "mlp"), 4096, 3)
CPU_SIZES = Sizes({1: 16, 256: 256}, 3, ("mlp", "lstm"), 256, 1)
RUNNER_ROWS = 200


@dataclasses.dataclass(frozen=True)
class Check:
  """One check's outcome, as the report writes it."""

  name: str
  status: str  # PASSED, FAILED or SKIPPED
  figure: float | None
  figure_is: str
  note: str
  details: dict = dataclasses.field(default_factory=dict)
  seconds: float | None = None

  def record(self) -> dict:
    passed = None if self.status == SKIPPED else self.status == PASSED
    return {"passed": passed, **dataclasses.asdict(self)}


def _outcome(passed: bool) -> str:
  return PASSED if passed else FAILED


def skipped(name: str, why: str) -> Check:
  return Check(name, SKIPPED, None, "", f"skipped: {why}")


@dataclasses.dataclass(frozen=True)
class Subject:
  """A benchmark model (``bench/workloads.py``) ready to check: Keras on numeric input, its
  port, 256 rows, and where weights and rows came from, in words."""

  keras_model: Any
  ported: Any
  x: np.ndarray
  source: str


class Context:
  """What the checks share: the backend, the sizes, the data found, the built models."""

  def __init__(self, data_dir: str | None, seed: int, log: Callable[[str], None]):
    self.backend = jax.default_backend()
    self.on_gpu = self.backend == "gpu"
    self.sizes = GPU_SIZES if self.on_gpu else CPU_SIZES
    self.data_dir = data.resolve_data_dir(data_dir)
    self.seed = seed
    self.log = log
    self._subjects: dict[str, Subject] = {}

  def subject(self, name: str) -> Subject:
    """Benchmark model ``name`` with seeded random weights, built once."""
    if name not in self._subjects:
      settings = settings_lib.Settings(
        models=(name,),
        num_inputs=max(PARITY_BATCHES),
        data_dir=None if self.data_dir is None else str(self.data_dir),
        seed=self.seed,
        log=self.log,
      )
      built = workloads.build(name, settings)
      ported = port.load(built.keras_model)
      source = f"{built.inputs}; {built.weights} weights"
      self._subjects[name] = Subject(built.keras_model, ported, built.x, source)
    return self._subjects[name]

  def local_data(self, *files: str) -> str | None:
    """The folder holding ``files`` on this machine (the data directory, else the loaders'
    download cache), or None: checks never download."""
    roots = ([self.data_dir] if self.data_dir else []) + [data.cache_dir()]
    for root in roots:
      if all((pathlib.Path(root) / f).is_file() for f in files):
        return str(root)
    return None


# ------------------------------------------------------------------ the checks


def check_cuda_lowering(ctx: Context) -> Check:
  del ctx
  checks = cuda_lowering.run()
  bad = sum(len(c.cpu_only) for c in checks)
  passed = all(c.passed for c in checks)
  note = "; ".join(f"{c.name}: {c.note}" for c in checks)
  details = {c.name: dataclasses.asdict(c) for c in checks}
  what = "CPU-only custom calls and CPU-measured choices"
  return Check("cuda_lowering", _outcome(passed), bad, what, note, details)


def varied_lengths(x: np.ndarray, seed: int) -> np.ndarray:
  """Token-id rows with, besides their own lengths, an empty row (index 2) and a full one
  (index 3): masks from nothing to everything, inside the batches of 7 and 256."""
  x = np.array(x)
  x[2] = 0
  x[3] = np.random.default_rng(seed).integers(2, max(3, int(x.max())), x.shape[1])
  return x


def _real_lengths(x: np.ndarray) -> np.ndarray:
  return (x != 0).sum(axis=1)


def check_parity(ctx: Context, name: str) -> Check:
  subject = ctx.subject(name)
  x = varied_lengths(subject.x, ctx.seed) if name == "lstm" else subject.x
  comparisons = {
    b: port.compare(subject.keras_model, subject.ported, x[:b], batch_size=b)
    for b in PARITY_BATCHES
  }
  passed = all(c.ok for c in comparisons.values())
  figure = max(c.max_abs_diff for c in comparisons.values())
  parts = [
    f"batch {b}: {c.max_abs_diff:.2g} (port {c.port_error:.2g} from float64, bound "
    f"{c.bound:.2g}, argmax {c.argmax_agreement:.0%})"
    if c.port_error is not None
    else f"batch {b}: {c.verdict()}"
    for b, c in comparisons.items()
  ]
  rows = subject.source
  if name == "lstm":
    lengths = _real_lengths(x)
    rows += f"; real lengths {lengths.min()}..{lengths.max()} of {x.shape[1]}"
  failed = [c.verdict() for c in comparisons.values() if not c.ok]
  note = "; ".join(parts + [rows] + failed)
  details = {str(b): c.as_dict() for b, c in comparisons.items()}
  return Check(f"{name}_parity", _outcome(passed), figure, "max abs diff from Keras", note, details)


def check_cross_backend(ctx: Context) -> Check:
  if not ctx.on_gpu:
    return skipped("cross_backend", f"the backend is {ctx.backend}: nothing to compare with")
  cpu = jax.devices("cpu")[0]
  diffs, notes, passed = {}, [], True
  for name in PARITY_MODELS:
    ported, x = ctx.subject(name).ported, ctx.subject(name).x
    apply = jax.jit(ported.apply)
    here = np.asarray(apply(ported.params, x))
    on_cpu = np.asarray(apply(jax.device_put(ported.params, cpu), jax.device_put(x, cpu)))
    diff = float(np.max(np.abs(here - on_cpu)))
    same_class = float(np.mean(here.argmax(-1) == on_cpu.argmax(-1)))
    ok = diff <= port.comparison.HEADLINE_ATOL * max(1.0, float(np.max(np.abs(on_cpu))))
    passed = passed and ok
    diffs[name] = {"max_abs_diff": diff, "argmax_agreement": same_class, "rows": len(x)}
    notes.append(f"{name}: {diff:.2g} on {len(x)} rows, argmax {same_class:.0%}")
  figure = max(d["max_abs_diff"] for d in diffs.values())
  note = f"{ctx.backend} vs cpu, jit(apply): " + "; ".join(notes)
  return Check(
    "cross_backend", _outcome(passed), figure, "max abs diff, port here vs CPU", note, diffs
  )


def check_runner_smoke(ctx: Context) -> Check:
  files = [os.path.join(data.NUSAX_DIR, "indonesian", f"{s}.csv") for s in data.NUSAX_SPLITS]
  root = ctx.local_data(*files)
  if root is None:
    return skipped("runner_smoke", "NusaX-Senti is not on this machine (--data_dir)")
  settings = runner.Settings(
    seeds=1,
    epochs=1,
    max_train_rows=RUNNER_ROWS,
    max_test_rows=RUNNER_ROWS,
    data_dir=root,
    verbose=0,
    timing_repeats=1,
  )
  lines: list[str] = []
  with tempfile.TemporaryDirectory(prefix="device_check_") as workdir:
    try:
      [output] = runner.run("lstm", "direction", workdir, settings, log=lines.append)
    except runner.PortMismatchError as e:
      return Check("runner_smoke", FAILED, None, "", f"port check failed: {e}")
    rows = output.rows
  figure = max(float(r["max_abs_diff_max"]) for r in rows)
  agreement = min(float(r["agreement_pct_min"]) for r in rows)
  passed = agreement == 100.0
  note = (
    f"lstm/direction, {len(rows)} variants, {RUNNER_ROWS} rows, 1 epoch: agreement "
    f"{agreement:g} %, max abs diff {figure:.2g}, macro F1 "
    + ", ".join(f"{r['variant']} {float(r['macro_f1_mean']):.3f}" for r in rows)
  )
  details = {"rows": [dict(r) for r in rows]}
  return Check("runner_smoke", _outcome(passed), figure, "max abs diff from Keras", note, details)


def _speed_systems(keras_model, ported, x: np.ndarray, batch_size: int) -> dict:
  """The timed callables: Keras and the port's ``predict`` from host numpy, the jitted pass on
  batches already on the device, and the host-to-device copy of those batches alone."""
  batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
  on_device = jax.block_until_ready([jax.device_put(b) for b in batches])
  apply = jax.jit(ported.apply)
  params = ported.params
  return {
    "keras_predict": lambda: keras_model.predict(x, batch_size=batch_size, verbose=0),
    "port_predict": lambda: ported.predict(x, batch_size=batch_size),
    "port_on_device": lambda: jax.block_until_ready([apply(params, b) for b in on_device]),
    "host_to_device": lambda: jax.block_until_ready([jax.device_put(b) for b in batches]),
  }


def _time_model(ctx: Context, name: str) -> dict:
  subject = ctx.subject(name)
  out = {}
  for b in SPEED_BATCHES:
    rows = np.resize(subject.x, (ctx.sizes.speed_rows[b],) + subject.x.shape[1:])
    times = timing.interleaved(
      _speed_systems(subject.keras_model, subject.ported, rows, b),
      repeats=ctx.sizes.speed_repeats,
      warmup=1,
    )
    out[str(b)] = {
      "rows": len(rows),
      "median_s": times["median"],
      "port_over_keras": times["ratio"][("port_predict", "keras_predict")],
    }
  return out


def check_inference_speed(ctx: Context) -> Check:
  measured = {name: _time_model(ctx, name) for name in PARITY_MODELS}
  ratios = [m["port_over_keras"] for per in measured.values() for m in per.values()]
  figure = min(ratios)
  notes = []
  for name, per in measured.items():
    for b, m in per.items():
      med = m["median_s"]
      notes.append(
        f"{name} b{b} ({m['rows']} rows): port {m['port_over_keras']:.2f}x Keras, "
        f"on-device pass {med['port_on_device'] * 1e3:.3g} ms + copy-in "
        f"{med['host_to_device'] * 1e3:.3g} ms"
      )
  note = "predict from host numpy, median of interleaved rounds; " + "; ".join(notes)
  return Check(
    "inference_speed",
    _outcome(figure > 1.0),
    figure,
    "slowest port speed-up over Keras predict",
    note,
    measured,
  )


def _accelerator_peaks(reset: bool = False) -> dict:
  """Memory peaks in MiB: JAX's on its first device (over the process's life) and TensorFlow's
  on its first GPU (since the last ``reset``), None where the backend reports none (a CPU); the
  host's peak RSS of this process."""
  rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  device = jax.devices()[0]
  stats = (device.memory_stats() if device.platform != "cpu" else None) or {}
  jax_mb = stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
  tf = sys.modules.get("tensorflow")
  gpus = tf.config.list_logical_devices("GPU") if tf is not None else []
  tf_mb = None
  if gpus:
    if reset:
      tf.config.experimental.reset_memory_stats(gpus[0].name)
    tf_mb = tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**20
  return {"jax_peak_mb": jax_mb, "tensorflow_peak_mb": tf_mb, "host_peak_rss_mb": rss_mb}


def _train_line(name: str, r: dict) -> str:
  line = (
    f"{name} ({r['rows']} rows, batch {r['batch_size']}): JAX {r['jax_samples_per_s']:.0f} vs "
    f"Keras {r['keras_samples_per_s']:.0f} samples/s ({r['jax_over_keras']:.2f}x)"
  )
  memory = r["memory"]
  if memory["jax_peak_mb"] is not None:
    line += f", peaks JAX {memory['jax_peak_mb']:.0f} MiB"
  if memory["tensorflow_peak_mb"] is not None:
    line += f", TensorFlow {memory['tensorflow_peak_mb']:.0f} MiB"
  return line


def check_train_speed(ctx: Context) -> Check:
  files = {"cnn": [data.CIFAR10_FILE], "mlp": [data.MNIST_FILE]}
  nusax = [os.path.join(data.NUSAX_DIR, "indonesian", f"{s}.csv") for s in data.NUSAX_SPLITS]
  roots = {m: ctx.local_data(*files.get(m, nusax)) for m in ctx.sizes.train_models}
  missing = [m for m, root in roots.items() if root is None]
  if missing:
    return skipped("train_speed", f"no local data for {', '.join(missing)} (--data_dir)")
  policy = device_policy.describe()
  jax_side, tf_side = policy["jax_float32_matmuls"], policy["tensorflow_float32_matmuls"]
  results = {}
  for name, root in roots.items():
    _accelerator_peaks(reset=True)
    rows, repeats = ctx.sizes.train_rows, ctx.sizes.train_repeats
    measured = train_speed.measure(name, rows, repeats, root, ctx.seed)
    results[name] = {**measured, "memory": _accelerator_peaks()}
  passed = jax_side == tf_side and all(
    np.isfinite(r["jax_samples_per_s"]) and np.isfinite(r["keras_samples_per_s"])
    for r in results.values()
  )
  note = "; ".join(
    [
      f"precision JAX {jax_side}, TensorFlow {tf_side}"
      + ("" if jax_side == tf_side else " (NOT matched)")
    ]
    + [_train_line(n, r) for n, r in results.items()]
  )
  if all(r["memory"]["jax_peak_mb"] is None for r in results.values()):
    note += f"; accelerator memory peaks: none reported on {ctx.backend}"
  figure = min(r["jax_over_keras"] for r in results.values())
  what = "smallest JAX trainer speed-up over Keras fit"
  return Check("train_speed", _outcome(passed), figure, what, note, results)


# ------------------------------------------------------------------ the run

_RUNNERS: dict[str, Callable[[Context], Check]] = {
  "cuda_lowering": check_cuda_lowering,
  "cnn_parity": lambda ctx: check_parity(ctx, "cnn"),
  "lstm_parity": lambda ctx: check_parity(ctx, "lstm"),
  "mlp_parity": lambda ctx: check_parity(ctx, "mlp"),
  "cross_backend": check_cross_backend,
  "runner_smoke": check_runner_smoke,
  "inference_speed": check_inference_speed,
  "train_speed": check_train_speed,
}
# The order they run in: the study runner last, as it turns on TensorFlow's op determinism for
# the whole process (slower kernels on a GPU), which would tilt the Keras side of the timings.
RUN_ORDER = tuple(n for n in CHECKS if n != "runner_smoke") + ("runner_smoke",)


def run_check(ctx: Context, name: str) -> Check:
  """Runs one check; an exception fails it (its type and first line in the note)."""
  ctx.log(f"device_check: {name} ...")
  started = time.perf_counter()
  try:
    check = _RUNNERS[name](ctx)
  except Exception as e:  # noqa: BLE001 - a check that raises has failed; the others still run
    first = str(e).splitlines()[0] if str(e) else ""
    check = Check(
      name,
      FAILED,
      None,
      "",
      f"raised {type(e).__name__}: {first}",
      {"traceback": traceback.format_exc()},
    )
  seconds = time.perf_counter() - started
  ctx.log(f"device_check: {name} {check.status} ({seconds:.1f} s)")
  return dataclasses.replace(check, seconds=seconds)


def versions() -> dict[str, str | None]:
  """Python, the machine, the packages the checks depend on and the JAX backend's platform
  version (CUDA and driver on a GPU)."""
  out: dict[str, str | None] = {"python": platform.python_version(), "machine": platform.machine()}
  for name in VERSIONED:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  out["jax_platform_version"] = jax.devices()[0].client.platform_version
  return out


def devices() -> list[dict]:
  return [{"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in jax.devices()]


def device_slug() -> str:
  """``cpu``, or the accelerator's kind in file-name form (``nvidia_h100_80gb_hbm3``)."""
  if jax.default_backend() == "cpu":
    return "cpu"
  return re.sub(r"[^a-z0-9]+", "_", jax.devices()[0].device_kind.lower()).strip("_") or "gpu"


def run(data_dir: str | None = None, seed: int = 0, log: Callable[[str], None] = print) -> dict:
  """Every check on this machine's JAX backend; returns the report."""
  # Full float32 on both sides whatever $JAXNETS_PRECISION says: the parity checks need it and
  # the speed checks compare matched precision. TensorFlow is loaded first, so that the policy
  # reaches it too (TF32 off, memory growth).
  frameworks.keras()
  device_policy.apply(device_policy.PARITY)
  ctx = Context(data_dir, seed, log)
  started = time.perf_counter()
  done = {name: run_check(ctx, name) for name in RUN_ORDER}
  return {
    "backend": ctx.backend,
    "devices": devices(),
    "versions": versions(),
    "precision": device_policy.describe(),
    "checks": [done[name].record() for name in CHECKS],
    "seconds": time.perf_counter() - started,
  }


def failed(report: dict) -> list[str]:
  return [c["name"] for c in report["checks"] if c["status"] == FAILED]


def _figure(value) -> str:
  return "—" if value is None else f"{value:.3g}"


def markdown(report: dict) -> str:
  """The report in short: where it ran, the precision, one table row per check."""
  kinds = sorted({d["kind"] for d in report["devices"]})
  lines = [
    f"# Device check: {report['backend']} ({', '.join(kinds)})",
    "",
    f"- {device_policy.summary(report['precision'])}",
    "- " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v is not None),
    f"- {len(report['checks'])} checks in {report['seconds']:.0f} s; failed: "
    f"{', '.join(failed(report)) or 'none'}",
    "",
    "| check | result | figure | what the figure is | note |",
    "|---|---|---|---|---|",
  ]
  for c in report["checks"]:
    note = c["note"].replace("|", "\\|")
    lines.append(
      f"| {c['name']} | {c['status']} | {_figure(c['figure'])} | {c['figure_is']} | {note} |"
    )
  return "\n".join(lines) + "\n"


def write(report: dict, json_out: str | None) -> tuple[str, str]:
  """Writes the JSON report (default ``results/bench/device_check_<device>.json``) and the
  markdown beside it (same name, ``.md``); returns both paths."""
  json_path = json_out or os.path.join(DEFAULT_DIR, f"device_check_{device_slug()}.json")
  md_path = os.path.splitext(json_path)[0] + ".md"
  os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
  with open(json_path, "w", encoding="utf-8") as out:
    json.dump(report, out, indent=1, default=report_lib.json_default)
    out.write("\n")
  with open(md_path, "w", encoding="utf-8") as out:
    out.write(markdown(report))
  return json_path, md_path


def gpu_missing() -> str | None:
  """None on a GPU backend; else the one line ``--require_gpu`` stops with."""
  if jax.default_backend() == "gpu":
    return None
  found = ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}))
  return (
    f"error: --require_gpu: JAX's default backend is {jax.default_backend()!r} ({found}), not a "
    "GPU; install JAX's CUDA build (BUILD.md, 'GPU / Colab') or run without --require_gpu"
  )


def main(json_out: str | None, data_dir: str | None, seed: int, require_gpu: bool) -> int:
  """The command: the exit status (0 when no check failed)."""
  if require_gpu and (line := gpu_missing()):
    print(line, file=sys.stderr, flush=True)
    return 1
  try:
    report = run(data_dir, seed, log=lambda line: print(line, file=sys.stderr, flush=True))
  except data.DataError as e:  # a --data_dir / JAXNETS_DATA_DIR that is not there
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  json_path, md_path = write(report, json_out)
  print(markdown(report), flush=True)
  print(f"wrote {json_path} and {md_path}", flush=True)
  return 1 if failed(report) else 0
