"""The benchmark's logic (``bench/``): its presets, models, output and command line.

No timing is asserted anywhere: speed is what the benchmark measures, not
something pytest checks. The runs use shrunken models and matmuls (``TINY``,
passed as ordinary settings) and one or two repetitions. FLOP counts are
tested in ``tests/test_flops.py``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import benchmark
from bench import frameworks
from bench import report
from bench import settings as settings_lib
from bench import systems as systems_lib
from bench import train_speed
from bench import weights
from bench import workloads
from tests import parity
from tests.conftest import REPO_ROOT

# Small versions of the benchmark's models (builder arguments over the study
# configs) and of the peak matmul.
TINY = dict(
  model_overrides={
    "cnn": {"filters": (4, 8), "kernel_sizes": (3, 3), "dense_units": 16},
    "mlp": {"hidden_units": (16,)},
    "lstm": {"units": (8,), "embedding_dim": 8, "max_tokens": 200, "sequence_length": 16},
    "rnn": {"units": (8,), "embedding_dim": 8, "max_tokens": 200, "sequence_length": 16},
  },
  matmul_sizes=(128, 256),
  log=lambda line: None,
)

SYSTEMS = ("keras_predict", "keras_call", "port_predict", "port_jit", "tf2jax")


# ------------------------------------------------------------- settings
def test_unknown_model_system_or_size_is_rejected():
  with pytest.raises(ValueError, match="unknown models"):
    settings_lib.Settings(models=("vgg",))
  with pytest.raises(ValueError, match="unknown systems"):
    settings_lib.Settings(systems=("pytorch",))
  with pytest.raises(ValueError, match="unknown model_overrides"):
    settings_lib.Settings(model_overrides={"vgg": {}})
  with pytest.raises(ValueError, match="batch sizes must be positive"):
    settings_lib.Settings(batch_sizes=(0, 4))
  with pytest.raises(ValueError, match="unknown preset"):
    settings_lib.preset("fastest")


def test_presets_are_settings_that_flags_override():
  assert settings_lib.preset("full") == settings_lib.Settings()
  check = settings_lib.preset("speedcheck")
  assert check.models == ("cnn", "mlp") and check.batch_sizes == (256,)
  assert set(check.systems) == {"keras_predict", "keras_call", "port_predict", "port_jit"}
  assert not (check.memory or check.cold_start or check.layer_profile)
  text = settings_lib.preset("speedcheck_text", repeats=2)
  assert text.models == ("lstm", "rnn") and text.repeats == 2


# ------------------------------------------------------------ workloads
def test_models_are_the_study_architectures():
  assert workloads.config("cnn")["filters"] == (32, 64, 128)
  assert workloads.config("mlp")["hidden_units"] == (256, 128)
  lstm = workloads.config("lstm")
  assert lstm["cell"] == "lstm" and lstm["units"] == (64, 64) and lstm["bidirectional"]
  assert workloads.config("rnn", {"units": (8,)})["units"] == (8,)
  with pytest.raises(ValueError, match="unknown builder arguments"):
    workloads.config("mlp", {"filters": (4,)})


def test_trained_models_are_found_in_the_training_layout(tmp_path):
  assert workloads.find_trained(str(tmp_path), "cnn") is None
  run = tmp_path / "cnn" / "pooling" / "max" / "seed1"
  run.mkdir(parents=True)
  (run / "model.keras").write_bytes(b"")
  assert workloads.find_trained(str(tmp_path), "cnn") == str(run / "model.keras")
  (tmp_path / "cnn.keras").write_bytes(b"")  # an explicit file wins
  assert workloads.find_trained(str(tmp_path), "cnn") == str(tmp_path / "cnn.keras")
  (tmp_path / "lstm" / "layers" / "1-layer" / "seed0").mkdir(parents=True)
  (tmp_path / "lstm" / "layers" / "1-layer" / "seed0" / "model.keras").write_bytes(b"")
  assert workloads.find_trained(str(tmp_path), "lstm") is None  # not the 2-layer architecture


def test_random_weights_are_seeded_and_parity_uses_the_same_randomiser():
  assert parity.randomize_weights is weights.randomize_weights
  keras = frameworks.keras()

  def model():
    return keras.Sequential(
      [keras.Input((400,)), keras.layers.Dense(300), keras.layers.BatchNormalization()]
    )

  a, b = model(), model()
  weights.randomize_weights(a, seed=3, scale=None)
  weights.randomize_weights(b, seed=3, scale=None)
  for x, y in zip(a.weights, b.weights):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  kernel = np.asarray(a.weights[0])
  assert kernel.std() == pytest.approx(1 / np.sqrt(400), rel=0.05)
  variance = next(np.asarray(v) for v in a.weights if "variance" in v.path)
  assert variance.min() >= 0.5 and variance.max() <= 1.5
  weights.randomize_weights(b, seed=3)  # default: scale 0.5, what the parity tests use
  assert np.asarray(b.weights[0]).std() == pytest.approx(0.5, rel=0.05)


# -------------------------------------------------------- benchmark run
@pytest.fixture(scope="module")
def tiny_results():
  settings = settings_lib.Settings(
    models=("mlp", "lstm"),
    batch_sizes=(1, 4),
    systems=SYSTEMS,
    repeats=2,
    latency_repeats=2,
    num_inputs=12,
    max_batches=2,
    memory=False,
    cold_start=False,
    **TINY,
  )
  saved = dict(systems_lib.REQUIRED_PACKAGES)
  # Pretend one peer is not installed: it must be reported, not fail the run.
  systems_lib.REQUIRED_PACKAGES["tf2jax"] = ("jaxnets_bench_no_such_package",)
  try:
    return benchmark.run(settings, command="pytest")
  finally:
    systems_lib.REQUIRED_PACKAGES.clear()
    systems_lib.REQUIRED_PACKAGES.update(saved)


def test_results_have_every_figure_per_model_system_and_batch(tiny_results):
  results = tiny_results
  assert [r["model"] for r in results["models"]] == ["mlp", "lstm"]
  assert results["matmul_peak_before"]["gflops"] > 0 and results["matmul_peak_after"]["gflops"] > 0
  assert set(results["matmul_peak_before"]["gflops_by_size"]) == {"128", "256"}
  timed = [s for s in SYSTEMS if s != "tf2jax"]
  for record in results["models"]:
    assert record["systems"]["tf2jax"]["status"] == (
      "skipped (not installed: jaxnets_bench_no_such_package)"
    )
    for system in timed:
      entry = record["systems"][system]
      assert entry["status"] == "ok", entry
      assert entry["first_call_s"] >= 0 and entry["setup_s"] >= 0
      assert entry["agreement"]["max_abs_diff"] <= 1e-5
      assert entry["agreement"]["argmax_equal"] == 1.0
    assert set(record["throughput"]) == {"1", "4"}
    for batch, figures in record["throughput"].items():
      # max_batches=2: at most two batches of rows per timed pass.
      assert figures["rows"] == min(12, 2 * int(batch))
      assert figures["flops"] > 0
      assert len(figures["matmul"]["times_s"]) == 2 and figures["matmul"]["gflops"] > 0
      assert set(figures["systems"]) == set(timed)
      for stats in figures["systems"].values():
        assert len(stats["times_s"]) == 2
        assert stats["min_s"] <= stats["median_s"] <= stats["max_s"]
        assert stats["rows_per_s_min"] <= stats["rows_per_s"] <= stats["rows_per_s_max"]
        assert stats["gflops"] > 0 and stats["peak_fraction"] > 0
      for port_system in ("port_predict", "port_jit"):
        assert set(figures["port_speedup"][port_system]) == set(timed) - {port_system}
    latency = record["latency"]
    assert set(latency["systems"]) == set(timed)
    for stats in latency["systems"].values():
      assert len(stats["times_s"]) == 2 and stats["p99_ms"] >= stats["median_ms"] > 0
    assert "keras_predict" in latency["port_speedup"]["port_predict"]
    profile = record["layer_profile"]
    assert profile["batch_size"] == 4
    assert [row["layer"] for row in profile["layers"]] == [
      row["layer"] for row in record["flops_per_layer_full_length"]
    ]
    assert all(set(row) >= {"class", "flops", "ms", "share", "gflops"} for row in profile["layers"])
  mlp, lstm = results["models"]
  assert mlp["param_count"] == 784 * 16 + 16 + 16 * 10 + 10  # the TINY override
  assert lstm["input_dtype"] == "int32" and lstm["input_shape"] == [16]
  assert 1 <= lstm["latency"]["row_real_length"] <= 16


def test_targets_are_evaluated_and_missing_peers_are_not_met(tiny_results):
  targets = {(t["model"], t["port"], t["target"]): t for t in tiny_results["targets"]}
  for port in ("port_predict", "port_jit"):
    assert targets[("lstm", port, "throughput @4: port / keras_predict")]["required"] == 2.0
    # ONNX Runtime was not run: its targets have no value and no verdict.
    onnx = targets[("lstm", port, "throughput @4: port / onnxruntime")]
    assert onnx["value"] is None and onnx["met"] is None
    assert ("mlp", port, "batch-1 latency: keras_predict / port") in targets
  for target in targets.values():
    assert target["met"] in (True, False, None)


def test_markdown_json_and_chart(tiny_results, tmp_path):
  text = report.markdown(tiny_results)
  assert text.startswith("# jaxnets inference benchmark")
  assert "| model | port | target | measured | required | met |" in text
  for name in ("mlp", "lstm"):
    assert f"## {name}: seeded random" in text
  assert "| tf2jax | skipped (not installed: jaxnets_bench_no_such_package) |" in text
  header = next(line for line in text.splitlines() if line.startswith("| system |"))
  assert "rows/s @1" in header and "rows/s @4" in header and "batch-1 ms" in header
  json.loads(json.dumps(tiny_results, default=report.json_default))
  png = tmp_path / "chart.png"
  report.chart(tiny_results, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedcheck_preset_runs_on_a_small_cnn():
  results = benchmark.run(
    settings_lib.preset(
      "speedcheck",
      models=("cnn",),
      batch_sizes=(4,),
      num_inputs=8,
      repeats=1,
      latency_repeats=1,
      **TINY,
    )
  )
  record = results["models"][0]
  assert record["input_shape"] == [32, 32, 3]
  assert set(record["latency"]["systems"]) == {
    "keras_predict",
    "keras_call",
    "port_predict",
    "port_jit",
  }
  for entry in record["systems"].values():
    assert entry["status"] == "ok" and entry["agreement"]["max_abs_diff"] <= 1e-5
  assert "layer_profile" not in record and "cold_start" not in record


def test_a_trained_string_model_is_timed_on_token_ids(tmp_path):
  frameworks.keras()
  from train import models  # pylint: disable=import-outside-toplevel

  vectorizer = models.make_vectorizer(
    np.array(["a b c d", "e f g", "h"], dtype=object), sequence_length=8
  )
  models.build_text(vectorizer, cell="simple_rnn", units=(4,), embedding_dim=4, name="rnn").save(
    tmp_path / "rnn.keras"
  )
  results = benchmark.run(
    settings_lib.Settings(
      models=("rnn",),
      batch_sizes=(2,),
      systems=("keras_predict", "port_predict"),
      repeats=1,
      latency_repeats=1,
      num_inputs=4,
      memory=False,
      cold_start=False,
      workdir=str(tmp_path),
      **TINY,
    )
  )
  record = results["models"][0]
  assert record["weights"].startswith("trained (") and "rnn.keras" in record["weights"]
  assert record["input_dtype"] == "int32" and record["input_shape"] == [8]
  for system in ("keras_predict", "port_predict"):
    assert record["systems"][system]["status"] == "ok"
    assert record["systems"][system]["agreement"]["max_abs_diff"] <= 1e-5


# ------------------------------------------------------ training speed
def test_training_throughput_of_the_mlp(real_data_dir):
  result = train_speed.measure("mlp", rows=256, repeats=1, data_dir=str(real_data_dir))
  assert result["rows"] == 256 and result["batch_size"] == 128
  assert result["keras_samples_per_s"] > 0 and result["jax_samples_per_s"] > 0
  assert len(result["epoch_seconds"]["jax"]) == 1
  assert "| mlp | 256 | 128 |" in train_speed.markdown([result])


# --------------------------------------------------------- command line
def test_a_worker_process_loads_no_framework_by_importing_bench():
  code = "import sys, bench.worker; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
  done = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  loaded = set(done.stdout.split())
  assert not loaded & {"jax", "tensorflow", "keras", "jaxnets", "port", "train", "flags"}


def test_command_line_run_with_memory_and_cold_start(tmp_path):
  """The CLI end to end: stdout table, JSON with memory and cold start, PNG."""
  json_out, chart_out = tmp_path / "bench.json", tmp_path / "bench.png"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "bench",
      "--models=mlp",
      "--batch_sizes=2",
      "--systems=keras_predict,port_predict",
      "--repeats=1",
      "--latency_repeats=2",
      "--num_inputs=4",
      "--cold_start_repeats=1",
      "--matmul_sizes=128",
      f"--json_out={json_out}",
      f"--chart_out={chart_out}",
    ],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert "## mlp: seeded random" in done.stdout
  results = json.loads(json_out.read_text())
  assert results["markdown"] in done.stdout
  assert results["environment"]["command"].startswith("python -m bench --models=mlp")
  record = results["models"][0]
  for system in ("keras_predict", "port_predict"):
    memory = record["systems"][system]["memory"]
    assert memory["peak_rss_mb"] >= memory["rss_after_import_mb"] > 0, memory
  cold = record["cold_start"]
  for side in ("port", "keras"):
    assert cold[side]["exit_s"] >= cold[side]["first_prediction_s"] > 0
    assert set(cold[side]) >= {"import_s", "load_s", "predict_s"}
  assert cold["keras_over_port"] > 0
  assert cold["outputs_max_abs_diff"] <= 1e-5
  assert chart_out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
  "args, message",
  [
    (["--models=vgg"], "unknown models"),
    (["--preset=train_speed", "--systems=port_jit"], "not read by --preset=train_speed"),
  ],
)
def test_command_line_rejects_bad_flags(args, message):
  done = subprocess.run(
    [sys.executable, "-m", "bench", *args],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert done.returncode != 0
  assert message in done.stderr


def test_transformer_workload_ports_exactly_and_counts_flops_over_the_graph():
  """A model from outside the course: a functional graph whose attention layer
  takes several inputs (``bench/applications.py``)."""
  import port  # pylint: disable=import-outside-toplevel
  from bench import flops  # pylint: disable=import-outside-toplevel

  settings = settings_lib.preset("applications", models=("transformer",), num_inputs=6)
  workload = workloads.build("transformer", settings)
  assert workload.x.shape == (6, 128) and workload.x.dtype == np.int32
  assert (workload.x == 0).any()  # zero padding for the mask
  ported = port.load(workload.keras_model)
  want = np.asarray(workload.keras_model(workload.x, training=False))
  parity.assert_outputs_match(
    workload.keras_model, ported.predict(workload.x), workload.x, keras_outputs=want
  )
  rows = flops.per_layer(ported, (128,))
  assert sorted(r[0] for r in rows) == sorted(layer.name for layer in ported.layers)
  by_class = {c: f for _, c, f in rows}
  assert by_class["MultiHeadAttention"] > 0 and by_class["Dense"] > 0
  assert "transformer" in report.TARGETS and settings.batch_sizes == (1, 32)
