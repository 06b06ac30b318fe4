"""The benchmark's models and the rows they are timed on.

Models: the studies' architectures (``train/studies.py``), built by
``train.models``: ``cnn`` (the CNN base config: Conv 32-64-128 3x3 same ReLU,
max-pool 2, Flatten, Dense 128, Dropout, Dense 10 softmax on 32x32x3), ``lstm``
and ``rnn`` (the layers study's "2-layers" variant: Embedding 64 with
``mask_zero`` -> 2 x Bidirectional LSTM/SimpleRNN 64 -> Dropout -> Dense 3
softmax, 64 tokens) and ``mlp`` (784-256-128-10). Weights are seeded random
(``bench/weights.py``) unless ``python -m train`` left a trained model of the
same architecture under the work directory.

Inputs: CIFAR-10 / MNIST test images when the data is there (the data
directory or the ``train.data`` loaders' download cache; the benchmark never
downloads), else uniform noise. Text models are timed on **token ids** ``int32
(batch, sequence_length)`` for every system (the ONNX and tf2jax peers cannot
take strings): the NusaX-Senti (Indonesian) test texts through the model's own
``TextVectorization`` when the data is there, else synthetic ids whose real
lengths follow NusaX's test-set distribution. Host-side tokenisation is outside
every timed call.
"""

import dataclasses
import glob
import os
from typing import Any, Mapping

import numpy as np

from bench import applications
from bench import frameworks
from bench import weights as weights_lib
from bench.settings import Settings
from train import data
from train import models
from train import studies

# Which variant of its family's studies each benchmark model is. The CNN's and
# the MLP's are their base configs; the text models have two recurrent layers.
VARIANTS = {
  "cnn": ("pooling", "max"),
  "lstm": ("layers", "2-layers"),
  "rnn": ("layers", "2-layers"),
  "mlp": ("recipe", "256-128"),
}

# Real token counts of the 400 NusaX-Senti (Indonesian) test texts under a
# 64-token TextVectorization (truncating 2 longer texts): the 0th, 5th, ...,
# 100th percentiles. Synthetic text inputs draw lengths from it, scaled to the
# model's sequence length.
NUSAX_LENGTH_PERCENTILES = (
  5,
  7,
  8,
  10,
  11,
  12,
  13,
  15,
  16,
  17,
  19,
  21,
  22,
  25,
  27,
  31,
  35,
  39,
  45,
  57,
  64,
)
PERCENTILES_SEQUENCE_LENGTH = 64
NUSAX_LANG = "indonesian"


@dataclasses.dataclass
class Workload:
  """One model, ready to time.

  Attributes:
    name: from ``bench.settings.MODELS``.
    keras_model: takes numeric input (token ids for a text model).
    x: the rows, in random order (the test set repeated or cut as needed).
    weights: where the weights came from, in words.
    inputs: where the rows came from, in words.
  """

  name: str
  keras_model: Any
  x: np.ndarray
  weights: str
  inputs: str


