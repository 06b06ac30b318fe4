"""The ``best`` study of each family: its recipe, the ablations, and how it trains.

A ``best`` study (``python -m train --family=<f> --study=best``) trains the best
recipe found for the family and, as further variants, that recipe minus one
trick at a time, so every trick's contribution is a measured number with its
seed spread (issue 15). Its config mixes two kinds of keys:

- model keys, the arguments of the family's builder in :mod:`train.models`
  (batch norm, augmentation layers, global max pooling, spatial dropout, ...);
- training keys, :data:`TRAINING_DEFAULTS` (optimiser, weight decay, schedule,
  warm-up, label smoothing, gradient clipping, extra NusaX training languages),
  applied by :func:`fit_keras`, the runner's one hook for ``best`` studies.

Both are in the run key (the runner hashes the whole config), so a changed
trick is a new run. The plain data here (configs, variants) imports nothing
heavy: :mod:`train.studies` builds the ``best`` studies from it before any
Keras import.

Port and training-only layers: ``SpatialDropout1D``, ``RandomFlip`` and
``RandomTranslation`` are identity at inference. Where the port has no
converter for one (see :func:`strip_for_port`), the trained model is rebuilt
without it (the same layer objects, so the same weights) and checked to predict
exactly as the trained one before it is saved and ported.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

BEST = "best"

TRAINING_DEFAULTS: dict[str, Any] = {
  "optimizer": "adam",  # adam | adamw | sgd_nesterov
  "weight_decay": 0.0,  # decoupled (AdamW / SGD's weight_decay), not an L2 loss term
  "schedule": "constant",  # constant | cosine (cosine decay to 0 over all epochs)
  "warmup_epochs": 0,  # linear warm-up from 0 to the peak rate (cosine only)
  "label_smoothing": 0.0,
  "clipnorm": 0.0,  # per-variable gradient norm clip; 0 for none
  "train_langs": (),  # extra NusaX languages whose *training* files are added
}
OPTIMIZERS = ("adam", "adamw", "sgd_nesterov")
SCHEDULES = ("constant", "cosine")
SGD_MOMENTUM = 0.9
# Layers that are identity at inference and may be missing from the port.
TRAINING_ONLY = ("SpatialDropout1D", "SpatialDropout2D", "RandomFlip", "RandomTranslation")


@dataclasses.dataclass(frozen=True)
class BestSpec:
  """A family's best recipe (plain data).

  Attributes:
    builder: builder function in :mod:`train.models`.
    base: the best config (model keys and training keys).
    recipe: epochs, patience, batch size, peak learning rate, monitor
      (a :class:`train.studies.Recipe` as keyword arguments).
    ablations: ``(variant name, overrides)``: the best config minus one trick.
  """

  builder: str
  base: Mapping[str, Any]
  recipe: Mapping[str, Any]
  ablations: tuple[tuple[str, Mapping[str, Any]], ...]


def _other_langs(lang: str = "indonesian") -> tuple[str, ...]:
  from train import data  # pylint: disable=import-outside-toplevel  (numpy only)

  return tuple(x for x in data.NUSAX_LANGUAGES if x != lang)


# Text: the corpus is parallel, so the other 11 languages' training files are
# 5,500 more labelled sentences (never their test files; validation and test
# stay in the evaluated language). A vocabulary of 30,000 holds all 20.6k
# words of the 12 training sets; 64 tokens cover ~97 % of sentences. A
# SpatialDropout1D after the embedding drops whole embedding channels for every
# token. The recurrent layer's final state feeds the head.
#
# Chosen from a search of ~30 configurations, 3-5 seeds each (2026-12-03,
# results/text_search/README.md): head (last state / global max /
# masked global average), spatial dropout 0-0.5, class weights, embedding and
# cell width 128, batch 16, recurrent dropout, vocabulary cut to the 600-1,500
# most frequent words, learning rate 3e-4, a character-level LSTM. Every
# configuration of a family landed within about one seed-to-seed std (0.01-0.06
# macro F1) of the others; these are the top means. The 5-seed ablations of
# the best studies are in results/README.md ("Beyond the report").
_TEXT_BEST = dict(
  max_tokens=30000,
  sequence_length=64,
  embedding_dim=64,
  units=(64,),
  bidirectional=True,
  dropout=0.5,
  head="last",
  **TRAINING_DEFAULTS,
)
_TEXT_BEST["train_langs"] = _other_langs()
_TEXT_RECIPE = dict(
  epochs=20, patience=4, batch_size=64, learning_rate=1e-3, monitor="val_accuracy"
)

_TEXT_ABLATIONS = (
  ("best", {}),
  ("-multilingual", {"train_langs": ()}),
  ("-spatial-dropout", {"spatial_dropout": 0.0}),
)

# LSTM: spatial dropout 0.5 (0.3 gave 0.713 +- 0.024 in the search, 0.5 0.744 +-
# 0.010). The spec's best LSTM is unidirectional, so that is measured too.
LSTM = BestSpec(
  "build_text",
  dict(_TEXT_BEST, cell="lstm", spatial_dropout=0.5),
  _TEXT_RECIPE,
  (*_TEXT_ABLATIONS, ("-bidirectional", {"bidirectional": False})),
)
# SimpleRNN: spatial dropout 0.3 (0.5 gave 0.681 +- 0.024), plus gradient-norm
# clipping (1.0) against exploding gradients through 64 unrolled steps.
RNN = BestSpec(
  "build_text",
  dict(_TEXT_BEST, cell="simple_rnn", spatial_dropout=0.3, clipnorm=1.0),
  _TEXT_RECIPE,
  (*_TEXT_ABLATIONS, ("-clipnorm", {"clipnorm": 0.0})),
)

# MLP: wider (512-512), small random shifts (RandomTranslation of up to 10 %,
# i.e. <= 2.8 pixels, inside the model), cosine decay with one warm-up epoch.
# The schedule runs its full length (patience = epochs); the epoch with the
# best validation accuracy is kept.
MLP = BestSpec(
  "build_mlp",
  dict(hidden_units=(512, 512), dropout=0.3, shift=0.1, **TRAINING_DEFAULTS)
  | dict(schedule="cosine", warmup_epochs=1),
  dict(epochs=15, patience=15, batch_size=128, learning_rate=1e-3, monitor="val_accuracy"),
  (
    ("best", {}),
    ("-shift", {"shift": 0.0}),
    ("-cosine", {"schedule": "constant", "warmup_epochs": 0}),
    ("-width", {"hidden_units": (256, 128)}),
  ),
)

# CNN: BN conv blocks (2 convs each, 48-96-192 filters), flip + translate
# augmentation in the model, global max pooling head, label smoothing 0.1,
# AdamW with cosine decay after a warm-up epoch. Sized for <= 1 h per run on 2
# cores (~170 MFLOP per image forward).
CNN = BestSpec(
  "build_cnn_bn",
  dict(
    filters=(48, 96, 192),
    convs_per_block=2,
    batch_norm=True,
    flip=True,
    translate=0.125,
    head="global_max",
    dense_units=0,
    dropout=0.2,
    **TRAINING_DEFAULTS,
  )
  | dict(
    optimizer="adamw",
    weight_decay=5e-4,
    schedule="cosine",
    warmup_epochs=1,
    label_smoothing=0.1,
  ),
  dict(epochs=10, patience=10, batch_size=128, learning_rate=3e-3, monitor="val_accuracy"),
  (
    ("best", {}),
    ("-augmentation", {"flip": False, "translate": 0.0}),
    ("-batch-norm", {"batch_norm": False}),
    ("-label-smoothing", {"label_smoothing": 0.0}),
    ("-cosine", {"schedule": "constant", "warmup_epochs": 0}),
  ),
)

SPECS: dict[str, BestSpec] = {"lstm": LSTM, "rnn": RNN, "mlp": MLP, "cnn": CNN}


# ----------------------------------------------------------------- training


def split_config(config: Mapping[str, Any]) -> tuple[dict, dict]:
  """(model keyword arguments, training options) of a ``best`` config."""
  model = {k: v for k, v in config.items() if k not in TRAINING_DEFAULTS}
  train = {**TRAINING_DEFAULTS, **{k: v for k, v in config.items() if k in TRAINING_DEFAULTS}}
  if train["optimizer"] not in OPTIMIZERS:
    raise ValueError(
      f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {train['optimizer']!r}"
    )
  if train["schedule"] not in SCHEDULES:
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {train['schedule']!r}")
  return model, train


def describe(config: Mapping[str, Any], recipe) -> str:
  """The recipe line of a ``best`` study's report (the best config's training keys)."""
  _, t = split_config(config)
  opt = {"adam": "Adam", "adamw": "AdamW", "sgd_nesterov": "SGD + Nesterov"}[t["optimizer"]]
  parts = [f"{opt} (peak lr {recipe.learning_rate:g}"]
  if t["weight_decay"]:
    parts.append(f", weight decay {t['weight_decay']:g}")
  if t["clipnorm"]:
    parts.append(f", clipnorm {t['clipnorm']:g}")
  parts.append(")")
  if t["schedule"] == "cosine":
    parts.append(f", cosine decay with {t['warmup_epochs']} warm-up epoch(s)")
  loss = "cross-entropy"
  if t["label_smoothing"]:
    loss += f" with label smoothing {t['label_smoothing']:g}"
  parts.append(f", {loss}, batch {recipe.batch_size}, at most {recipe.epochs} epochs, ")
  parts.append(f"EarlyStopping({recipe.monitor}, patience {recipe.patience}, restore best weights)")
  if t["train_langs"]:
    parts.append(f"; extra training files: {', '.join(t['train_langs'])} (train split only)")
  return "".join(parts) + "; ablation variants change the keys in their setting column"


def training_rows(dataset, train: Mapping[str, Any], settings):
  """The training rows: the dataset's, plus each extra language's *training* file.

  NusaX is parallel (row i is the same sentence in every language), so
  ``--max_train_rows`` keeps the same rows of every language.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel

  from train import data as data_lib  # pylint: disable=import-outside-toplevel
  from train import fitting  # pylint: disable=import-outside-toplevel

  xs, ys = [dataset.x_train], [dataset.y_train]
  for lang in train["train_langs"]:
    if lang == settings.lang:
      continue  # already there
    d = data_lib.load_nusax(lang, settings.data_dir)
    x, y = fitting.subsample(d.train_texts, d.train_labels, settings.max_train_rows)
    xs.append(x)
    ys.append(y)
  return np.concatenate(xs), np.concatenate(ys)


