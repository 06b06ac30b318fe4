"""End-to-end tests of the study runner (``python -m train``) on tiny slices.

Every family trains for one or two epochs on a few hundred rows through
``train.runner.run`` — the function the CLI calls — and must write well-formed
tables, a loss figure, per-run models/histories/results, with its port agreeing
with Keras on 100% of the test rows. A run killed part-way and re-run must give
the same tables as an uninterrupted one; bad flags must fail before any work.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

import port

from train import report
from train import runner
from train import studies

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Tiny but real: every family, its real data, 1-2 epochs.
CNN_SETTINGS = dict(seeds=2, epochs=2, max_train_rows=256, max_test_rows=200)
TEXT_SETTINGS = dict(seeds=1, epochs=1, max_train_rows=200, max_test_rows=100)
MLP_SETTINGS = dict(seeds=1, epochs=2, max_train_rows=1000, max_test_rows=300)


def _settings(data_dir, **kwargs) -> runner.Settings:
  return runner.Settings(data_dir=str(data_dir), verbose=0, timing_repeats=1, **kwargs)


def _without_timing(rows):
  return [{k: v for k, v in row.items() if k not in report.TIMING_COLUMNS} for row in rows]


def _check_study_outputs(output: runner.StudyOutput, family: str, study: str, seeds: int):
  """Asserts that a finished study wrote everything, well-formed, with an exact port."""
  fam = studies.FAMILIES[family]
  variants = [v.name for v in fam.study(study).variants]
  directory = output.directory
  for name in ("results.csv", "runs.csv", "results.md", "loss_curves.png"):
    assert (directory / name).is_file(), f"missing {name}"
  assert (directory / "loss_curves.png").read_bytes().startswith(PNG_MAGIC)

  rows = report.read_csv(directory / "results.csv")
  assert [r["variant"] for r in rows] == variants
  for row in rows:
    assert int(row["seeds"]) == seeds
    assert float(row["agreement_pct_min"]) == 100.0
    assert float(row["max_abs_diff_max"]) <= port.comparison.HEADLINE_ATOL
    assert float(row["port_macro_f1_mean"]) == float(row["macro_f1_mean"])
    assert 0.0 <= float(row["macro_f1_mean"]) <= 1.0
    assert 0.0 <= float(row["accuracy_mean"]) <= 1.0
    assert float(row["train_time_s_mean"]) > 0 and float(row["port_infer_s_mean"]) > 0
    assert (row["macro_f1_std"] == "") == (seeds == 1)  # no std from one seed
  assert len(report.read_csv(directory / "runs.csv")) == len(variants) * seeds

  markdown = (directory / "results.md").read_text()
  assert "Partial report" not in markdown
  assert "![training and validation loss per epoch](loss_curves.png)" in markdown
  for name in variants:
    assert f"| {name} |" in markdown

  for name in variants:
    for seed in range(seeds):
      run_dir = directory / name / f"seed{seed}"
      assert (run_dir / "model.keras").is_file()
      record = json.loads((run_dir / "result.json").read_text())
      history = json.loads((run_dir / "history.json").read_text())
      assert record["variant"] == name and record["seed"] == seed
      assert record["test"]["agreement_pct"] == 100.0
      epochs = record["train"]["epochs_run"]
      assert 1 <= record["train"]["best_epoch"] <= epochs
      for key in ("loss", "val_loss", "accuracy", "val_accuracy", "epoch_time_s"):
        assert len(history[key]) == epochs and all(math.isfinite(v) for v in history[key])


@pytest.fixture(scope="module")
def cnn_reference(real_data_dir, tmp_path_factory):
  """The uninterrupted tiny CNN pooling study (2 variants x 2 seeds)."""
  workdir = tmp_path_factory.mktemp("cnn_reference")
  [output] = runner.run("cnn", "pooling", workdir, _settings(real_data_dir, **CNN_SETTINGS))
  return workdir, output


def test_cnn_end_to_end(cnn_reference):
  _, output = cnn_reference
  _check_study_outputs(output, "cnn", "pooling", seeds=2)


@pytest.mark.parametrize("family", ["rnn", "lstm"])
def test_text_end_to_end(family, real_data_dir, tmp_path):
  [output] = runner.run(family, "direction", tmp_path, _settings(real_data_dir, **TEXT_SETTINGS))
  _check_study_outputs(output, family, "direction", seeds=1)


def test_mlp_end_to_end(real_data_dir, tmp_path):
  [output] = runner.run("mlp", "recipe", tmp_path, _settings(real_data_dir, **MLP_SETTINGS))
  _check_study_outputs(output, "mlp", "recipe", seeds=1)


class _Killed(BaseException):
  """Stands in for a SIGKILL/Ctrl-C in the middle of a run."""


def test_killed_then_resumed_run_gives_the_same_tables(
  cnn_reference, real_data_dir, tmp_path, monkeypatch
):
  _, reference = cnn_reference
  settings = _settings(real_data_dir, **CNN_SETTINGS)
  real_train = runner.train_and_check
  calls = []

  def train_then_die_on_third_run(job, dataset, settings):
    calls.append(job.run_dir)
    if len(calls) == 3:
      # Die half-way through: the model is written, result.json is not.
      job.run_dir.mkdir(parents=True)
      (job.run_dir / "model.keras").write_bytes(b"half a zip file")
      raise _Killed()
    return real_train(job, dataset, settings)

  monkeypatch.setattr(runner, "train_and_check", train_then_die_on_third_run)
  with pytest.raises(_Killed):
    runner.run("cnn", "pooling", tmp_path, settings)
  half_done = tmp_path / "cnn" / "pooling" / "avg" / "seed0"
  assert (half_done / "model.keras").exists() and not (half_done / "result.json").exists()
  assert (
    "Partial report: 2 of 4 runs finished (1 of 2 variants have results)"
    in (tmp_path / "cnn/pooling/results.md").read_text()
  )

  # --report_only: the report again from the finished runs; nothing trains.
  (tmp_path / "cnn/pooling/results.md").unlink()
  monkeypatch.setattr(runner, "train_and_check", lambda *a: pytest.fail("report_only trained"))
  export = tmp_path / "exported"
  [reported] = runner.run("cnn", "pooling", tmp_path, settings, report_only=True, export_dir=export)
  assert (
    "Partial report: 2 of 4 runs finished (1 of 2 variants have results)"
    in (reported.directory / "results.md").read_text()
  )
  assert [r["variant"] for r in report.read_csv(reported.directory / "runs.csv")] == ["max"] * 2
  assert (export / "cnn/pooling/results.md").read_bytes() == (
    reported.directory / "results.md"
  ).read_bytes()
  assert not (half_done / "result.json").exists()
  logs = []
  assert (
    runner.run("cnn", "base", tmp_path / "empty", settings, report_only=True, log=logs.append) == []
  )
  assert any("no finished run" in line for line in logs)

  trained = []
  monkeypatch.setattr(
    runner, "train_and_check", lambda job, *a: trained.append(job.run_dir) or real_train(job, *a)
  )
  [resumed] = runner.run("cnn", "pooling", tmp_path, settings)
  # Only the killed run and the one never started were trained again.
  assert trained == [half_done, tmp_path / "cnn" / "pooling" / "avg" / "seed1"]
  _check_study_outputs(resumed, "cnn", "pooling", seeds=2)
  for name in ("results.csv", "runs.csv"):
    assert _without_timing(report.read_csv(resumed.directory / name)) == _without_timing(
      report.read_csv(reference.directory / name)
    ), name


def test_base_variant_is_shared_between_studies(cnn_reference, real_data_dir, monkeypatch):
  workdir, _ = cnn_reference
  trained = []
  real_train = runner.train_and_check
  monkeypatch.setattr(
    runner,
    "train_and_check",
    lambda job, *a: trained.append(job.variant.name) or real_train(job, *a),
  )
  settings = _settings(real_data_dir, **dict(CNN_SETTINGS, seeds=1))
  [output] = runner.run("cnn", "kernels", workdir, settings)
  assert trained == ["5-5-5", "3-5-7"]  # 3-3-3 is the base: the pooling study's "max" run
  record = json.loads((output.directory / "3-3-3" / "seed0" / "result.json").read_text())
  assert record["reused_from"] == os.path.join("cnn", "pooling", "max", "seed0")
  _check_study_outputs(output, "cnn", "kernels", seeds=1)
  # The "base" study is the base config alone: nothing new to train.
  [base] = runner.run("cnn", "base", workdir, settings)
  assert trained == ["5-5-5", "3-5-7"]
  _check_study_outputs(base, "cnn", "base", seeds=1)


def test_other_settings_in_the_same_workdir_are_refused(cnn_reference, real_data_dir):
  workdir, _ = cnn_reference
  settings = _settings(real_data_dir, **dict(CNN_SETTINGS, epochs=3))
  with pytest.raises(runner.SettingsMismatchError, match="other settings"):
    runner.run("cnn", "pooling", workdir, settings)


def test_port_disagreement_fails_the_run(real_data_dir, tmp_path, monkeypatch):
  # A bound of 0: no float32 port is exactly the float64 result.
  monkeypatch.setattr(port.comparison, "FACTOR", 0.0)
  monkeypatch.setattr(port.comparison, "FLOOR", 0.0)
  with pytest.raises(runner.PortMismatchError, match="distance from the float64 reference"):
    runner.run("mlp", "recipe", tmp_path, _settings(real_data_dir, **MLP_SETTINGS))
  run_dir = tmp_path / "mlp" / "recipe" / "256-128" / "seed0"
  assert (run_dir / runner.PORT_FAILURE_FILE).is_file()
  assert not (run_dir / "result.json").exists()  # never counted as finished


def _cli(*args, env=None, timeout=120):
  return subprocess.run(
    [sys.executable, "-m", "train", *args],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )


@pytest.mark.parametrize(
  "args, message",
  [
    (["--family=bogus"], "--family=bogus: value should be one of"),
    (["--family=lstm", "--study=pooling"], "unknown study 'pooling' for family 'lstm'"),
    (["--family=cnn", "--epochs=0"], "--epochs=0: 0 is not a positive integer"),
    (["--family=rnn", "--seeds=-2"], "--seeds=-2"),
    (["--study=layers"], "--family must have a value"),
    (["--family=all", "--study=cells"], "--family=all runs every study"),
    (["--family=mlp", "stray"], "unexpected positional arguments: stray"),
  ],
)
def test_bad_flags_are_rejected_before_any_work(args, message, tmp_path):
  result = _cli(*args, f"--workdir={tmp_path / 'runs'}")
  assert result.returncode != 0
  assert message in result.stderr + result.stdout
  assert not (tmp_path / "runs").exists()  # nothing was started


def test_cli_runs_a_study_and_says_where_the_results_are(real_data_dir, tmp_path):
  env = dict(os.environ, JAXNETS_DATA_DIR=str(real_data_dir))
  result = _cli(
    "--family=mlp",
    "--seeds=1",
    "--epochs=1",
    "--max_train_rows=300",
    "--max_test_rows=100",
    f"--workdir={tmp_path}",
    env=env,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"mlp/recipe: {tmp_path / 'mlp' / 'recipe'}" in result.stdout
  assert "[variant 1/1 '256-128', seed 1/1 (seed=0)] training" in result.stdout
  assert "val_loss: " in result.stdout  # Keras's per-epoch line (verbose=2)
  assert (tmp_path / "mlp" / "recipe" / "results.md").is_file()


@pytest.mark.parametrize(
  "family, study, settings, message",
  [
    ("bogus", "all", {}, "unknown family 'bogus'"),
    ("rnn", "pooling", {}, "unknown study 'pooling' for family 'rnn'"),
    ("mlp", "all", {"seeds": 0}, "seeds must be a positive integer"),
    ("lstm", "all", {"epochs": -1}, "epochs must be a positive integer"),
    ("lstm", "all", {"lang": "klingon"}, "unknown NusaX language 'klingon'"),
  ],
)
def test_run_rejects_bad_requests_before_any_work(family, study, settings, message, tmp_path):
  with pytest.raises(runner.ConfigError, match=message):
    runner.run(family, study, tmp_path / "runs", runner.Settings(**settings))
  assert not (tmp_path / "runs").exists()


def test_jax_trainer_runs_a_study_and_its_models_round_trip_to_keras(tmp_path, real_data_dir):
  """--trainer=jax: same study outputs, each JAX-trained model checked via to_keras."""
  settings = runner.Settings(
    seeds=1,
    epochs=2,
    max_train_rows=120,
    max_test_rows=60,
    data_dir=str(real_data_dir),
    verbose=0,
    timing_repeats=1,
    trainer="jax",
  )
  outputs = runner.run("rnn", "direction", tmp_path, settings, log=lambda _: None)
  study_dir = tmp_path / "jax" / "rnn" / "direction"
  assert outputs[0].directory == study_dir or str(outputs[0].directory) == str(study_dir)
  for name in ("results.md", "results.csv", "loss_curves.png"):
    assert (study_dir / name).stat().st_size > 0
  records = [json.loads(p.read_text()) for p in study_dir.glob("*/seed*/result.json")]
  assert len(records) == 2
  for record in records:
    assert record["train"]["trainer"] == "jax"
    assert record["test"]["agreement_pct"] == 100.0
    assert record["test"]["max_abs_diff"] <= 1e-5
  assert not list(study_dir.glob("*/.checkpoints-*"))  # cleaned up after success
