"""The ``best`` studies (issue 15) end to end on tiny slices, and their recipe pieces.

Each family's ``best`` study runs through ``train.runner.run`` (what
``python -m train --family=<f> --study=best`` calls) on a few hundred rows for
one epoch: every variant must train, be saved, and port with 100 % agreement,
including the models whose training-only layers (spatial dropout, random flip /
translation) the port cannot read and which are removed before saving.
To stay within CI's budget each family trains two of its variants here (the best
recipe and one ablation); every variant's model is still built below.
"""

import dataclasses
import json
import types

import numpy as np
import pytest

import port

from train import best_tables
from train import data as data_lib
from train import recipes
from train import report
from train import runner
from train import studies

TINY = {
  "lstm": dict(seeds=1, epochs=1, max_train_rows=40, max_test_rows=60),
  "rnn": dict(seeds=1, epochs=1, max_train_rows=40, max_test_rows=60),
  "mlp": dict(seeds=1, epochs=1, max_train_rows=300, max_test_rows=200),
  "cnn": dict(seeds=1, epochs=1, max_train_rows=128, max_test_rows=100),
}
# Variants trained here: the best recipe and the ablation that changes the most
# code (each run costs seconds of compilation and a port check).
TRAINED = {
  "lstm": ("best", "-bidirectional"),
  "rnn": ("best", "-clipnorm"),
  "mlp": ("best", "-shift"),
  "cnn": ("best", "-batch-norm"),
}


def _settings(data_dir, **kwargs) -> runner.Settings:
  return runner.Settings(data_dir=str(data_dir), verbose=0, timing_repeats=1, **kwargs)


@pytest.mark.parametrize("family", ["lstm", "rnn", "mlp", "cnn"])
def test_best_study_end_to_end(family, real_data_dir, tmp_path, monkeypatch):
  best = studies.BEST_FAMILIES[family]
  study = best.study(studies.BEST)
  kept = tuple(v for v in study.variants if v.name in TRAINED[family])
  assert len(kept) == len(TRAINED[family])
  best = dataclasses.replace(best, studies=(dataclasses.replace(study, variants=kept),))
  monkeypatch.setitem(studies.BEST_FAMILIES, family, best)
  settings = _settings(real_data_dir, **TINY[family])
  [output] = runner.run(family, studies.BEST, tmp_path, settings)
  names = [v.name for v in best.study(studies.BEST).variants]
  rows = report.read_csv(output.directory / "results.csv")
  assert [r["variant"] for r in rows] == names
  for row in rows:
    assert float(row["agreement_pct_min"]) == 100.0
    assert float(row["max_abs_diff_max"]) <= port.comparison.HEADLINE_ATOL
  markdown = (output.directory / "results.md").read_text()
  assert "best recipe, then minus one trick" in markdown
  assert recipes.describe(best.base, settings.recipe(best)) in markdown
  for name in names:
    run_dir = output.directory / name / "seed0"
    record = json.loads((run_dir / "result.json").read_text())
    assert record["test"]["agreement_pct"] == 100.0
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["val_loss"]) == 1
    assert record["variant"] == name and record["config"]["optimizer"] in recipes.OPTIMIZERS
  _check_extra_table(family, output.directory, real_data_dir)


def _check_extra_table(family, study_dir, data_dir):
  """The study's extra table (every language / flip averaging) read off its
  saved models: ``python -m train.best_tables``'s work, on a few test rows."""
  if family == "lstm":
    rows = best_tables.language_table(study_dir, data_dir, "best", max_test_rows=30)
    assert [r["lang"] for r in rows] == list(data_lib.NUSAX_LANGUAGES)
    markdown = best_tables.language_markdown(rows, "t")
  elif family == "cnn":
    rows = best_tables.flip_table(study_dir, data_dir, "best", max_test_rows=40)
    assert [r["seed"] for r in rows] == ["seed0"]
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("flip_macro_f1", "flip_accuracy"))
    markdown = best_tables.flip_markdown(rows, "t")
    assert "| mean of 2 |" in best_tables.flip_markdown(rows + rows, "t")
  else:
    return
  assert all(r.get("agreement_pct", r.get("agreement_pct_min")) == 100.0 for r in rows)
  assert markdown.count("\n| ") == len(rows) + 1  # the header and one line per row


