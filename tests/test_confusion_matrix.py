"""Each study writes its best variant's test-set confusion matrix.

Every run stores the counts (``test.confusion_matrix`` in ``result.json``: rows
true class, columns predicted), so the figure ``confusion_matrix.png`` is rebuilt
from ``result.json`` alone; a study whose runs predate the counts still reports,
without the figure. A tiny real study (MNIST recipe) checks the whole path,
including the copy into ``--export_dir``.
"""

import json

import numpy as np
import pytest

from train import report
from train import runner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(variant: str, seed: int, f1: float, matrix=None) -> dict:
  test = {
    "keras_macro_f1": f1,
    "keras_accuracy": f1,
    "port_macro_f1": f1,
    "agreement_pct": 100.0,
    "max_abs_diff": 0.0,
    "keras_infer_s": 0.1,
    "port_infer_s": 0.05,
  }
  if matrix is not None:
    test["confusion_matrix"] = matrix
  train = {"epochs_run": 2, "best_epoch": 2, "best_val_loss": 0.5, "train_time_s": 1.0}
  return {"variant": variant, "seed": seed, "test": test, "train": train}


def _write(tmp_path, records):
  return report.write_study(
    tmp_path,
    title="NusaX: direction study",
    varies="direction",
    variants=[("uni", "uni"), ("bi", "bi")],
    records=records,
    histories={},
    settings={},
    class_names=("negative", "neutral", "positive"),
  )


def test_best_variant_matrices_are_summed_over_seeds(tmp_path):
  a = [[3, 1, 0], [0, 2, 1], [0, 0, 4]]
  b = [[2, 0, 0], [1, 3, 0], [0, 1, 5]]
  records = [
    _record("uni", 0, 0.5, [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    _record("bi", 0, 0.8, a),
    _record("bi", 1, 0.9, b),
  ]
  variant, counts, seeds = report.best_confusion(
    report.summarize([("uni", ""), ("bi", "")], records), records
  )
  assert (variant, seeds) == ("bi", 2)
  np.testing.assert_array_equal(counts, np.add(a, b))

  paths = _write(tmp_path, records)
  assert paths["confusion"] == tmp_path / report.CONFUSION_FILE
  assert paths["confusion"].read_bytes().startswith(PNG_MAGIC)
  assert f"]({report.CONFUSION_FILE})" in paths["md"].read_text(encoding="utf-8")


def test_old_results_without_counts_still_report_without_the_figure(tmp_path):
  (tmp_path / report.CONFUSION_FILE).write_bytes(b"stale")
  records = [_record("uni", 0, 0.5), _record("bi", 0, 0.8)]
  paths = _write(tmp_path, records)
  assert "confusion" not in paths
  assert not (tmp_path / report.CONFUSION_FILE).exists()  # no stale figure left behind
  assert paths["png"].is_file() and paths["md"].is_file()
  assert report.CONFUSION_FILE not in paths["md"].read_text(encoding="utf-8")


def test_a_study_stores_counts_and_writes_and_exports_the_figure(real_data_dir, tmp_path):
  settings = runner.Settings(
    data_dir=str(real_data_dir),
    verbose=0,
    timing_repeats=1,
    seeds=1,
    epochs=1,
    max_train_rows=500,
    max_test_rows=120,
  )
  [output] = runner.run(
    "mlp", "recipe", tmp_path / "runs", settings, export_dir=tmp_path / "export", log=lambda _: None
  )
  [result_file] = list(output.directory.glob("*/seed*/result.json"))
  with open(result_file, encoding="utf-8") as f:
    test = json.load(f)["test"]
  counts = np.asarray(test["confusion_matrix"])
  assert counts.shape == (10, 10) and counts.sum() == test["rows"] == 120
  assert np.trace(counts) / counts.sum() == pytest.approx(test["keras_accuracy"])

  figure = output.directory / report.CONFUSION_FILE
  assert output.paths["confusion"] == figure
  assert figure.read_bytes().startswith(PNG_MAGIC)
  exported = tmp_path / "export" / "mlp" / "recipe" / report.CONFUSION_FILE
  assert exported.read_bytes() == figure.read_bytes()
