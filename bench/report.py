"""The benchmark's verdicts and outputs: targets, markdown tables and a chart."""

from typing import Any

import numpy as np

from bench.settings import APPLICATION_MODELS, HEADLINE_PORT, PORT_SYSTEMS

# The targets the port is held to (port / peer ratios; >= unless stated). Never
# loosened: a missed target is reported and explained in BENCHMARKS.md.
TARGETS = {
  "cnn": {"keras_predict": 1.5, "keras_jax": 1.3, "onnxruntime": 1.0},
  "lstm": {"keras_predict": 2.0, "onnxruntime": 1.5},
  "rnn": {"keras_predict": 2.0, "onnxruntime": 1.5},
  # Models from outside the course (issue 14), at batch 32.
  **{name: {"keras_predict": 1.5, "keras_jax": 1.0} for name in APPLICATION_MODELS},
}
TARGET_PEAK_FRACTION = {"cnn": 0.90}
TARGET_LATENCY = {"onnxruntime": 1.0, "keras_predict": 100.0}  # peer latency / port latency
# Outside the course, batch-1 latency is held to ONNX Runtime's only.
TARGET_LATENCY_APPLICATIONS = {"onnxruntime": 1.0}
TARGET_COLD_START = 3.0  # keras cold start / port cold start


def evaluate_targets(record: dict) -> list[dict]:
  """Every target that applies to the record's model, for both ways of
  running the port (``port_predict`` is the headline): value and verdict."""
  name, out = record["model"], []
  b = str(max(int(k) for k in record["throughput"])) if record.get("throughput") else None

  def add(port, what, value, required, unit="x"):
    out.append(
      {
        "model": name,
        "port": port,
        "target": what,
        "value": value,
        "required": required,
        "unit": unit,
        "met": None if value is None else value >= required,
      }
    )

  for port in PORT_SYSTEMS:
    if port not in record["systems"] or record["systems"][port].get("status") != "ok":
      continue
    if b is not None:
      speedup = record["throughput"][b]["port_speedup"].get(port, {})
      for peer, required in TARGETS.get(name, {}).items():
        add(port, f"throughput @{b}: port / {peer}", speedup.get(peer), required)
      if name in TARGET_PEAK_FRACTION:
        stats = record["throughput"][b]["systems"][port]
        add(
          port,
          f"GFLOP/s @{b} / matmul peak",
          stats["peak_fraction"],
          TARGET_PEAK_FRACTION[name],
          "of peak",
        )
    if record.get("latency"):
      speedup = record["latency"]["port_speedup"].get(port, {})
      latency_targets = (
        TARGET_LATENCY_APPLICATIONS if name in APPLICATION_MODELS else TARGET_LATENCY
      )
      for peer, required in latency_targets.items():
        add(port, f"batch-1 latency: {peer} / port", speedup.get(peer), required)
  cold = record.get("cold_start", {})
  if "keras_over_port" in cold:
    add("jaxnets.load", "cold start: keras / port", cold["keras_over_port"], TARGET_COLD_START)
  return out


def _fmt(value, spec=".0f", none="—"):
  return none if value is None else format(value, spec)


def markdown(results: dict) -> str:
  """The whole run as markdown: environment, headline targets, per-model tables."""
  env = results["environment"]
  lines = [
    "# jaxnets inference benchmark",
    "",
    f"- command: `{env['command']}`",
    f"- {env['cpu_model']}, {env['cpu_count']} CPUs; load average before/after: "
    f"{env['load_before']} / {env.get('load_after', '—')}",
    f"- JAX devices: {env['jax_devices']}; "
    + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
    f"- float32 matmul peak (jitted {results['matmul_peak_before']['size']}^2 matmul): "
    f"{results['matmul_peak_before']['gflops']:.0f} GFLOP/s before the models, "
    f"{results['matmul_peak_after']['gflops']:.0f} after; it is also timed in every "
    'throughput round, and "% peak" is the median per-round ratio of a system\'s '
    "GFLOP/s to the matmul's",
    "",
  ]
  targets = results["targets"]
  if targets:
    lines += [
      "## Targets (ratios are medians of interleaved per-round ratios; > 1: the port is faster)",
      "",
      "| model | port | target | measured | required | met |",
      "|---|---|---|---|---|---|",
    ]
    for t in targets:
      value = (
        _fmt(t["value"], ".0%")
        if t["unit"] == "of peak"
        else _fmt(t["value"], ".2f") + "x"
        if t["value"] is not None
        else "—"
      )
      required = f"{t['required']:.0%}" if t["unit"] == "of peak" else f"{t['required']:g}x"
      met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
      lines.append(
        f"| {t['model']} | {t['port']} | {t['target']} | {value} | ≥ {required} | {met} |"
      )
    lines.append("")
  for record in results["models"]:
    lines += _model_tables(record)
  return "\n".join(lines)


