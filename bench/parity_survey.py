"""The measurement behind the parity rule: ``python -m bench.parity_survey``.

For every spec model (``cnn``, ``lstm``, ``rnn``, ``mlp`` with seeded random
weights, on their test rows when the data is there), every supported
``keras.applications`` model at a small input size and the transformer, it
runs ``port.compare`` and records the port's and Keras's float32 distances from
Keras's float64 evaluation, their ratio, the bound and the verdict; then it
applies every mutation of ``bench/mutations.py`` to each model and records
whether the rule rejects it (and by how much it misses the bound).

Writes ``<out_dir>/survey_<isa>.json`` and ``.md`` (atomically), the ISA read
from the CPU flags and from ``XLA_FLAGS``/``ONEDNN_MAX_CPU_ISA`` (an AVX-512
machine runs as AVX2 with ``XLA_FLAGS=--xla_cpu_max_isa=AVX2
ONEDNN_MAX_CPU_ISA=AVX2``). Progress goes to stderr, one line per model.

    python -m bench.parity_survey --out_dir=results/parity
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.parity_survey
"""

import json
import os
import pathlib
import sys
import time

from absl import app
from absl import flags

from flags import common as common_flags  # noqa: F401  (--data_dir, --seed)
from train import report as report_lib

_OUT_DIR = flags.DEFINE_string("out_dir", "results/parity", "Where the survey tables go.")
_MODELS = flags.DEFINE_list(
  "survey_models", None, "Models to survey (default: all; names as in the table)."
)
_ROWS = flags.DEFINE_integer("rows", 256, "Rows per spec model.", lower_bound=1)
_MUTATE = flags.DEFINE_bool("mutations", True, "Also apply every mutation to every model.")

# keras.applications constructor: smallest convenient input side (as in tests/test_applications.py).
APPLICATIONS = {
  "MobileNetV2": 32,
  "MobileNetV3Small": 32,
  "VGG16": 32,
  "EfficientNetB0": 32,
  "ResNet50": 32,
  "ResNet50V2": 32,
  "DenseNet121": 32,
  "Xception": 71,
  "NASNetMobile": 32,
}
SPEC_MODELS = ("cnn", "lstm", "rnn", "mlp")


def cpu_isa() -> str:
  """``AVX-512``, ``AVX2`` or ``other`` from /proc/cpuinfo, and ``AVX2
  (emulated)`` when XLA and oneDNN are capped at AVX2 on an AVX-512 CPU."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      words = set(f.read().split())
  except OSError:
    return "unknown"
  native = "AVX-512" if "avx512f" in words else "AVX2" if "avx2" in words else "other"
  capped = "xla_cpu_max_isa=AVX2" in os.environ.get("XLA_FLAGS", "") and (
    os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"
  )
  return "AVX2 (emulated on AVX-512)" if native == "AVX-512" and capped else native


def _spec_case(name: str, rows: int, data_dir, seed: int):
  from bench import settings as settings_lib  # pylint: disable=import-outside-toplevel
  from bench import workloads  # pylint: disable=import-outside-toplevel

  settings = settings_lib.preset(
    "full", num_inputs=rows, data_dir=data_dir, workdir=None, seed=seed
  )
  workload = workloads.build(name, settings)
  return workload.keras_model, workload.x, f"{workload.weights}; {workload.inputs}"


def _application_case(name: str, seed: int):
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from bench import weights  # pylint: disable=import-outside-toplevel

  side = APPLICATIONS[name]
  model = getattr(keras.applications, name)(
    weights=None, input_shape=(side, side, 3), classes=5, classifier_activation=None
  )
  weights.randomize_weights(model, seed=seed, scale=None)
  x = np.random.default_rng(seed).normal(size=(2, side, side, 3)).astype(np.float32)
  return model, x, f"{side}x{side}, 2 standard-normal images, logits"


def _transformer_case(seed: int):
  from bench import applications  # pylint: disable=import-outside-toplevel

  model, x, _, inputs = applications.build("transformer", 32, seed)
  return model, x, inputs


def survey_model(name: str, keras_model, x, mutations: bool) -> dict:
  """One model's row: the comparison and, per mutation, whether it is rejected."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  import port  # pylint: disable=import-outside-toplevel
  from bench import mutations as mutations_lib  # pylint: disable=import-outside-toplevel

  ported = port.load(keras_model)
  keras_outputs = port.comparison.run_keras(keras_model, x)
  reference = port.comparison.run_keras(
    port.float64_reference(keras_model), port.comparison.to_float64(x)
  )
  port_outputs = ported.predict(x)
  comparison = port.compare(
    keras_model,
    ported,
    x,
    keras_outputs=keras_outputs,
    port_outputs=port_outputs,
    reference_outputs=reference,
  )
  row = {"model": name, "comparison": comparison.as_dict(), "mutations": {}}
  if not mutations:
    return row
  prepared = ported.prepare_inputs(x)
  for kind in mutations_lib.MUTATIONS:
    mutated = mutations_lib.mutate(ported, kind)
    if mutated is None:
      row["mutations"][kind] = {"applies": False}
      continue
    got = mutated.predict(x)
    # How far the bug moves the exact result: the mutated port in float64.
    try:
      exact = mutations_lib.exact_outputs(mutated, prepared)
    except (TypeError, ValueError) as e:  # a layer that cannot run in float64
      print(f"  {kind}: no float64 evaluation ({e}); judged in float32", file=sys.stderr)
      exact = port.reference.flatten(got)
    moved = max(
      float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(r, np.float64))))
      if np.size(a)
      else 0.0
      for a, r in zip(exact, reference)
    )
    result = port.compare(
      keras_model,
      mutated,
      x,
      keras_outputs=keras_outputs,
      port_outputs=got,
      reference_outputs=reference,
    )
    row["mutations"][kind] = {
      "applies": True,
      "changes_output": bool(moved > comparison.bound),
      "exact_change": moved,
      "rejected": not result.ok,
      "port_error": result.port_error,
      "bound": result.bound,
    }
  return row


