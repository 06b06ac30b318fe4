"""Training throughput: the JAX trainer against Keras ``fit``, same model and batch.

For the studies' base configs (CNN on CIFAR-10, LSTM/SimpleRNN on NusaX), one
epoch of Keras ``fit`` and one epoch of the JAX trainer are timed in turn
(A B A B ..., after a warm-up epoch each, so compilation is excluded), on the
same rows with the same batch size. Reported: samples/s of each and the median
of the per-round ratios JAX ÷ Keras.

    python -m train.train_speed --families=cnn,lstm --rows=4096 --repeats=5

Writes a markdown table to stdout and, with ``--json_out``, every figure.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from flags import common as common_flags
from port import timing
from train import data
from train import jax_trainer
from train import models
from train import studies

_FAMILIES = flags.DEFINE_list("families", ["cnn", "lstm"], "Families to measure: cnn, lstm, rnn.")
_ROWS = flags.DEFINE_integer("rows", 4096, "Training rows per timed epoch.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed epochs per system.", lower_bound=1)
_JSON_OUT = flags.DEFINE_string("json_out", None, "Write every figure to this JSON file.")


def _setup(family_name: str, rows: int, data_dir, seed: int):
  """(keras model, jaxnets architecture, x, y, batch size) for a base config."""
  import keras  # pylint: disable=import-outside-toplevel
  import port  # pylint: disable=import-outside-toplevel
  family = studies.FAMILIES[family_name]
  keras.utils.set_random_seed(seed)
  if family.dataset == "cifar10":
    cifar = data.load_cifar10(data_dir, seed=seed)
    x, y = cifar.x_train[:rows], cifar.y_train[:rows]
    keras_model = models.build_cnn(**family.base)
  else:
    nusax = data.load_nusax(data_dir=data_dir)
    repeat = -(-rows // len(nusax.train_texts))
    x = np.concatenate([nusax.train_texts] * repeat)[:rows]
    y = np.concatenate([nusax.train_labels] * repeat)[:rows]
    config = dict(family.base)
    vectorizer = models.make_vectorizer(nusax.train_texts, max_tokens=config["max_tokens"],
                                        sequence_length=config["sequence_length"])
    keras_model = models.build_text(vectorizer, **config)
  models.compile_model(keras_model, family.recipe.learning_rate)
  return keras_model, port.load(keras_model), x, y, family.recipe.batch_size


def measure(family_name: str, rows: int, repeats: int, data_dir=None, seed: int = 0) -> dict:
  keras_model, architecture, x, y, batch_size = _setup(family_name, rows, data_dir, seed)
  config = jax_trainer.TrainConfig(batch_size=batch_size, epochs=1, seed=seed)
  jax_epoch = jax_trainer.epoch_runner(architecture, x, y, config)
  x_keras = np.asarray(x, dtype=object) if x.dtype == object else x

  def keras_epoch():
    keras_model.fit(x_keras, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)

  times = timing.interleaved({"keras_fit": keras_epoch, "jax": jax_epoch},
                             repeats=repeats, warmup=1)
  return {
      "family": family_name, "rows": len(x), "batch_size": batch_size,
      "keras_samples_per_s": len(x) / times["median"]["keras_fit"],
      "jax_samples_per_s": len(x) / times["median"]["jax"],
      "jax_over_keras": times["ratio"][("jax", "keras_fit")],
      "epoch_seconds": times["times"],
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in _FAMILIES.value:
    if name not in ("cnn", "lstm", "rnn"):
      raise app.UsageError(f"--families: unknown family {name!r} (cnn, lstm, rnn)")
  results = []
  for name in _FAMILIES.value:
    print(f"measuring {name} ...", flush=True)
    results.append(measure(name, _ROWS.value, _REPEATS.value, common_flags.DATA_DIR.value,
                           common_flags.SEED.value))
  print("\n| family | rows | batch | Keras fit samples/s | JAX samples/s | JAX ÷ Keras "
        "(median of interleaved rounds) |\n|---|---|---|---|---|---|")
  for r in results:
    print(f"| {r['family']} | {r['rows']} | {r['batch_size']} | {r['keras_samples_per_s']:.0f} "
          f"| {r['jax_samples_per_s']:.0f} | {r['jax_over_keras']:.2f}× |")
  if _JSON_OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON_OUT.value)), exist_ok=True)
    with open(_JSON_OUT.value, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
