"""Seed 000's framework comparison on MNIST: each recipe trained by Keras and by JAX.

The seed document compared TensorFlow and PyTorch on MNIST with two recipes;
here JAX (jaxnets layers + optax) takes PyTorch's seat, and both recipes are
trained by both trainers:

- ``keras``: 784→256→128→10 ReLU, Dropout 0.3, Adam, ``validation_split=0.2``
  (the last 20% of the training set, as Keras takes it), batch 128, ≤ 50
  epochs, EarlyStopping(val_loss, patience 5, restore best). Reported: 97.93%.
- ``pytorch``: 784→512→512→10 ReLU, Dropout 0.2, SGD lr 0.01, batch 20, 30
  epochs on the full 60k, no early stopping. Reported: 98.17%.

Run::

    python -m train.mnist_compare --workdir=runs --results_dir=results/mnist

Each (recipe, trainer) result is written atomically to the workdir; a re-run
skips finished ones. The table and the loss/accuracy curves go to
``--results_dir``.
"""

import csv
import dataclasses
import io
import json
import os
import pathlib
import time

from absl import app
from absl import flags
from absl import logging
import matplotlib
import numpy as np
from sklearn import metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from flags import common as common_flags
from train import data
from train import fitting
from train import jax_trainer
from train import models
from train import report

_RECIPES_FLAG = flags.DEFINE_list("recipes", ["keras", "pytorch"], "Recipes to run.")
_TRAINERS_FLAG = flags.DEFINE_list("trainers", ["keras", "jax"], "Trainers to run.")
_RESULTS_DIR = flags.DEFINE_string(
  "results_dir", "results/mnist", "Where the table and curves are written."
)
_MAX_TRAIN_ROWS = flags.DEFINE_integer(
  "max_train_rows", None, "Use only this many training rows (smoke runs).", lower_bound=1
)
_MAX_EPOCHS = flags.DEFINE_integer(
  "max_epochs", None, "Cap every recipe's epochs (smoke runs).", lower_bound=1
)


@dataclasses.dataclass(frozen=True)
class Recipe:
  name: str
  hidden: tuple[int, ...]
  dropout: float
  optimizer: str
  learning_rate: float
  batch_size: int
  epochs: int
  validation_split: float
  patience: int | None
  reported_accuracy: float


RECIPES = {
  "keras": Recipe("keras", (256, 128), 0.3, "adam", 1e-3, 128, 50, 0.2, 5, 0.9793),
  "pytorch": Recipe("pytorch", (512, 512), 0.2, "sgd", 0.01, 20, 30, 0.0, None, 0.9817),
}
TRAINERS = ("keras", "jax")


def keras_mlp(recipe: Recipe):
  """The recipe's network as a Keras model (softmax output)."""
  return models.build_mlp(
    hidden_units=recipe.hidden, dropout=recipe.dropout, name=f"mlp_{recipe.name}"
  )


def _split(recipe: Recipe, x, y):
  """Keras's validation_split: the last fraction of the rows, unshuffled."""
  if not recipe.validation_split:
    return x, y, None, None
  cut = int(len(x) * (1 - recipe.validation_split))
  return x[:cut], y[:cut], x[cut:], y[cut:]


def _steady_samples_per_second(epoch_times: list[float], rows: int) -> float:
  """Rows per second over the epochs after the first (which includes compilation)."""
  steady = epoch_times[1:] or epoch_times
  return rows / (sum(steady) / len(steady))


def train_keras(recipe: Recipe, x, y, epochs: int, seed: int) -> dict:
  import keras  # pylint: disable=import-outside-toplevel

  keras.utils.set_random_seed(seed)
  model = keras_mlp(recipe)
  optimizer = (
    keras.optimizers.Adam(recipe.learning_rate)
    if recipe.optimizer == "adam"
    else keras.optimizers.SGD(recipe.learning_rate)
  )
  model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
  x_train, y_train, x_val, y_val = _split(recipe, x, y)
  timer = fitting.EpochTimer()
  callbacks = [timer]
  if recipe.patience is not None:
    callbacks.append(
      keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=recipe.patience, restore_best_weights=True
      )
    )
  start = time.perf_counter()
  history = model.fit(
    x_train,
    y_train,
    batch_size=recipe.batch_size,
    epochs=epochs,
    validation_data=None if x_val is None else (x_val, y_val),
    callbacks=callbacks,
    verbose=2,
    shuffle=True,
  )
  train_time = time.perf_counter() - start
  hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
  epochs_run = len(hist["loss"])
  return {
    "model": model,
    "history": hist,
    "epochs_run": epochs_run,
    "train_time": train_time,
    "samples_per_second": _steady_samples_per_second(timer.times, len(x_train)),
  }


def train_jax(recipe: Recipe, x, y, epochs: int, seed: int) -> dict:
  import port  # pylint: disable=import-outside-toplevel

  architecture = port.load(keras_mlp(recipe))  # the same layers, re-initialised below
  x_train, y_train, x_val, y_val = _split(recipe, x, y)
  config = jax_trainer.TrainConfig(
    optimizer=recipe.optimizer,
    learning_rate=recipe.learning_rate,
    batch_size=recipe.batch_size,
    epochs=epochs,
    patience=recipe.patience,
    seed=seed,
  )
  start = time.perf_counter()
  result = jax_trainer.fit(architecture, x_train, y_train, x_val, y_val, config, log=logging.info)
  train_time = time.perf_counter() - start
  history = dict(result.history)
  model = type(architecture)(
    architecture.layers, result.params, input_shape=architecture.input_shape, name=architecture.name
  )
  return {
    "model": model,
    "history": history,
    "epochs_run": result.epochs_run,
    "train_time": train_time,
    "samples_per_second": result.samples_per_second,
  }