def config(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The builder arguments of model ``name``: its study variant's, then ``overrides``."""
  family = studies.FAMILIES[name]
  study, variant = VARIANTS[name]
  base = family.config(next(v for v in family.study(study).variants if v.name == variant))
  unknown = set(overrides or {}) - set(base)
  if unknown:
    raise ValueError(
      f"{name}: unknown builder arguments {sorted(unknown)}; valid: {', '.join(base)}"
    )
  return {**base, **(overrides or {})}


def find_trained(
  workdir: str, name: str, architecture: Mapping[str, Any] | None = None
) -> str | None:
  """``<workdir>/<name>.keras``, else the first trained run of the architecture.

  ``python -m train`` keeps a run at
  ``<workdir>/<family>/<study>/<variant>/seed<k>/model.keras``; every variant
  of the family whose config is ``architecture`` (default: the benchmark's)
  is looked at, in study order.
  """
  direct = os.path.join(workdir, f"{name}.keras")
  if os.path.isfile(direct):
    return direct
  architecture = dict(architecture or config(name))
  family = studies.FAMILIES[name]
  for study in family.studies:
    for variant in study.variants:
      if family.config(variant) != architecture:
        continue
      found = sorted(
        glob.glob(os.path.join(workdir, name, study.name, variant.name, "seed*", "model.keras"))
      )
      if found:
        return found[0]
  return None


def _local_root(data_dir: str | None, *files: str) -> str | None:
  """The directory holding ``files`` without a download: the data directory,
  else the ``train.data`` loaders' download cache (filled by an earlier
  ``python -m train``, e.g. on Colab); None when neither has them."""
  for root in ([data_dir] if data_dir else []) + [str(data.cache_dir())]:
    if all(os.path.isfile(os.path.join(root, f)) for f in files):
      return root
  return None


_NUSAX_FILES = tuple(
  os.path.join(data.NUSAX_DIR, NUSAX_LANG, f"{split}.csv") for split in data.NUSAX_SPLITS
)


def _nusax(data_dir: str | None):
  root = _local_root(data_dir, *_NUSAX_FILES)
  return data.load_nusax(NUSAX_LANG, root) if root else None


def _random_model(name: str, architecture: dict, nusax, seed: int):
  keras = frameworks.keras()
  keras.utils.set_random_seed(seed)
  if name == "cnn":
    model = models.build_cnn(**architecture)
  elif name == "mlp":
    model = models.build_mlp(**architecture)
  else:
    if nusax is not None:
      texts = nusax.train_texts
    else:  # every id of the vocabulary occurs once
      texts = np.array(
        [" ".join(f"w{i}" for i in range(architecture["max_tokens"] - 2))], dtype=object
      )
    vectorizer = models.make_vectorizer(
      texts, max_tokens=architecture["max_tokens"], sequence_length=architecture["sequence_length"]
    )
    model = models.build_text(vectorizer, **architecture, name=name)
  weights_lib.randomize_weights(model, seed, scale=None)
  return model


def _token_model(keras_model):
  """(model on token ids, its vectorizer) for a model whose first layer is a
  ``TextVectorization``; else (the model, None)."""
  first = keras_model.layers[0]
  if type(first).__name__ != "TextVectorization":
    return keras_model, None
  keras = frameworks.keras()
  length = first.get_config()["output_sequence_length"]
  tokens = keras.Sequential(
    [keras.Input((length,), dtype="int32", name="tokens")] + keras_model.layers[1:],
    name=f"{keras_model.name}_tokens",
  )
  return tokens, first


def _rows(
  name: str,
  settings: Settings,
  vectorizer,
  nusax,
  input_shape: tuple[int, ...],
  rng: np.random.Generator,
) -> tuple[np.ndarray, str]:
  """The model's test rows (or ``num_inputs`` synthetic ones) and where they came from."""
  count = settings.num_inputs
  if vectorizer is None:
    file = {"cnn": data.CIFAR10_FILE, "mlp": data.MNIST_FILE}[name]
    root = _local_root(settings.data_dir, file)
    if root:
      loaded = (
        data.load_cifar10(root, seed=settings.seed) if name == "cnn" else data.load_mnist(root)
      )
      return loaded.x_test.reshape((-1,) + input_shape), f"{file} x_test"
    return (rng.uniform(size=(count,) + input_shape).astype(np.float32), "uniform noise")
  if nusax is not None:
    x = np.asarray(vectorizer(np.asarray(nusax.test_texts, dtype=object))).astype(np.int32)
    return x, f"NusaX-Senti {NUSAX_LANG} test texts ({len(nusax.test_texts)}), token ids"
  length = input_shape[0]
  quantiles = np.interp(rng.uniform(size=count) * 20, np.arange(21), NUSAX_LENGTH_PERCENTILES)
  lengths = np.clip(np.round(quantiles * length / PERCENTILES_SEQUENCE_LENGTH), 1, length).astype(
    int
  )
  x = rng.integers(2, int(vectorizer.vocabulary_size()), size=(count, length)).astype(np.int32)
  x[np.arange(length)[None, :] >= lengths[:, None]] = 0
  return x, "synthetic token ids, NusaX-Senti test length distribution"


def build(name: str, settings: Settings) -> Workload:
  """Model ``name`` (trained if found, else seeded random) and its timed rows."""
  if name in applications.MODELS:
    keras_model, x, weights, source = applications.build(name, settings.num_inputs, settings.seed)
    return Workload(name, keras_model, x, weights, source)
  architecture = config(name, settings.model_overrides.get(name))
  text = studies.FAMILIES[name].dataset == "nusax"
  nusax = _nusax(settings.data_dir) if text else None
  path = find_trained(settings.workdir, name, architecture) if settings.workdir else None
  if path:
    keras_model = frameworks.keras().saving.load_model(path, compile=False)
    weights = f"trained ({os.path.relpath(path)})"
  else:
    keras_model = _random_model(name, architecture, nusax, settings.seed)
    weights = f"seeded random (seed {settings.seed})"
    if settings.workdir:
      weights += f"; no trained model under {settings.workdir}"
  # Every system is timed on token ids: the same layers behind an int input.
  keras_model, vectorizer = _token_model(keras_model)
  input_shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
  rng = np.random.default_rng(settings.seed)
  x, source = _rows(name, settings, vectorizer, nusax, input_shape, rng)
  x = x[rng.permutation(len(x))]
  if len(x) != settings.num_inputs:
    x = np.resize(x, (settings.num_inputs,) + x.shape[1:])
  return Workload(name, keras_model, x, weights, source)
