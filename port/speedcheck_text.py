"""Speed check for text models: the port vs Keras on NusaX-ind test texts.

    JAXNETS_DATA_DIR=../shared/data python -m port.speedcheck_text
    python -m port.speedcheck_text --data_dir ../shared/data --models bilstm --repeats 3

Builds two Keras text classifiers, each ``TextVectorization`` (adapted on the
NusaX-ind train texts, ``--sequence_length`` ids per text) -> ``Embedding``
(``mask_zero=True``) -> recurrent layers -> ``Dropout`` -> ``Dense(3, softmax)``:

- ``bilstm``: two ``Bidirectional(LSTM(64))`` layers (the first returns sequences);
- ``simplernn``: two ``SimpleRNN(64)`` layers (the first returns sequences);

gives them seeded random weights, ports them with ``port.load`` and feeds both
the raw test strings (real lengths; tokenisation is part of both systems).
Timed A B A B ... after warm-up (``port.timing.interleaved``), same process:

- ``keras_model.predict(texts, batch_size=256)`` vs the port's ``predict``;
- the same at ``batch_size=1`` over the first ``--batch1_rows`` texts.

Reported ratios are medians of per-round ratios (``> 1``: the port is
faster); the target is >= 2x Keras's throughput at both batch sizes. The port
gains from cutting each batch to its longest real text (rows sorted by length,
lengths rounded up to ``jaxnets.model.LENGTH_BUCKET``), which gives the same
numbers because padding is at the end and masked steps carry the state.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
from absl import app  # pylint: disable=wrong-import-position
from absl import flags as absl_flags  # pylint: disable=wrong-import-position

from flags import common as common_flags  # pylint: disable=wrong-import-position

_MODELS = absl_flags.DEFINE_multi_enum(
    "models", ["bilstm", "simplernn"], ["bilstm", "simplernn"],
    "Models to time (repeat the flag for several).")
_SEQUENCE_LENGTH = absl_flags.DEFINE_integer(
    "sequence_length", 100, "TextVectorization output_sequence_length (ids per text).",
    lower_bound=1)
_MAX_TOKENS = absl_flags.DEFINE_integer(
    "max_tokens", 10_000, "TextVectorization vocabulary cap.", lower_bound=3)
_BATCH_SIZE = absl_flags.DEFINE_integer("batch_size", 256, "Large predict batch size.",
                                        lower_bound=1)
_BATCH1_ROWS = absl_flags.DEFINE_integer(
    "batch1_rows", 100, "Texts run through predict(batch_size=1) per timed round.",
    lower_bound=1)
_REPEATS = absl_flags.DEFINE_integer("repeats", 5, "Interleaved timed rounds.", lower_bound=1)

UNITS = 64
EMBEDDING_DIM = 64
TARGET = 2.0


def nusax_texts(data_dir: str | None):
  """(train texts, test texts) of NusaX-Senti Indonesian as lists of str."""
  from train import data  # pylint: disable=import-outside-toplevel
  nusax = data.load_nusax("indonesian", data_dir)
  return list(nusax.train_texts), list(nusax.test_texts)


def build(name: str, train_texts, seed: int):
  """A Keras text classifier (raw strings in) with seeded random weights."""
  import keras  # pylint: disable=import-outside-toplevel
  layers = keras.layers
  vectorizer = layers.TextVectorization(max_tokens=_MAX_TOKENS.value,
                                        output_sequence_length=_SEQUENCE_LENGTH.value)
  vectorizer.adapt(train_texts)
  if name == "bilstm":
    recurrent = [layers.Bidirectional(layers.LSTM(UNITS, return_sequences=True)),
                 layers.Bidirectional(layers.LSTM(UNITS))]
  else:
    recurrent = [layers.SimpleRNN(UNITS, return_sequences=True), layers.SimpleRNN(UNITS)]
  model = keras.Sequential(
      [keras.Input((1,), dtype="string"), vectorizer,
       layers.Embedding(vectorizer.vocabulary_size(), EMBEDDING_DIM, mask_zero=True),
       *recurrent, layers.Dropout(0.5), layers.Dense(3, activation="softmax")], name=name)
  rng = np.random.default_rng(seed)
  for variable in model.weights:  # Glorot-like scale: realistic, unsaturated activations
    shape = tuple(variable.shape)
    fan_in = shape[0] if len(shape) > 1 else 1
    variable.assign(rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32))
  return model


def check(keras_model, texts, *, batch_size: int, batch1_rows: int, repeats: int) -> dict:
  """Agreement and interleaved timings of Keras and the port on raw strings."""
  import port  # pylint: disable=import-outside-toplevel
  from port import timing  # pylint: disable=import-outside-toplevel

  model = port.load(keras_model)
  x = np.asarray(texts, dtype=object)
  expected = keras_model.predict(x, batch_size=batch_size, verbose=0)
  got = model.predict(x, batch_size=batch_size)
  agreement = {"max_abs_diff": float(np.max(np.abs(got - expected))),
               "argmax_equal": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
               "trimmed": model._trim_padding}  # pylint: disable=protected-access
  large = timing.interleaved({
      "keras.predict": lambda: keras_model.predict(x, batch_size=batch_size, verbose=0),
      "port.predict": lambda: model.predict(x, batch_size=batch_size),
  }, repeats=repeats, warmup=1)
  x1 = x[:batch1_rows]
  # Two warm-up rounds: the port compiles one batch-1 shape per length bucket.
  small = timing.interleaved({
      "keras.predict": lambda: keras_model.predict(x1, batch_size=1, verbose=0),
      "port.predict": lambda: model.predict(x1, batch_size=1),
  }, repeats=repeats, warmup=2)
  return {"agreement": agreement, "runs": {batch_size: (large, len(x)), 1: (small, len(x1))}}


def report(name: str, result: dict) -> list[str]:
  """Prints one model's results; returns the targets it missed."""
  agreement = result["agreement"]
  print(f"\n== {name} ==")
  print(f"agreement: max abs diff {agreement['max_abs_diff']:.2e}, argmax equal "
        f"{agreement['argmax_equal']:.2%}, length trimming used: {agreement['trimmed']}")
  missed = []
  for batch_size, (timed, rows) in result["runs"].items():
    print(f"batch_size={batch_size}, {rows} texts per round:")
    for system, seconds in timed["median"].items():
      print(f"  {system:14s} median {seconds:8.3f} s  {rows / seconds:9.0f} texts/s")
    ratio = timed["ratio"][("port.predict", "keras.predict")]
    print(f"  port / keras throughput, median of per-round ratios: {ratio:.2f}x "
          f"(target >= {TARGET}x)")
    if ratio < TARGET:
      missed.append(f"{name}: batch_size={batch_size} throughput only {ratio:.2f}x Keras's")
  return missed


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import jax  # pylint: disable=import-outside-toplevel
  train_texts, test_texts = nusax_texts(common_flags.DATA_DIR.value)
  lengths = [len(t.split()) for t in test_texts]
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
  print(f"NusaX-ind test: {len(test_texts)} texts, words per text median "
        f"{int(np.median(lengths))}, max {max(lengths)}; sequence_length "
        f"{_SEQUENCE_LENGTH.value}")
  missed = []
  for name in dict.fromkeys(_MODELS.value):
    keras_model = build(name, train_texts, common_flags.SEED.value)
    result = check(keras_model, test_texts, batch_size=_BATCH_SIZE.value,
                   batch1_rows=_BATCH1_ROWS.value, repeats=_REPEATS.value)
    missed += report(name, result)
  print("\nall targets met" if not missed else "\ntargets missed:\n  " + "\n  ".join(missed))
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
