"""Training throughput: the JAX trainer against Keras ``fit``, same model and batch.

    python -m bench --preset=train_speed --models=cnn,lstm --num_inputs=4096 --repeats=5

For each family's base config (``train/studies.py``: the CNN on CIFAR-10, the
LSTM/SimpleRNN on NusaX, the MLP on MNIST), one epoch of Keras ``fit`` and one
epoch of the JAX trainer (``train/jax_trainer.py``) are timed in turn (A B A B
..., after a warm-up epoch each, so compilation is excluded), on the same rows
with the same batch size (the family's recipe). Reported: samples/s of each and
the median of the per-round ratios JAX ÷ Keras. Both train with their
frameworks' default settings, as ``python -m train`` runs them.
"""

import keras
import numpy as np

import port
from bench import timing
from train import data
from train import jax_trainer
from train import models
from train import studies

MODELS = tuple(studies.FAMILIES)
DEFAULT_MODELS = ("cnn", "lstm")
DEFAULT_ROWS = 4096
DEFAULT_REPEATS = 5


def _setup(family_name: str, rows: int, data_dir: str | None, seed: int):
  """(keras model, jaxnets architecture, x, y, batch size) for a base config."""
  family = studies.FAMILIES[family_name]
  keras.utils.set_random_seed(seed)
  if family.dataset == "cifar10":
    cifar = data.load_cifar10(data_dir, seed=seed)
    x, y = cifar.x_train[:rows], cifar.y_train[:rows]
    keras_model = models.build_cnn(**family.base)
  elif family.dataset == "mnist":
    mnist = data.load_mnist(data_dir, flatten=True)
    x, y = mnist.x_train[:rows], mnist.y_train[:rows]
    keras_model = models.build_mlp(**family.base)
  else:
    nusax = data.load_nusax(data_dir=data_dir)
    repeat = -(-rows // len(nusax.train_texts))
    x = np.concatenate([nusax.train_texts] * repeat)[:rows]
    y = np.concatenate([nusax.train_labels] * repeat)[:rows]
    config = dict(family.base)
    vectorizer = models.make_vectorizer(
      nusax.train_texts, max_tokens=config["max_tokens"], sequence_length=config["sequence_length"]
    )
    keras_model = models.build_text(vectorizer, **config)
  models.compile_model(keras_model, family.recipe.learning_rate)
  return keras_model, port.load(keras_model), x, y, family.recipe.batch_size


def measure(
  family_name: str, rows: int, repeats: int, data_dir: str | None = None, seed: int = 0
) -> dict:
  """Interleaved epochs of Keras ``fit`` and the JAX trainer on ``rows`` rows."""
  if family_name not in MODELS:
    raise ValueError(f"unknown model {family_name!r}; valid: {', '.join(MODELS)}")
  keras_model, architecture, x, y, batch_size = _setup(family_name, rows, data_dir, seed)
  config = jax_trainer.TrainConfig(batch_size=batch_size, epochs=1, seed=seed)
  jax_epoch = jax_trainer.epoch_runner(architecture, x, y, config)
  x_keras = np.asarray(x, dtype=object) if x.dtype == object else x

  def keras_epoch():
    keras_model.fit(x_keras, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)

  times = timing.interleaved(
    {"keras_fit": keras_epoch, "jax": jax_epoch}, repeats=repeats, warmup=1
  )
  return {
    "family": family_name,
    "rows": len(x),
    "batch_size": batch_size,
    "keras_samples_per_s": len(x) / times["median"]["keras_fit"],
    "jax_samples_per_s": len(x) / times["median"]["jax"],
    "jax_over_keras": times["ratio"][("jax", "keras_fit")],
    "epoch_seconds": times["times"],
  }


def markdown(results: list[dict]) -> str:
  """One table row per family."""
  lines = [
    "| family | rows | batch | Keras fit samples/s | JAX samples/s | JAX ÷ Keras "
    "(median of interleaved rounds) |",
    "|---|---|---|---|---|---|",
  ]
  for r in results:
    lines.append(
      f"| {r['family']} | {r['rows']} | {r['batch_size']} | "
      f"{r['keras_samples_per_s']:.0f} | {r['jax_samples_per_s']:.0f} | "
      f"{r['jax_over_keras']:.2f}× |"
    )
  return "\n".join(lines)