def learning_rate(train: Mapping[str, Any], peak: float, total_steps: int, steps_per_epoch: int):
  """The peak rate as a float (``constant``) or a built-in Keras schedule: cosine
  decay to 0 at ``total_steps`` after a linear warm-up from 0 (so a saved model
  loads anywhere without custom objects)."""
  import keras  # pylint: disable=import-outside-toplevel

  if train["schedule"] != "cosine":
    return float(peak)
  warmup = min(int(train["warmup_epochs"]) * steps_per_epoch, total_steps - 1)
  return keras.optimizers.schedules.CosineDecay(
    initial_learning_rate=0.0 if warmup else float(peak),
    decay_steps=max(total_steps - warmup, 1),
    warmup_target=float(peak) if warmup else None,
    warmup_steps=warmup,
  )


def make_optimizer(train: Mapping[str, Any], peak: float, total_steps: int, steps_per_epoch: int):
  """The optimiser of ``train["optimizer"]`` with :func:`learning_rate`'s rate."""
  import keras  # pylint: disable=import-outside-toplevel

  lr = learning_rate(train, peak, total_steps, steps_per_epoch)
  clip = {"clipnorm": float(train["clipnorm"])} if train["clipnorm"] else {}
  if train["optimizer"] == "adamw":
    return keras.optimizers.AdamW(lr, weight_decay=float(train["weight_decay"]), **clip)
  if train["optimizer"] == "sgd_nesterov":
    return keras.optimizers.SGD(
      lr,
      momentum=SGD_MOMENTUM,
      nesterov=True,
      weight_decay=float(train["weight_decay"]) or None,
      **clip,
    )
  if train["weight_decay"]:
    raise ValueError("weight_decay needs optimizer adamw or sgd_nesterov (Adam's is an L2 term)")
  return keras.optimizers.Adam(lr, **clip)


