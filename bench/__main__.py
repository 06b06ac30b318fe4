"""``python -m bench``: the inference benchmark, its quick presets, training throughput.

    python -m bench --models=cnn,lstm,rnn,mlp --batch_sizes=1,32,256 \\
        --json_out=bench.json --chart_out=bench.png            # BENCHMARKS.md
    python -m bench --preset=speedcheck                          # CNN, MLP: Keras vs port
    python -m bench --preset=speedcheck_text                     # LSTM, SimpleRNN on NusaX
    python -m bench --preset=train_speed --models=cnn,lstm       # JAX trainer vs Keras fit
    python -m bench --preset=device_check [--require_gpu]        # this GPU: parity, speed

A preset (``bench/settings.py``) sets the defaults; flags given on the command
line override them. The inference presets print the markdown report
(``bench/report.py``); ``train_speed`` prints one table row per model;
``device_check`` (``bench/device_check.py``) writes a JSON report and its
markdown and exits 1 when a check failed.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from jaxnets import device_policy  # noqa: E402

# Before TensorFlow is imported (by the modules below) and before JAX starts a
# backend; worker and cold-start processes inherit it through the environment.
# TensorFlow and JAX share one GPU in the benchmark's process: no JAX
# preallocation, TF memory growth, float32 on both sides (jaxnets/device_policy.py).
device_policy.apply()

import json  # noqa: E402
import sys  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from bench import benchmark  # noqa: E402
from bench import device_check  # noqa: E402
from bench import report  # noqa: E402
from bench import settings as settings_lib  # noqa: E402
from bench import train_speed  # noqa: E402
from flags import common  # noqa: E402
from jaxnets import cli_support  # noqa: E402

TRAIN_SPEED = "train_speed"
DEVICE_CHECK = "device_check"
_FULL = settings_lib.Settings()

PRESET = flags.DEFINE_enum(
  "preset",
  "full",
  [*settings_lib.PRESETS, TRAIN_SPEED, DEVICE_CHECK],
  "What to run, and the defaults of the flags below: full (the benchmark of "
  "BENCHMARKS.md), speedcheck (CNN and MLP, Keras vs the port, batch 256 and batch-1 "
  "latency), speedcheck_text (the LSTM and SimpleRNN text models, batch 1 and 256), "
  "train_speed (one epoch of the JAX trainer vs Keras fit; reads --models, "
  "--num_inputs, --repeats, --json_out), device_check (parity and speed on this machine's "
  "GPU, or its CPU half; reads --json_out, --require_gpu). Defaults shown are the full "
  "preset's.",
)
MODELS = flags.DEFINE_list(
  "models", list(_FULL.models), f"Models, from {', '.join(settings_lib.MODELS)}."
)
BATCH_SIZES = flags.DEFINE_list(
  "batch_sizes", [str(b) for b in _FULL.batch_sizes], "Batch sizes for throughput."
)
SYSTEMS = flags.DEFINE_list(
  "systems", list(_FULL.systems), f"Systems to time, from {', '.join(settings_lib.SYSTEMS)}."
)
REPEATS = flags.DEFINE_integer(
  "repeats",
  _FULL.repeats,
  "Timed interleaved rounds per batch size (train_speed: epochs per system).",
  lower_bound=1,
)
LATENCY_REPEATS = flags.DEFINE_integer(
  "latency_repeats", _FULL.latency_repeats, "Timed rounds for batch-1 latency.", lower_bound=1
)
NUM_INPUTS = flags.DEFINE_integer(
  "num_inputs",
  _FULL.num_inputs,
  "Rows per model, the test set repeated or cut to this "
  "(train_speed: training rows per timed epoch).",
  lower_bound=1,
)
MAX_BATCHES = flags.DEFINE_integer(
  "max_batches",
  _FULL.max_batches,
  "At most this many batches per timed pass (rows = min(num_inputs, batch_size * max_batches)).",
  lower_bound=1,
)
MATMUL_SIZES = flags.DEFINE_list(
  "matmul_sizes",
  [str(n) for n in _FULL.matmul_sizes],
  "Sizes of the square float32 matmuls timed for the peak.",
)
MEMORY = flags.DEFINE_bool(
  "memory", _FULL.memory, "Measure peak memory (one fresh process per system)."
)
COLD_START = flags.DEFINE_bool(
  "cold_start", _FULL.cold_start, "Measure cold start (fresh processes)."
)
COLD_START_REPEATS = flags.DEFINE_integer(
  "cold_start_repeats", _FULL.cold_start_repeats, "Timed cold-start rounds.", lower_bound=1
)
LAYER_PROFILE = flags.DEFINE_bool(
  "layer_profile",
  _FULL.layer_profile,
  "Time the port layer by layer (jitted prefixes of the model) at the largest batch size.",
)
JSON_OUT = flags.DEFINE_string("json_out", None, "Write every figure here as JSON.")
CHART_OUT = flags.DEFINE_string("chart_out", None, "Write a PNG chart here.")
REQUIRE_GPU = flags.DEFINE_bool(
  "require_gpu",
  False,
  "device_check: exit 1 at once, with one line, when JAX's default backend is not a GPU.",
)


def _unique(values) -> tuple:
  return tuple(dict.fromkeys(values))


def _ints(values) -> tuple[int, ...]:
  return tuple(int(v) for v in values)


# Flags that set the Settings field of the same name, and how list values are read.
_SETTINGS_FLAGS = (
  "models",
  "batch_sizes",
  "systems",
  "repeats",
  "latency_repeats",
  "num_inputs",
  "max_batches",
  "matmul_sizes",
  "memory",
  "cold_start",
  "cold_start_repeats",
  "layer_profile",
  "seed",
  "data_dir",
)
_PARSE = {"models": _unique, "systems": _unique, "batch_sizes": _ints, "matmul_sizes": _ints}
_TRAIN_SPEED_FLAGS = ("models", "num_inputs", "repeats", "json_out", "data_dir", "seed")
_DEVICE_CHECK_FLAGS = ("json_out", "data_dir", "seed", "require_gpu")


def _given(name: str) -> bool:
  return flags.FLAGS[name].present


def _write_json(value) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(JSON_OUT.value)), exist_ok=True)
  with open(JSON_OUT.value, "w", encoding="utf-8") as out:
    json.dump(value, out, indent=1, default=report.json_default)


def run_inference(command: str) -> None:
  try:
    overrides = {
      name: _PARSE.get(name, lambda v: v)(flags.FLAGS[name].value)
      for name in _SETTINGS_FLAGS
      if _given(name)
    }
    if _given("workdir"):
      overrides["workdir"] = common.WORKDIR.value
    settings = settings_lib.preset(PRESET.value, **overrides)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  results = benchmark.run(settings, command)
  text = report.markdown(results)
  print(text, flush=True)
  if JSON_OUT.value:
    _write_json({**results, "markdown": text})
  if CHART_OUT.value:
    report.chart(results, CHART_OUT.value)


def _refuse_unread(preset: str, read: tuple[str, ...]) -> None:
  ignored = [
    f"--{name}"
    for name in (*_SETTINGS_FLAGS, "workdir", "chart_out", "require_gpu")
    if _given(name) and name not in read
  ]
  if ignored:
    raise app.UsageError(f"not read by --preset={preset}: {', '.join(ignored)}")


def run_train_speed() -> None:
  _refuse_unread(TRAIN_SPEED, _TRAIN_SPEED_FLAGS)
  models = _unique(MODELS.value) if _given("models") else train_speed.DEFAULT_MODELS
  unknown = set(models) - set(train_speed.MODELS)
  if unknown:
    raise app.UsageError(
      f"unknown models {sorted(unknown)}; valid: {', '.join(train_speed.MODELS)}"
    )
  rows = NUM_INPUTS.value if _given("num_inputs") else train_speed.DEFAULT_ROWS
  repeats = REPEATS.value if _given("repeats") else train_speed.DEFAULT_REPEATS
  results = []
  for name in models:
    print(f"measuring {name} ...", flush=True)
    results.append(
      train_speed.measure(name, rows, repeats, common.DATA_DIR.value, common.SEED.value)
    )
  print("\n" + train_speed.markdown(results), flush=True)
  if JSON_OUT.value:
    _write_json(results)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if PRESET.value == TRAIN_SPEED:
    run_train_speed()
  elif PRESET.value == DEVICE_CHECK:
    _refuse_unread(DEVICE_CHECK, _DEVICE_CHECK_FLAGS)
    sys.exit(
      device_check.main(JSON_OUT.value, common.DATA_DIR.value, common.SEED.value, REQUIRE_GPU.value)
    )
  else:
    _refuse_unread(PRESET.value, (*_SETTINGS_FLAGS, "workdir", "chart_out"))
    run_inference("python -m bench " + " ".join(sys.argv[1:]))


def run() -> None:
  """Console-script entry point (``jaxnets-bench``)."""
  cli_support.run(main)


if __name__ == "__main__":
  run()