def test_best_tables_name_what_is_missing(tmp_path):
  with pytest.raises(ValueError, match="table must be one of"):
    best_tables.make_table("accuracy", tmp_path)
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    best_tables.make_table("flip", tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="no -cosine/seed\\*/model.keras"):
    best_tables.make_table("flip", tmp_path, variant="-cosine")


def test_text_training_rows_add_every_languages_train_file(real_data_dir):
  settings = _settings(real_data_dir, max_train_rows=25)
  family, _ = studies.resolve("lstm", studies.BEST)[0]
  dataset = runner.load_dataset(family, settings)
  _, train = recipes.split_config(family.base)
  x, y = recipes.training_rows(dataset, train, settings)
  assert len(train["train_langs"]) == 11 and "indonesian" not in train["train_langs"]
  assert len(x) == len(y) == 12 * 25
  # The parallel corpus: the same 25 rows, with the same labels, in every language.
  np.testing.assert_array_equal(y, np.tile(dataset.y_train, 12))
  # Training files only: validation/test rows stay the evaluated language's.
  javanese = data_lib.load_nusax("javanese", real_data_dir)
  assert set(x[25 * 6 : 25 * 7]) <= set(javanese.train_texts)
  assert not set(x) & (set(dataset.x_test) - set(dataset.x_train))


@pytest.mark.parametrize("family", ["lstm", "rnn", "mlp", "cnn"])
def test_every_ablation_removes_one_trick_and_builds(family):
  best = studies.BEST_FAMILIES[family]
  study = best.study(studies.BEST)
  assert study.variants[0].name == "best" and not study.variants[0].overrides
  texts = np.array(["satu dua tiga", "empat lima"], dtype=object)
  for variant in study.variants[1:]:
    config = best.config(variant)
    changed = {k for k in config if config[k] != best.base[k]}
    assert changed and changed == set(variant.overrides), variant.name
    model_kwargs, _ = recipes.split_config(config)
    model = recipes.build(best.builder, model_kwargs, texts, 3 if family in ("lstm", "rnn") else 10)
    assert model.count_params() > 0


def test_cosine_schedule_warms_up_then_decays():
  _, train = recipes.split_config({"schedule": "cosine", "warmup_epochs": 1})
  lr = recipes.learning_rate(train, 2e-3, total_steps=110, steps_per_epoch=10)
  values = [float(lr(step)) for step in (0, 5, 10, 60, 110)]
  assert values[0] == 0.0 and values[1] == pytest.approx(1e-3)
  assert values[2] == pytest.approx(2e-3) and values[3] == pytest.approx(1e-3, rel=1e-3)
  assert values[4] == pytest.approx(0.0, abs=1e-9)
  _, constant = recipes.split_config({})
  assert recipes.learning_rate(constant, 2e-3, 110, 10) == 2e-3


def test_bad_recipe_values_are_refused_by_name():
  with pytest.raises(ValueError, match="optimizer must be one of"):
    recipes.split_config({"optimizer": "lion"})
  with pytest.raises(ValueError, match="schedule must be one of"):
    recipes.split_config({"schedule": "step"})
  _, train = recipes.split_config({"weight_decay": 1e-4})
  with pytest.raises(ValueError, match="weight_decay needs optimizer adamw"):
    recipes.make_optimizer(train, 1e-3, 10, 1)


def test_best_is_selected_by_name_and_left_out_of_all(real_data_dir, tmp_path):
  [(family, study)] = studies.resolve("rnn", studies.BEST)
  assert study.name == studies.BEST and family.name == "rnn"
  assert studies.BEST not in [s.name for _, s in studies.resolve("rnn", studies.ALL)]
  with pytest.raises(runner.ConfigError, match="best studies train with Keras only"):
    runner.run("rnn", studies.BEST, tmp_path, _settings(real_data_dir, trainer="jax"))


def test_loss_curves_name_the_smoothed_loss():
  cnn = studies.BEST_FAMILIES["cnn"]
  jobs = {v.name: types.SimpleNamespace(config=cnn.config(v)) for v in cnn.study("best").variants}
  label = runner._loss_label(list(jobs.values()))  # pylint: disable=protected-access
  assert label == "cross-entropy (label smoothing 0.1 where set)"
  unsmoothed = runner._loss_label([jobs["-label-smoothing"]])  # pylint: disable=protected-access
  assert unsmoothed == "sparse categorical cross-entropy"
