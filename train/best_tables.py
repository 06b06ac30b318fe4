"""Tables read off a finished ``best`` study's saved models (issue 15).

Two questions the study's own table does not answer, both asked of the models
one variant saved (one per seed, ``<study dir>/<variant>/seed*/model.keras``):

- ``--table=languages`` (text): test macro F1 on **every** NusaX language's
  official test file, for a model trained on every language's training file and
  selected on the Indonesian validation file;
- ``--table=flip`` (images): test macro F1 without and with **test-time flip
  averaging** (the mean of the softmax outputs for each image and its
  left-right mirror), reported apart from the study's figure because the model
  alone does not do it.

Predictions come from the port (``port.load`` of the saved model); Keras
predicts the same rows and the agreement of the two argmaxes is a column, so a
table that disagrees with Keras shows it.

Usage::

  python -m train.best_tables --table=languages --study_dir=runs/best/lstm/best \\
      --variant=best --out=results/lstm/best/languages.md
  python -m train.best_tables --table=flip --study_dir=runs/best/cnn/best \\
      --out=results/cnn/best/flip_tta.md
"""

from __future__ import annotations

import pathlib
import statistics

from absl import app
from absl import flags

from flags import common as common_flags
from train import report

TABLES = ("languages", "flip")

TABLE = flags.DEFINE_enum("table", None, TABLES, "Which table: languages (text) or flip (images).")
STUDY_DIR = flags.DEFINE_string(
  "study_dir", None, "A best study's directory, e.g. runs/best/cnn/best."
)
VARIANT = flags.DEFINE_string("variant", "best", "The variant whose saved models are read.")
OUT = flags.DEFINE_string(
  "out", None, "Markdown file to write (atomically); the table is printed either way."
)
MAX_TEST_ROWS = flags.DEFINE_integer(
  "max_test_rows",
  None,
  "Keep a fixed random subset of each test set (quick checks); all rows by default.",
  lower_bound=1,
)


def _load_models(study_dir, variant: str):
  """``[(seed dir name, Keras model, ported model)]`` of ``variant``'s runs."""
  import keras  # pylint: disable=import-outside-toplevel

  import port  # pylint: disable=import-outside-toplevel

  paths = sorted(pathlib.Path(study_dir, variant).glob("seed*/model.keras"))
  if not paths:
    raise FileNotFoundError(
      f"no {variant}/seed*/model.keras under {study_dir} (has the study finished a run of "
      f"variant {variant!r}?)"
    )
  return [(p.parent.name, keras.saving.load_model(p), port.load(str(p))) for p in paths]


def _macro_f1(labels, pred, num_classes: int) -> float:
  from sklearn.metrics import f1_score  # pylint: disable=import-outside-toplevel

  return float(f1_score(labels, pred, average="macro", labels=list(range(num_classes))))


def _predict_both(keras_model, ported, x):
  """(port softmax, Keras softmax) for ``x``, batches of 256."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from train import keras_inputs  # pylint: disable=import-outside-toplevel

  ours = np.asarray(ported.predict(x, batch_size=256))
  ref = keras_model.predict(**keras_inputs.predict_arguments(x, 256), verbose=0)
  return ours, np.asarray(ref)


# ------------------------------------------------------------ every language's test set


def language_table(
  study_dir, data_dir=None, variant: str = "best", max_test_rows: int | None = None
) -> list[dict]:
  """One row per NusaX language: ``lang``, ``seeds``, ``macro_f1_mean``,
  ``macro_f1_std`` (sample std over seeds), ``accuracy_mean``,
  ``agreement_pct_min`` (port vs Keras argmax, worst seed)."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from train import data as data_lib  # pylint: disable=import-outside-toplevel
  from train import fitting  # pylint: disable=import-outside-toplevel

  models = _load_models(study_dir, variant)
  rows = []
  for lang in data_lib.NUSAX_LANGUAGES:
    d = data_lib.load_nusax(lang, data_dir)
    x, y = fitting.subsample(d.test_texts, d.test_labels, max_test_rows)
    f1s, accs, agree = [], [], []
    for _, keras_model, ported in models:
      ours, ref = _predict_both(keras_model, ported, x)
      pred = ours.argmax(-1)
      agree.append(100.0 * float(np.mean(pred == ref.argmax(-1))))
      f1s.append(_macro_f1(y, pred, d.num_classes))
      accs.append(float(np.mean(pred == y)))
    f1_mean, f1_std = report.mean_std(f1s)
    rows.append(
      {
        "lang": lang,
        "seeds": len(models),
        "macro_f1_mean": f1_mean,
        "macro_f1_std": f1_std,
        "accuracy_mean": statistics.mean(accs),
        "agreement_pct_min": min(agree),
      }
    )
  return rows


def language_markdown(rows: list[dict], title: str) -> str:
  """The 12-row table as markdown."""
  lines = [
    f"# {title}",
    "",
    "Test-set macro F1 of the variant's models (one per seed; mean ± sample std) on "
    "each language's official test file. Training used every language's *training* file; "
    "validation (early stopping) used the Indonesian validation file only. Predictions by "
    "the port; agreement with Keras's predictions on the same rows in the last column.",
    "",
    "| language | seeds | macro F1 | accuracy % | port/Keras agreement % |",
    "|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['lang']} | {r['seeds']} | {r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f} | "
      f"{100 * r['accuracy_mean']:.2f} | {r['agreement_pct_min']:.2f} |"
    )
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------ test-time flip averaging