def _cases(names, rows: int, data_dir, seed: int):
  for name in names:
    if name in SPEC_MODELS:
      yield name, lambda n=name: _spec_case(n, rows, data_dir, seed)
    elif name in APPLICATIONS:
      yield name, lambda n=name: _application_case(n, seed)
    elif name == "transformer":
      yield name, lambda: _transformer_case(seed)
    else:
      known = ", ".join((*SPEC_MODELS, *APPLICATIONS, "transformer"))
      raise app.UsageError(f"--survey_models: unknown model {name!r}; known: {known}")


def markdown(report: dict) -> str:
  """The survey as tables: distances per model, then mutations per model."""
  from bench import mutations as mutations_lib  # pylint: disable=import-outside-toplevel

  lines = [
    f"# Parity survey — {report['isa']}",
    "",
    f"{report['cpu']}; jax {report['versions']['jax']}, tensorflow "
    f"{report['versions']['tensorflow']}, keras {report['versions']['keras']}. Rule: "
    f"{report['rule']}",
    "",
    "| model | max abs diff from Keras | Keras to float64 | port to float64 | port / Keras "
    "| bound | ok | inputs |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for row in report["models"]:
    c = row["comparison"]
    ratio = c["port_error"] / c["keras_error"] if c["keras_error"] else float("nan")
    lines.append(
      f"| {row['model']} | {c['max_abs_diff']:.2e} | {c['keras_error']:.2e} | "
      f"{c['port_error']:.2e} | {ratio:.2f} | {c['bound']:.2e} | "
      f"{'yes' if c['ok'] else 'NO'} | {row['inputs']} |"
    )
  kinds = mutations_lib.MUTATIONS
  if any(row["mutations"] for row in report["models"]):
    lines += [
      "",
      "Mutations (`bench/mutations.py`): *rejected* with the mutated port's float32 distance "
      "from the float64 reference / the bound; *below rounding* where the mutation moves the "
      "exact (float64) result by less than the bound (value shown), so no float32 check could "
      "see it; n/a where the model has nothing the mutation applies to.",
      "",
      "| model | " + " | ".join(kinds) + " |",
      "|---|" + "---|" * len(kinds),
    ]
    for row in report["models"]:
      cells = []
      for kind in kinds:
        m = row["mutations"].get(kind, {"applies": False})
        if not m["applies"]:
          cells.append("n/a")
        elif not m["changes_output"]:
          cells.append(f"below rounding ({m['exact_change']:.1e})")
        else:
          verdict = "rejected" if m["rejected"] else "**ACCEPTED**"
          cells.append(f"{verdict} ({m['port_error'] / m['bound']:.3g}x)")
      lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def run_survey(names, rows: int, data_dir, seed: int, mutations: bool) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from port import comparison  # pylint: disable=import-outside-toplevel

  report = {
    "isa": cpu_isa(),
    "cpu": _cpu_name(),
    "versions": {"jax": jax.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
    "rule": (
      f"port_error <= max({comparison.FACTOR:g} x keras_error, {comparison.FLOOR:g} x "
      "max(1, output scale)) (port/comparison.py)"
    ),
    "models": [],
  }
  for name, build in _cases(names, rows, data_dir, seed):
    start = time.perf_counter()
    keras_model, x, inputs = build()
    row = survey_model(name, keras_model, x, mutations)
    row["inputs"] = inputs
    report["models"].append(row)
    c = row["comparison"]
    print(
      f"[{len(report['models'])}/{len(names)}] {name}: port {c['port_error']:.2e}, Keras "
      f"{c['keras_error']:.2e}, ok={c['ok']} ({time.perf_counter() - start:.0f} s)",
      file=sys.stderr,
      flush=True,
    )
  return report


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown CPU"


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  names = _MODELS.value or [*SPEC_MODELS, *APPLICATIONS, "transformer"]
  data_dir = flags.FLAGS.data_dir or os.environ.get("JAXNETS_DATA_DIR")
  report = run_survey(names, _ROWS.value, data_dir, flags.FLAGS.seed, _MUTATE.value)
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stem = os.path.join(_OUT_DIR.value, "survey_" + report["isa"].split(" ")[0].lower())
  report_lib.atomic_write(
    pathlib.Path(stem + ".json"), (json.dumps(report, indent=1) + "\n").encode()
  )
  report_lib.atomic_write(pathlib.Path(stem + ".md"), markdown(report).encode())
  print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
  app.run(main)
