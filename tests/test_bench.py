"""The benchmark's own logic: FLOP counts by hand, and the shape of its output.

No timing is asserted anywhere: speed is what the benchmark measures, not
something pytest checks. The runs use shrunken models (``tiny``) and one or
two repetitions.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxnets
from jaxnets.layers import conv, core, embedding, normalization, pooling, recurrent
from port import bench
from port import flops
from tests.conftest import REPO_ROOT


# ------------------------------------------------------------------ FLOPs
# Convention (port/flops.py): a multiply-add is 2 FLOPs; bias adds, each
# element of a non-linear activation, BatchNorm's multiply and add, pooling
# comparisons/adds/divisions are 1 each; lookups and reshapes are free.

@pytest.mark.parametrize("layer, input_shape, expected", [
    # 3 outputs x (2*5 multiply-adds + bias) + 3 relu
    (core.Dense(name="d", units=3, activation="relu"), (5,), 3 * (2 * 5 + 1) + 3),
    (core.Dense(name="d", units=3, use_bias=False), (5,), 2 * 5 * 3),
    # position-wise over 4 time steps
    (core.Dense(name="d", units=3, activation="relu"), (4, 5), 4 * (3 * 11 + 3)),
    # same padding: 6x6x4 outputs, each 3*3*2 multiply-adds + bias, + relu
    (conv.Conv2D(name="c", filters=4, kernel_size=(3, 3), padding="same", activation="relu"),
     (6, 6, 2), 6 * 6 * 4 * (2 * 9 * 2 + 1) + 6 * 6 * 4),
    # valid, stride 2: 3x3x2 outputs, each 3*3*3 multiply-adds + bias
    (conv.Conv2D(name="c", filters=2, kernel_size=(3, 3), strides=(2, 2)), (7, 7, 3),
     3 * 3 * 2 * (2 * 27 + 1)),
    # grouped 1-D: 8 steps x 4 filters, each 3 taps x (4 / 2) channels
    (conv.Conv1D(name="c", filters=4, kernel_size=(3,), padding="same", groups=2), (8, 4),
     8 * 4 * (2 * 3 * 2 + 1)),
    # 2x2 windows: 3 comparisons (max) or 3 adds + 1 division (average) per output
    (pooling.MaxPooling2D(name="p", pool_size=(2, 2)), (4, 4, 3), 2 * 2 * 3 * 3),
    (pooling.AveragePooling2D(name="p", pool_size=(2, 2)), (4, 4, 3), 2 * 2 * 3 * 4),
    (pooling.GlobalMaxPooling2D(name="p"), (4, 4, 3), 3 * 15),
    (pooling.GlobalAveragePooling2D(name="p"), (4, 4, 3), 3 * 16),
    (normalization.BatchNormalization(name="bn"), (4, 4, 3), 2 * 48),
    (embedding.Embedding(name="e", input_dim=10, output_dim=4), (7,), 0),
    (core.Dropout(name="x", rate=0.5), (7, 3), 0),
    (core.Flatten(name="f"), (2, 2, 3), 0),
    (core.Activation(name="a", activation="tanh"), (2, 3), 6),
    (core.Activation(name="a", activation="linear"), (2, 3), 0),
    # per step: x@W 2*3*4 + h@U 2*4*4 + add 4 + bias 4 + tanh 4; 5 steps
    (recurrent.SimpleRNN(name="r", units=4), (5, 3), 5 * (24 + 32 + 4 + 4 + 4)),
    # per step: 2*3*8 + 2*2*8 + add 8 + bias 8 + 5 activations*2 + 4 updates*2
    (recurrent.LSTM(name="r", units=2), (5, 3), 5 * (48 + 32 + 8 + 8 + 10 + 8)),
    # per step: 2*3*6 + 2*2*6 + bias 2*6 (reset_after) + 11*2
    (recurrent.GRU(name="r", units=2), (5, 3), 5 * (36 + 24 + 12 + 22)),
    (recurrent.GRU(name="r", units=2, reset_after=False), (5, 3), 5 * (36 + 24 + 6 + 22)),
])
def test_layer_flops_match_hand_counts(layer, input_shape, expected):
  assert flops.layer_flops(layer, input_shape) == expected


def _bidirectional(merge_mode, sequences):
  def lstm(name, backwards):
    return recurrent.LSTM(name=name, units=2, return_sequences=sequences,
                          go_backwards=backwards, zero_output_for_mask=sequences)
  return recurrent.Bidirectional(name="bi", forward_layer=lstm("f", False),
                                 backward_layer=lstm("b", True), merge_mode=merge_mode)


@pytest.mark.parametrize("merge_mode, sequences, merge_flops", [
    ("concat", False, 0), ("sum", False, 2), ("mul", True, 5 * 2), ("ave", True, 2 * 5 * 2)])
def test_bidirectional_counts_both_directions_and_the_merge(merge_mode, sequences, merge_flops):
  one_direction = 5 * (48 + 32 + 8 + 8 + 10 + 8)  # the LSTM case above
  layer = _bidirectional(merge_mode, sequences)
  assert flops.layer_flops(layer, (5, 3)) == 2 * one_direction + merge_flops


def test_unknown_layer_is_an_error():
  class Foreign(jaxnets.layers.Layer):
    pass
  with pytest.raises(flops.UnknownLayerError, match="Foreign"):
    flops.counter_for(Foreign(name="f"))

  # A subclass of a known layer keeps its formula.
  class Custom(core.Dense):
    pass
  assert flops.layer_flops(Custom(name="c", units=3), (5,)) == 3 * (2 * 5 + 1)


def _model(layers, shapes, **kwargs):
  params = {layer.name: layer.init(jax.random.key(i), shape)
            for i, (layer, shape) in enumerate(zip(layers, shapes))}
  return jaxnets.Model(layers, params, **kwargs)


def test_cnn_model_flops_per_example_and_per_batch():
  model = _model([
      conv.Conv2D(name="conv", filters=4, kernel_size=(3, 3), padding="same", activation="relu"),
      pooling.MaxPooling2D(name="pool", pool_size=(2, 2)),
      core.Flatten(name="flatten"),
      core.Dense(name="out", units=3, activation="softmax")],
      [(8, 8, 2), (8, 8, 4), (4, 4, 4), (64,)], input_shape=(8, 8, 2))
  conv_flops = 8 * 8 * 4 * (2 * 9 * 2 + 1) + 8 * 8 * 4
  pool_flops = 4 * 4 * 4 * 3
  dense_flops = 3 * (2 * 64 + 1) + 3
  assert flops.per_layer(model, (8, 8, 2)) == [
      ("conv", "Conv2D", conv_flops), ("pool", "MaxPooling2D", pool_flops),
      ("flatten", "Flatten", 0), ("out", "Dense", dense_flops)]
  x = np.zeros((5, 8, 8, 2), np.float32)
  assert flops.model_flops(model, x) == 5 * (conv_flops + pool_flops + dense_flops)
  assert not flops.is_text(model)


def test_text_model_counts_each_row_at_its_real_length():
  model = _model([
      embedding.Embedding(name="embedding", input_dim=20, output_dim=3, mask_zero=True),
      recurrent.SimpleRNN(name="rnn", units=4),
      core.Dense(name="out", units=2)],
      [(6,), (6, 3), (4,)], input_shape=(6,), input_dtype="int32")
  tokens = np.array([[5, 6, 0, 0, 0, 0],      # real length 2
                     [1, 2, 3, 4, 5, 0],      # 5
                     [0, 0, 0, 0, 0, 0]],     # 0: only the head runs
                    np.int32)
  assert flops.is_text(model)
  np.testing.assert_array_equal(flops.real_lengths(tokens), [2, 5, 0])
  per_step = 2 * 3 * 4 + 2 * 4 * 4 + 4 + 4 + 4
  head = 2 * (2 * 4 + 1)
  assert flops.model_flops(model, tokens) == per_step * (2 + 5 + 0) + 3 * head
  assert flops.per_layer_total(model, tokens) == [
      ("embedding", "Embedding", 0), ("rnn", "SimpleRNN", per_step * 7),
      ("out", "Dense", 3 * head)]


# ---------------------------------------------------------- bench output
SYSTEMS = ("keras_predict", "keras_call", "port_predict", "port_jit", "tf2jax")


@pytest.fixture(scope="module")
def tiny_results():
  settings = bench.Settings(
      models=("mlp", "lstm"), batch_sizes=(1, 4), systems=SYSTEMS, repeats=2,
      latency_repeats=2, num_inputs=12, max_batches=2, memory=False, cold_start=False,
      tiny=True, log=lambda line: None)
  saved = dict(bench.REQUIRED_PACKAGES)
  # Pretend one peer is not installed: it must be reported, not fail the run.
  bench.REQUIRED_PACKAGES["tf2jax"] = ("jaxnets_bench_no_such_package",)
  try:
    return bench.run(settings, command="pytest")
  finally:
    bench.REQUIRED_PACKAGES.clear()
    bench.REQUIRED_PACKAGES.update(saved)


def test_results_have_every_figure_per_model_system_and_batch(tiny_results):
  results = tiny_results
  assert [r["model"] for r in results["models"]] == ["mlp", "lstm"]
  assert results["matmul_peak_before"]["gflops"] > 0 and results["matmul_peak_after"]["gflops"] > 0
  timed = [s for s in SYSTEMS if s != "tf2jax"]
  for record in results["models"]:
    assert record["systems"]["tf2jax"]["status"] == (
        "skipped (not installed: jaxnets_bench_no_such_package)")
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
        row["layer"] for row in record["flops_per_layer_full_length"]]
    assert all(set(row) >= {"class", "flops", "ms", "share", "gflops"}
               for row in profile["layers"])
  lstm = results["models"][1]
  assert lstm["input_dtype"] == "int32"
  assert 1 <= lstm["latency"]["row_real_length"] <= 16


def test_targets_cover_the_issue_and_missing_peers_are_not_met(tiny_results):
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
  text = bench.markdown(tiny_results)
  assert text.startswith("# jaxnets inference benchmark")
  assert "| model | port | target | measured | required | met |" in text
  for name in ("mlp", "lstm"):
    assert f"## {name}: seeded random" in text
  assert "| tf2jax | skipped (not installed: jaxnets_bench_no_such_package) |" in text
  header = next(line for line in text.splitlines() if line.startswith("| system |"))
  assert "rows/s @1" in header and "rows/s @4" in header and "batch-1 ms" in header
  json.loads(json.dumps(tiny_results, default=bench._json_default))  # pylint: disable=protected-access
  png = tmp_path / "chart.png"
  bench.chart(tiny_results, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trained_models_are_found_in_the_training_layout(tmp_path):
  assert bench.find_trained(str(tmp_path), "cnn") is None
  run = tmp_path / "cnn" / "pooling" / "max" / "seed1"
  run.mkdir(parents=True)
  (run / "model.keras").write_bytes(b"")
  assert bench.find_trained(str(tmp_path), "cnn") == str(run / "model.keras")
  (tmp_path / "cnn.keras").write_bytes(b"")  # an explicit file wins
  assert bench.find_trained(str(tmp_path), "cnn") == str(tmp_path / "cnn.keras")
  (tmp_path / "lstm" / "layers" / "1-layer" / "seed0").mkdir(parents=True)
  (tmp_path / "lstm" / "layers" / "1-layer" / "seed0" / "model.keras").write_bytes(b"")
  assert bench.find_trained(str(tmp_path), "lstm") is None  # not the 2-layer architecture


def test_a_trained_string_model_is_timed_on_token_ids(tmp_path):
  bench._keras()  # pylint: disable=protected-access
  from train import models  # pylint: disable=import-outside-toplevel
  vectorizer = models.make_vectorizer(np.array(["a b c d", "e f g", "h"], dtype=object),
                                      sequence_length=8)
  models.build_text(vectorizer, cell="simple_rnn", units=(4,), embedding_dim=4,
                    name="rnn").save(tmp_path / "rnn.keras")
  results = bench.run(bench.Settings(
      models=("rnn",), batch_sizes=(2,), systems=("keras_predict", "port_predict"),
      repeats=1, latency_repeats=1, num_inputs=4, memory=False, cold_start=False, tiny=True,
      workdir=str(tmp_path), log=lambda line: None))
  record = results["models"][0]
  assert record["weights"].startswith("trained (") and "rnn.keras" in record["weights"]
  assert record["input_dtype"] == "int32" and record["input_shape"] == [8]
  for system in ("keras_predict", "port_predict"):
    assert record["systems"][system]["status"] == "ok"
    assert record["systems"][system]["agreement"]["max_abs_diff"] <= 1e-5


def test_unknown_model_or_system_is_rejected():
  with pytest.raises(ValueError, match="unknown models"):
    bench.run(bench.Settings(models=("vgg",)))
  with pytest.raises(ValueError, match="unknown systems"):
    bench.run(bench.Settings(systems=("pytorch",)))


def test_command_line_run_with_memory_and_cold_start(tmp_path):
  """The CLI end to end: stdout table, JSON with memory and cold start, PNG."""
  json_out, chart_out = tmp_path / "bench.json", tmp_path / "bench.png"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  done = subprocess.run(
      [sys.executable, "-m", "port.bench", "--tiny", "--models=mlp", "--batch_sizes=2",
       "--systems=keras_predict,port_predict", "--repeats=1", "--latency_repeats=2",
       "--num_inputs=4", "--cold_start_repeats=1", f"--json_out={json_out}",
       f"--chart_out={chart_out}"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "## mlp: seeded random" in done.stdout
  results = json.loads(json_out.read_text())
  assert results["markdown"] in done.stdout
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


def test_command_line_rejects_bad_flags():
  done = subprocess.run([sys.executable, "-m", "port.bench", "--models=vgg", "--tiny"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode != 0
  assert "unknown models" in done.stderr