def _model_tables(record: dict) -> list[str]:
  name = record["model"]
  lines = [
    f"## {name}: {record['weights']}; {record['param_count']:,} parameters",
    "",
    f"Inputs: {record['inputs']}, {record['input_dtype']} {tuple(record['input_shape'])}.",
    "",
  ]
  batch_keys = list(record.get("throughput", {}))
  b_max = max(batch_keys, key=int) if batch_keys else None
  header = (
    ["system"]
    + [f"rows/s @{b}" for b in batch_keys]
    + [f"port ÷ it @{b}" for b in batch_keys]
    + [
      "GFLOP/s (% peak)",
      "batch-1 ms: median / p99",
      "port ÷ it, batch 1",
      "set-up s",
      "first call s",
      "peak RSS MB (after import)",
      "max abs diff",
      "to float64 (Keras's; bound)",
    ]
  )
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  latency = record.get("latency", {})
  for system, entry in record["systems"].items():
    if entry.get("status") != "ok":
      lines.append(f"| {system} | {entry.get('status')} |" + " |" * (len(header) - 2))
      continue
    cells = [system]
    for b in batch_keys:
      s = record["throughput"][b]["systems"][system]
      cells.append(
        f"{s['rows_per_s']:,.0f} ({s['rows_per_s_min']:,.0f}–{s['rows_per_s_max']:,.0f})"
      )
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
    cells.append(_parity_cell(entry["agreement"]))
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  if "port_jit" in record["systems"] and batch_keys:
    ratios = record["throughput"][b_max]["port_speedup"].get("port_jit", {})
    if ratios:
      lines += [
        "`port_jit` ÷ peers @"
        + b_max
        + ": "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
        "",
      ]
  profile = record.get("layer_profile")
  if profile:
    lines += [
      f"Port, layer by layer (jitted prefixes, batch {profile['batch_size']}):",
      "",
      "| layer | class | MFLOP | ms | share | GFLOP/s |",
      "|---|---|---|---|---|---|",
    ]
    for row in profile["layers"]:
      lines.append(
        f"| {row['layer']} | {row['class']} | {row['flops'] / 1e6:,.1f} | "
        f"{row['ms']:.2f} | {row['share']:.0%} | {_fmt(row['gflops'], '.1f')} |"
      )
    lines.append("")
  cold = record.get("cold_start")
  if cold and "error" not in cold:

    def stage(side):
      return (
        f"{cold[side]['first_prediction_s']:.2f} s (import {cold[side]['import_s']:.2f}, "
        f"load {cold[side]['load_s']:.2f}, predict {cold[side]['predict_s']:.2f}; exit "
        f"done at {cold[side]['exit_s']:.2f})"
      )

    lines += [
      f"Cold start, spawn to first prediction (median of {len(cold['port']['times_s'])} "
      f"interleaved rounds): port {stage('port')}; keras {stage('keras')}; keras ÷ port "
      f"{cold['keras_over_port']:.2f}",
      "",
    ]
  elif cold:
    lines += [f"Cold start failed: {cold['error'][:200]}", ""]
  return lines


def chart(results: dict, path: str) -> None:
  """Per model: throughput at the largest batch and batch-1 latency, per system."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  records = [r for r in results["models"] if r.get("throughput")]
  fig, axes = plt.subplots(
    2, max(1, len(records)), figsize=(4.5 * max(1, len(records)), 8), squeeze=False
  )
  for col, record in enumerate(records):
    b = max(record["throughput"], key=int)
    names = list(record["throughput"][b]["systems"])
    colors = ["tab:red" if n in PORT_SYSTEMS else "tab:gray" for n in names]
    rates = [record["throughput"][b]["systems"][n]["rows_per_s"] for n in names]
    errors = [
      [r - record["throughput"][b]["systems"][n]["rows_per_s_min"] for n, r in zip(names, rates)],
      [record["throughput"][b]["systems"][n]["rows_per_s_max"] - r for n, r in zip(names, rates)],
    ]
    ax = axes[0][col]
    ax.bar(names, rates, color=colors, yerr=errors, capsize=3)
    ax.set_title(f"{record['model']}: throughput @ batch {b}")
    ax.set_ylabel("rows / s (median; bars: min–max)")
    ax.tick_params(axis="x", rotation=60)
    ax = axes[1][col]
    lat = record.get("latency", {}).get("systems", {})
    ax.bar(
      list(lat),
      [v["median_ms"] for v in lat.values()],
      color=["tab:red" if n in PORT_SYSTEMS else "tab:gray" for n in lat],
    )
    ax.set_yscale("log")
    ax.set_title(f"{record['model']}: batch-1 latency")
    ax.set_ylabel("ms (median, log scale)")
    ax.tick_params(axis="x", rotation=60)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def json_default(value: Any):
  """``json.dump``'s fallback for numpy scalars (and anything else: its text)."""
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  return str(value)


def _parity_cell(agreement: dict) -> str:
  """``system (Keras; bound)`` distances from the float64 reference, ``—`` when
  the record has none (older records, or no reference)."""
  if agreement.get("system_f64_error") is None:
    return "—"
  mark = "" if agreement.get("within_rule") else " ✗"
  return (
    f"{agreement['system_f64_error']:.1e} ({agreement['keras_f64_error']:.1e}; "
    f"{agreement['bound']:.1e}){mark}"
  )