def build(builder: str, model_kwargs: dict, x_train, num_classes: int):
  """The uncompiled Keras model (text: vectorizer adapted on ``x_train``)."""
  from train import models  # pylint: disable=import-outside-toplevel

  if builder == "build_text":
    vectorizer = models.make_vectorizer(
      x_train,
      max_tokens=model_kwargs["max_tokens"],
      sequence_length=model_kwargs["sequence_length"],
    )
    return models.build_text(vectorizer, num_classes=num_classes, **model_kwargs)
  return getattr(models, builder)(num_classes=num_classes, **model_kwargs)


def strip_for_port(model, x_check):
  """``model`` without the training-only layers the port cannot read.

  Those layers (:data:`TRAINING_ONLY`) are identity at inference, so the
  rebuilt chain (same layer objects, same weights) predicts exactly what
  ``model`` predicts; that is checked on ``x_check`` (exact equality) and a
  difference raises. Returns ``(model, names of the layers removed)``.
  """
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from port import registry  # pylint: disable=import-outside-toplevel

  drop = [
    layer
    for layer in model.layers
    if type(layer).__name__ in TRAINING_ONLY
    and registry.converter_for(type(layer).__name__) is None
  ]
  if not drop:
    return model, []
  inp = model.inputs[0]
  kept = [layer for layer in model.layers if layer not in drop]
  stripped = keras.Sequential(
    [keras.Input(shape=inp.shape[1:], dtype=inp.dtype, name="input"), *kept], name=model.name
  )
  before = model.predict(x_check, batch_size=256, verbose=0)
  after = stripped.predict(x_check, batch_size=256, verbose=0)
  if not np.array_equal(before, after):
    raise RuntimeError(
      f"removing {[layer.name for layer in drop]} changed the predictions "
      f"(max abs diff {np.max(np.abs(before - after)):.3g})"
    )
  stripped.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
  return stripped, [layer.name for layer in drop]