def flip_table(
  study_dir, data_dir=None, variant: str = "best", max_test_rows: int | None = None
) -> list[dict]:
  """One row per seed on the CIFAR-10 test set: ``seed``, ``macro_f1`` and
  ``accuracy`` of the model alone, ``flip_macro_f1`` and ``flip_accuracy`` with
  flip averaging, ``agreement_pct`` (port vs Keras argmax; the lower of the
  plain and the flip-averaged predictions).

  Images are NHWC, so the mirror is ``x[:, :, ::-1, :]`` (width reversed).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel

  from train import data as data_lib  # pylint: disable=import-outside-toplevel
  from train import fitting  # pylint: disable=import-outside-toplevel

  models = _load_models(study_dir, variant)
  d = data_lib.load_cifar10(data_dir)
  x, y = fitting.subsample(d.x_test, d.y_test, max_test_rows)
  mirrored = np.ascontiguousarray(x[:, :, ::-1, :])
  rows = []
  for seed, keras_model, ported in models:
    ours, ref = _predict_both(keras_model, ported, x)
    ours_m, ref_m = _predict_both(keras_model, ported, mirrored)
    plain, flip = ours.argmax(-1), (ours + ours_m).argmax(-1)
    agree = min(np.mean(plain == ref.argmax(-1)), np.mean(flip == (ref + ref_m).argmax(-1)))
    rows.append(
      {
        "seed": seed,
        "macro_f1": _macro_f1(y, plain, d.num_classes),
        "accuracy": float(np.mean(plain == y)),
        "flip_macro_f1": _macro_f1(y, flip, d.num_classes),
        "flip_accuracy": float(np.mean(flip == y)),
        "agreement_pct": 100.0 * float(agree),
      }
    )
  return rows


def flip_markdown(rows: list[dict], title: str) -> str:
  """Per-seed rows and a mean ± sample std row, as markdown."""
  lines = [
    f"# {title}",
    "",
    "Test-set macro F1 / accuracy of each seed's model alone and with test-time flip "
    "averaging (mean of the softmax outputs for the image and its left-right mirror). "
    "Predictions by the port; the last column is its agreement with Keras on the same "
    "rows (the lower of the plain and the flip-averaged predictions).",
    "",
    "| seed | macro F1 | accuracy % | macro F1, flip-averaged | accuracy %, flip-averaged "
    "| gain (F1) | port/Keras agreement % |",
    "|---|---|---|---|---|---|---|",
  ]

  def line(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"

  for r in rows:
    lines.append(
      line(
        r["seed"],
        f"{r['macro_f1']:.3f}",
        f"{100 * r['accuracy']:.2f}",
        f"{r['flip_macro_f1']:.3f}",
        f"{100 * r['flip_accuracy']:.2f}",
        f"{r['flip_macro_f1'] - r['macro_f1']:+.3f}",
        f"{r['agreement_pct']:.2f}",
      )
    )
  if len(rows) > 1:
    stats = {
      k: report.mean_std([r[k] for r in rows])
      for k in ("macro_f1", "accuracy", "flip_macro_f1", "flip_accuracy")
    }
    gains = report.mean_std([r["flip_macro_f1"] - r["macro_f1"] for r in rows])

    def ms(key, scale=1.0, digits=3):
      m, s = stats[key]
      return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"

    lines.append(
      line(
        f"mean of {len(rows)}",
        ms("macro_f1"),
        ms("accuracy", 100, 2),
        ms("flip_macro_f1"),
        ms("flip_accuracy", 100, 2),
        f"{gains[0]:+.3f} ± {gains[1]:.3f}",
        f"{min(r['agreement_pct'] for r in rows):.2f}",
      )
    )
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ main


def make_table(
  table: str,
  study_dir,
  variant: str = "best",
  data_dir=None,
  max_test_rows: int | None = None,
) -> str:
  """The markdown of ``table`` (one of :data:`TABLES`) for ``variant``'s models."""
  if table not in TABLES:
    raise ValueError(f"table must be one of {', '.join(TABLES)}, got {table!r}")
  study_dir = pathlib.Path(study_dir)
  if not study_dir.is_dir():
    raise FileNotFoundError(f"--study_dir {str(study_dir)!r} is not a directory")
  name = f"{study_dir.parent.name} {study_dir.name} study, variant {variant!r}"
  if table == "languages":
    rows = language_table(study_dir, data_dir, variant, max_test_rows)
    return language_markdown(rows, f"{name} (NusaX-Senti): every language's test set")
  rows = flip_table(study_dir, data_dir, variant, max_test_rows)
  return flip_markdown(rows, f"{name} (CIFAR-10 test set): test-time flip averaging")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  text = make_table(
    TABLE.value, STUDY_DIR.value, VARIANT.value, common_flags.DATA_DIR.value, MAX_TEST_ROWS.value
  )
  if OUT.value:
    report.atomic_write(pathlib.Path(OUT.value), text.encode("utf-8"))
  print(text)


if __name__ == "__main__":
  flags.mark_flags_as_required(["table", "study_dir"])
  app.run(main)
