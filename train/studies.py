"""The course's hyper-parameter studies (the README's study table), as plain data.

Every family has one **base config** (the builder's keyword arguments) and a
training **recipe**; every study changes exactly ONE thing of the base config
and lists its variants as overrides. The variant equal to the base appears in
several studies of a family; the runner trains it once per seed and reuses it
(runs are keyed by a hash of everything that determines their numbers).

Nothing here imports TensorFlow/Keras, so command-line flags can be validated
against these tables before any heavy import or any work starts.
"""

import dataclasses
import hashlib
import json
from typing import Any, Mapping

from train import recipes

ALL = "all"
MONITORS = ("val_loss", "val_accuracy")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a family is trained (defaults; ``--epochs`` etc. override them).

  Attributes:
    epochs: maximum number of epochs.
    patience: EarlyStopping patience on validation loss (best weights restored).
    batch_size: mini-batch size.
    learning_rate: Adam's learning rate.
    monitor: the validation metric EarlyStopping watches and whose best epoch's
      weights are restored: ``"val_loss"`` (lowest) or ``"val_accuracy"`` (highest).
  """

  epochs: int
  patience: int
  batch_size: int
  learning_rate: float = 1e-3
  monitor: str = "val_loss"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One setting of a study: a short directory-safe name and its overrides."""

  name: str
  overrides: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Study:
  """A study: which base-config key(s) it varies and the variants it compares."""

  name: str
  varies: str  # human description of the one thing that changes
  variants: tuple[Variant, ...]


@dataclasses.dataclass(frozen=True)
class Family:
  """A model family: dataset, builder, base config, recipe and studies.

  Attributes:
    name: the ``--family`` value.
    title: a readable name for reports.
    dataset: ``"cifar10"``, ``"nusax"`` or ``"mnist"``.
    builder: name of the builder function in :mod:`train.models`.
    base: the base config, keyword arguments of the builder.
    recipe: the default training recipe.
    studies: the family's studies, in the order ``--study=all`` runs them.
  """

  name: str
  title: str
  dataset: str
  builder: str
  base: Mapping[str, Any]
  recipe: Recipe
  studies: tuple[Study, ...]

  def study(self, name: str) -> Study:
    for study in self.studies:
      if study.name == name:
        return study
    raise KeyError(name)

  @property
  def study_names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.studies)

  def config(self, variant: Variant) -> dict[str, Any]:
    """The full builder config of ``variant``: base config plus its overrides."""
    unknown = set(variant.overrides) - set(self.base)
    if unknown:
      raise ValueError(f"variant {variant.name!r} overrides unknown keys {sorted(unknown)}")
    return {**self.base, **variant.overrides}


def _v(name: str, **overrides) -> Variant:
  return Variant(name, overrides)


# ------------------------------------------------------------------------- CNN
# One Conv2D (ReLU, 'same' padding) + 2x2 pooling per block, Flatten, Dense 128
# + Dropout 0.5, softmax. Depth variants keep doubling the filters so the only
# change is how many conv layers there are.
CNN = Family(
  name="cnn",
  title="CNN (CIFAR-10)",
  dataset="cifar10",
  builder="build_cnn",
  base=dict(
    filters=(32, 64, 128),
    kernel_sizes=(3, 3, 3),
    pooling="max",
    head="flatten",
    dense_units=128,
    dropout=0.5,
  ),
  recipe=Recipe(epochs=15, patience=3, batch_size=64),
  studies=(
    Study(
      "conv_layers",
      "number of conv layers (filters keep doubling from 32, 3x3 kernels)",
      (
        _v("2-conv", filters=(32, 64), kernel_sizes=(3, 3)),
        _v("3-conv"),
        _v("4-conv", filters=(32, 64, 128, 256), kernel_sizes=(3, 3, 3, 3)),
      ),
    ),
    Study(
      "filters",
      "filters per conv layer",
      (
        _v("16-32-64", filters=(16, 32, 64)),
        _v("32-64-128"),
        _v("64-128-256", filters=(64, 128, 256)),
      ),
    ),
    Study(
      "kernels",
      "kernel size per conv layer",
      (
        _v("3-3-3"),
        _v("5-5-5", kernel_sizes=(5, 5, 5)),
        _v("3-5-7", kernel_sizes=(3, 5, 7)),
      ),
    ),
    Study(
      "pooling",
      "pooling type after each conv layer",
      (
        _v("max"),
        _v("avg", pooling="avg"),
      ),
    ),
    # Nothing varies: the base config alone, for its seed-to-seed spread and
    # for comparing the two trainers (--trainer) without training every
    # variant. Its runs are the same runs as the studies' base variants.
    Study("base", "nothing (the base config alone)", (_v("32-64-128"),)),
  ),
)


# ------------------------------------------------------------ SimpleRNN / LSTM
# TextVectorization (vocabulary adapted on the training texts) -> Embedding 64
# (mask_zero) -> recurrent layer(s) -> Dropout 0.5 -> Dense softmax. Base: one
# bidirectional layer of 64 cells; each study changes one of those three.
_TEXT_BASE = dict(
  max_tokens=10000,
  sequence_length=64,
  embedding_dim=64,
  units=(64,),
  bidirectional=True,
  dropout=0.5,
)