def fit_keras(job, dataset, settings, callbacks=()):
  """Trains a ``best`` run: the runner's ``_fit_keras`` for ``best`` studies.

  Returns ``(model, curves, train_time_s, epoch_times, best_epoch)`` as the
  runner's own fit does; ``curves["stripped_layers"]`` names the layers
  :func:`strip_for_port` removed.
  """
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  model_kwargs, train = split_config(job.config)
  x_train, y_train = training_rows(dataset, train, settings)
  recipe = job.recipe
  model = build(job.family.builder, model_kwargs, x_train, dataset.num_classes)
  steps = -(-len(y_train) // recipe.batch_size)
  # With label smoothing the loss needs one-hot targets (Keras's sparse loss has
  # no smoothing); "accuracy" then resolves to categorical accuracy, same number.
  smoothing = float(train["label_smoothing"])
  if smoothing:
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    eye = np.eye(dataset.num_classes, dtype="float32")
    y_fit, y_val = eye[y_train], eye[dataset.y_val]
  else:
    loss = keras.losses.SparseCategoricalCrossentropy()
    y_fit, y_val = y_train, dataset.y_val
  model.compile(
    optimizer=make_optimizer(train, recipe.learning_rate, steps * recipe.epochs, steps),
    loss=loss,
    metrics=["accuracy"],
  )
  from train import fitting  # pylint: disable=import-outside-toplevel
  from train import keras_inputs  # pylint: disable=import-outside-toplevel

  timer = fitting.EpochTimer()
  stopper = keras.callbacks.EarlyStopping(
    monitor=recipe.monitor, patience=recipe.patience, restore_best_weights=True
  )
  start = time.perf_counter()
  history = model.fit(
    # Text through keras_inputs: no per-epoch TF E0000 line (see its docstring).
    **keras_inputs.fit_arguments(x_train, y_fit, dataset.x_val, y_val, recipe.batch_size),
    epochs=recipe.epochs,
    verbose=settings.verbose,
    callbacks=[stopper, timer, *callbacks],
  )
  train_time = time.perf_counter() - start
  curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
  curves["epoch_time_s"] = timer.times
  watched = np.asarray(curves[recipe.monitor])
  best_epoch = 1 + int(
    np.argmin(watched) if recipe.monitor.endswith("loss") else np.argmax(watched)
  )
  model, stripped = strip_for_port(model, dataset.x_val)
  curves["stripped_layers"] = stripped
  return model, curves, train_time, timer.times, best_epoch