def run(
  recipes,
  trainers,
  workdir: str,
  results_dir: str,
  data_dir=None,
  seed: int = 0,
  max_train_rows=None,
  max_epochs=None,
) -> list[dict]:
  """Trains every (recipe, trainer) not already finished; writes the report."""
  mnist = data.load_mnist(data_dir, flatten=True)
  x, y = mnist.x_train[:max_train_rows], mnist.y_train[:max_train_rows]
  rows = []
  for recipe_name in recipes:
    recipe = RECIPES[recipe_name]
    for trainer in trainers:
      out_dir = os.path.join(workdir, "mnist_compare", recipe.name, trainer)
      result_path = os.path.join(out_dir, "result.json")
      if os.path.exists(result_path):
        logging.info("skipping %s/%s: %s exists", recipe.name, trainer, result_path)
        with open(result_path, encoding="utf-8") as f:
          rows.append(json.load(f))
        continue
      logging.info("training recipe %r with the %s trainer", recipe.name, trainer)
      epochs = min(recipe.epochs, max_epochs or recipe.epochs)
      fn = train_keras if trainer == "keras" else train_jax
      outcome = fn(recipe, x, y, epochs, seed)
      probabilities = np.asarray(
        outcome["model"].predict(
          mnist.x_test, batch_size=1024, **({"verbose": 0} if trainer == "keras" else {})
        )
      )
      predicted = probabilities.argmax(-1)
      row = {
        "recipe": recipe.name,
        "trainer": trainer,
        "test_accuracy": float(metrics.accuracy_score(mnist.y_test, predicted)),
        "macro_f1": float(metrics.f1_score(mnist.y_test, predicted, average="macro")),
        "reported_accuracy": recipe.reported_accuracy,
        "epochs_run": outcome["epochs_run"],
        "train_time_s": outcome["train_time"],
        "samples_per_second": outcome["samples_per_second"],
        "history": outcome["history"],
      }
      report.atomic_write(pathlib.Path(result_path), json.dumps(row, indent=1).encode())
      rows.append(row)
  write_report(rows, results_dir)
  return rows


def write_report(rows: list[dict], results_dir: str) -> None:
  """``results.md``/``results.csv`` (recipe × trainer) and ``curves.png``."""
  out = pathlib.Path(results_dir)
  columns = (
    "recipe",
    "trainer",
    "test_accuracy",
    "reported_accuracy",
    "macro_f1",
    "epochs_run",
    "train_time_s",
    "samples_per_second",
  )
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(columns)
  for r in rows:
    writer.writerow([r[c] if not isinstance(r[c], float) else f"{r[c]:.6g}" for c in columns])
  report.atomic_write(out / "results.csv", buffer.getvalue().encode())
  lines = [
    "# MNIST: seed 000's recipes, each trained by Keras and by JAX",
    "",
    "| recipe | trainer | test accuracy | seed reported | macro F1 | epochs | "
    "train time (s) | samples/s |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['recipe']} | {r['trainer']} | {r['test_accuracy']:.4f} | "
      f"{r['reported_accuracy']:.4f} | {r['macro_f1']:.4f} | {r['epochs_run']} | "
      f"{r['train_time_s']:.1f} | {r['samples_per_second']:.0f} |"
    )
  lines += ["", "![loss and accuracy curves](curves.png)", ""]
  report.atomic_write(out / "results.md", "\n".join(lines).encode())
  report.atomic_write(out / "curves.png", _curves_png(rows))


def _curves_png(rows: list[dict]) -> bytes:
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for index, r in enumerate(rows):
    color = f"C{index}"
    label = f"{r['recipe']} recipe / {r['trainer']}"
    for ax, key in zip(axes, ("loss", "accuracy")):
      history = r["history"]
      ax.plot(range(1, len(history[key]) + 1), history[key], color=color, label=f"{label} train")
      if f"val_{key}" in history:
        ax.plot(
          range(1, len(history[f"val_{key}"]) + 1),
          history[f"val_{key}"],
          color=color,
          linestyle="--",
          label=f"{label} val",
        )
  for ax, key in zip(axes, ("loss (cross-entropy)", "accuracy")):
    ax.set_title(key)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
  axes[1].legend(fontsize="x-small", loc="lower right")
  fig.suptitle("MNIST, seed-000 recipes: solid = training, dashed = validation")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  return buffer.getvalue()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in _RECIPES_FLAG.value:
    if name not in RECIPES:
      raise app.UsageError(f"--recipes: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
  for name in _TRAINERS_FLAG.value:
    if name not in TRAINERS:
      raise app.UsageError(f"--trainers: unknown trainer {name!r} (known: {', '.join(TRAINERS)})")
  rows = run(
    _RECIPES_FLAG.value,
    _TRAINERS_FLAG.value,
    common_flags.WORKDIR.value,
    _RESULTS_DIR.value,
    common_flags.DATA_DIR.value,
    common_flags.SEED.value,
    _MAX_TRAIN_ROWS.value,
    _MAX_EPOCHS.value,
  )
  for row in rows:
    print(
      f"{row['recipe']:8s} {row['trainer']:6s} test accuracy {row['test_accuracy']:.4f} "
      f"(seed reported {row['reported_accuracy']:.4f}), macro F1 {row['macro_f1']:.4f}"
    )
  print(f"table and curves written to {_RESULTS_DIR.value}/")


if __name__ == "__main__":
  app.run(main)