def _text_studies() -> tuple[Study, ...]:
  return (
    Study(
      "layers",
      "number of recurrent layers (64 cells each, bidirectional)",
      (
        _v("1-layer"),
        _v("2-layers", units=(64, 64)),
        _v("3-layers", units=(64, 64, 64)),
      ),
    ),
    Study(
      "cells",
      "cells per recurrent layer (one bidirectional layer)",
      (
        _v("32-cells", units=(32,)),
        _v("64-cells"),
        _v("128-cells", units=(128,)),
      ),
    ),
    Study(
      "direction",
      "direction (one layer of 64 cells)",
      (
        _v("unidirectional", bidirectional=False),
        _v("bidirectional"),
      ),
    ),
  )


# EarlyStopping watches validation *accuracy* here: on the 100-row validation set
# the loss bottoms out after ~4 epochs (over-confidence) while accuracy is still
# rising, and restoring that epoch gave under-trained models and a seed-to-seed
# std of 0.075 F1 for the base LSTM (0.026 with val_accuracy; results/README.md).
_TEXT_RECIPE = Recipe(epochs=30, patience=5, batch_size=32, monitor="val_accuracy")

RNN = Family(
  name="rnn",
  title="SimpleRNN (NusaX-Senti)",
  dataset="nusax",
  builder="build_text",
  base=dict(_TEXT_BASE, cell="simple_rnn"),
  recipe=_TEXT_RECIPE,
  studies=_text_studies(),
)

LSTM = Family(
  name="lstm",
  title="LSTM (NusaX-Senti)",
  dataset="nusax",
  builder="build_text",
  base=dict(_TEXT_BASE, cell="lstm"),
  recipe=_TEXT_RECIPE,
  studies=_text_studies(),
)


# ------------------------------------------------------------------------- MLP
# Seed 000's Keras recipe: 784 -> 256 -> 128 -> 10, ReLU, Dropout 0.3, Adam,
# the last 20% of the training set for validation, batch 128, <= 50 epochs,
# EarlyStopping(val_loss, patience 5, restore best weights).
MLP = Family(
  name="mlp",
  title="MLP (MNIST)",
  dataset="mnist",
  builder="build_mlp",
  base=dict(hidden_units=(256, 128), dropout=0.3),
  recipe=Recipe(epochs=50, patience=5, batch_size=128),
  studies=(Study("recipe", "nothing (seed 000's Keras recipe)", (_v("256-128"),)),),
)


FAMILIES: dict[str, Family] = {f.name: f for f in (CNN, RNN, LSTM, MLP)}


# ------------------------------------------------------------------------ best
# Per family, a `best` study (issue 15): the best recipe found and, as more
# variants, that recipe minus one trick at a time (train/recipes.py). Its base
# config and recipe are not the spec's, so it lives in a family of its own
# (same name, dataset and title); `--study=best` selects it and `--study=all`
# leaves it out (the spec's studies stay exactly as they were).
BEST = recipes.BEST


def _best_family(fam: Family) -> Family:
  spec = recipes.SPECS[fam.name]
  variants = tuple(Variant(name, dict(overrides)) for name, overrides in spec.ablations)
  study = Study(BEST, "the best recipe, then minus one trick at a time", variants)
  return dataclasses.replace(
    fam, builder=spec.builder, base=dict(spec.base), recipe=Recipe(**spec.recipe), studies=(study,)
  )


BEST_FAMILIES: dict[str, Family] = {name: _best_family(f) for name, f in FAMILIES.items()}


def family(name: str) -> Family:
  """The family called ``name``; ``ValueError`` listing the valid names otherwise."""
  if name not in FAMILIES:
    raise ValueError(f"unknown family {name!r}; valid families: {', '.join(FAMILIES)} (or {ALL!r})")
  return FAMILIES[name]


def resolve(family_name: str, study_name: str) -> list[tuple[Family, Study]]:
  """The (family, study) pairs a ``--family``/``--study`` request means.

  ``family_name`` may be ``"all"`` (then ``study_name`` must be ``"all"`` too);
  ``study_name`` may be ``"all"`` (every study of the family, in order).
  Raises ``ValueError`` with the valid choices for anything unknown.
  """
  if family_name == ALL:
    if study_name != ALL:
      raise ValueError(
        f"--family=all runs every study of every family; it takes only "
        f"--study=all, got --study={study_name!r}"
      )
    return [(f, s) for f in FAMILIES.values() for s in f.studies]
  fam = family(family_name)
  if study_name == BEST:
    best = BEST_FAMILIES[fam.name]
    return [(best, best.study(BEST))]
  if study_name == ALL:
    return [(fam, s) for s in fam.studies]
  if study_name not in fam.study_names:
    raise ValueError(
      f"unknown study {study_name!r} for family {fam.name!r}; valid "
      f"studies: {', '.join(fam.study_names)}, {BEST} (or {ALL!r})"
    )
  return [(fam, fam.study(study_name))]


def config_hash(payload: Mapping[str, Any]) -> str:
  """A short stable hash of a JSON-able mapping (tuples and lists hash alike)."""
  text = json.dumps(payload, sort_keys=True, default=list, separators=(",", ":"))
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
