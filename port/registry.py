"""The converter registry: one entry per Keras layer class.

A converter has two halves, so that a model can be checked completely before
any weights are touched:

- ``build(cfg: ConfigReader) -> list[jaxnets Layer]``: reads the Keras layer's
  config through ``cfg``. Every option must be read; any value the jaxnets
  layer does not reproduce exactly raises ``UnsupportedLayerError`` naming the
  layer, the option and the value. Options left unread are rejected too, so a
  new Keras option can never be ignored silently.
- ``weights(keras_layer, built) -> {jaxnets_layer_name: params}``: copies the
  trained weights into the parameter layout of the layers ``build`` returned.

Everything about one layer is registered together, in one ``LayerRecord`` per
jaxnets layer class: the converter above, its inverse for ``port.to_keras`` and
its FLOP count for the benchmark. Adding support for a layer class = registering
one record (tf2jax's habit); registering a class twice raises.
"""

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np


class UnsupportedLayerError(ValueError):
  """A Keras layer (or one of its options) that jaxnets cannot reproduce exactly."""

  def __init__(self, layer_name: str, class_name: str, reason: str):
    self.layer_name, self.class_name, self.reason = layer_name, class_name, reason
    super().__init__(f"layer {layer_name!r} ({class_name}): {reason}")


class UnsupportedModelError(UnsupportedLayerError):
  """A model with one or more unsupported layers; ``problems`` lists them all."""

  def __init__(self, problems: list[tuple[str, str, str]]):
    self.problems = problems
    lines = "\n".join(f"  - layer {n!r} ({c}): {r}" for n, c, r in problems)
    ValueError.__init__(
      self,
      f"cannot port this model exactly; {len(problems)} unsupported layer(s)/option(s):\n{lines}",
    )
    self.layer_name, self.class_name, self.reason = problems[0]


# Options that only matter for training (initialisers, regularisers,
# constraints) or bookkeeping; they do not change the forward pass.
TRAINING_ONLY_OPTIONS = frozenset(
  {
    "trainable",
    "kernel_initializer",
    "bias_initializer",
    "recurrent_initializer",
    "embeddings_initializer",
    "beta_initializer",
    "gamma_initializer",
    "moving_mean_initializer",
    "moving_variance_initializer",
    "depthwise_initializer",
    "pointwise_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "recurrent_regularizer",
    "activity_regularizer",
    "embeddings_regularizer",
    "beta_regularizer",
    "gamma_regularizer",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "recurrent_constraint",
    "embeddings_constraint",
    "beta_constraint",
    "gamma_constraint",
    "depthwise_constraint",
    "pointwise_constraint",
    "seed",
    "build_config",
    "compile_config",
    "momentum",
    "renorm",
    "renorm_clipping",
    "renorm_momentum",
    "unit_forget_bias",
    "dropout_seed",
    "stateful_seed",
  }
)


class ConfigReader:
  """Reads one Keras layer's config; remembers which options were read."""

  def __init__(self, layer_name: str, class_name: str, config: dict[str, Any]):
    self.layer_name, self.class_name = layer_name, class_name
    self.config = dict(config)
    self._read = {"name"}

  def error(self, reason: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(self.layer_name, self.class_name, reason)

  def has(self, key: str) -> bool:
    return key in self.config

  def get(self, key: str, default: Any = None) -> Any:
    self._read.add(key)
    return self.config.get(key, default)

  def expect(self, key: str, *allowed: Any, default: Any = None) -> Any:
    """Reads ``key`` and rejects any value not in ``allowed``."""
    value = self.get(key, default)
    if value not in allowed:
      raise self.error(
        f"option {key}={value!r} is not supported "
        f"(supported: {', '.join(repr(a) for a in allowed)})"
      )
    return value

  def ignore(self, *keys: str) -> None:
    self._read.update(keys)

  def dtype(self) -> None:
    """Accepts only float32 compute (mixed precision would change the numbers)."""
    value = self.get("dtype")
    name = value
    if isinstance(value, dict):
      name = value.get("config", {}).get("name")
    if name not in (None, "float32"):
      raise self.error(f"option dtype={name!r} is not supported (only float32)")

  def finish(self) -> None:
    """Rejects every option no converter code looked at."""
    unread = sorted(set(self.config) - self._read - TRAINING_ONLY_OPTIONS)
    if unread:
      shown = ", ".join(f"{k}={self.config[k]!r:.80}" for k in unread)
      raise self.error(f"option(s) not handled by the jaxnets converter: {shown}")


Shape = tuple[int, ...]


def no_weights(keras_layer, built) -> dict[str, Any]:
  del keras_layer, built
  return {}


@dataclasses.dataclass(frozen=True)
class Converter:
  """The Keras -> jaxnets half of a record, for one Keras class name."""

  build: Callable[[ConfigReader], list]
  weights: Callable[[Any, list], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class LayerRecord:
  """Everything the project knows about one jaxnets layer class and its Keras class.

  Attributes:
    layer: the jaxnets layer class (or host-side preprocessor class) this record covers.
    keras_class: the Keras class name ``build`` reads and ``to_keras`` writes.
    build: ``ConfigReader -> [layer]``, the converter (see the module docstring).
    to_keras: ``(keras module, layer) -> Keras layer``, the converter's inverse; the
      weights are written afterwards by their Keras names (``port.to_keras``).
    flops: ``(layer, input shape, output shape) -> FLOPs`` for ONE example (shapes
      without the batch axis), by the convention in ``bench/flops.py``.
    weights: ``(keras layer, built layers) -> {layer name: params}``.
    also_from: further Keras class names that convert to the same jaxnets layer,
      each with its own ``build`` (e.g. ``LeakyReLU`` -> ``ReLU``); ``to_keras``
      always writes ``keras_class``.
  """

  layer: type
  keras_class: str
  build: Callable[[ConfigReader], list]
  to_keras: Callable[[Any, Any], Any]
  flops: Callable[[Any, Shape, Shape], int]
  weights: Callable[[Any, list], dict[str, Any]] = no_weights
  also_from: Mapping[str, Callable[[ConfigReader], list]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for part in ("build", "to_keras", "flops", "weights"):
      if not callable(getattr(self, part)):
        raise TypeError(f"record for {self.layer.__name__}: {part} must be callable")


# Keras class name -> converter, and jaxnets layer class -> record.
_CONVERTERS: dict[str, Converter] = {}
_RECORDS: dict[type, LayerRecord] = {}


def register(record: LayerRecord) -> LayerRecord:
  """Registers ``record``; a Keras class or jaxnets layer registered twice raises."""
  if record.layer in _RECORDS:
    raise ValueError(f"jaxnets layer class {record.layer.__name__} already has a record")
  converters = {record.keras_class: record.build, **record.also_from}
  taken = sorted(set(converters) & set(_CONVERTERS))
  if taken:
    raise ValueError(f"Keras class(es) {', '.join(taken)} already have a converter")
  _RECORDS[record.layer] = record
  for name, build in converters.items():
    _CONVERTERS[name] = Converter(build, record.weights)
  return record


def converter_for(class_name: str) -> Converter | None:
  """The converter for a Keras class name, or ``None`` when there is none."""
  return _CONVERTERS.get(class_name)


def record_for(layer_class: type) -> LayerRecord:
  """The record of a jaxnets layer class; ``KeyError`` naming it when there is none."""
  try:
    return _RECORDS[layer_class]
  except KeyError:
    raise KeyError(
      f"no port record for jaxnets layer class {layer_class.__name__} "
      "(register one in port/converters)"
    ) from None


def records() -> tuple[LayerRecord, ...]:
  return tuple(_RECORDS.values())


def layer_classes() -> frozenset[type]:
  """The jaxnets layer classes that have a record."""
  return frozenset(_RECORDS)


def supported_classes() -> tuple[str, ...]:
  return tuple(sorted(_CONVERTERS))


def named_weights(keras_layer) -> dict[str, np.ndarray]:
  """The layer's weights keyed by their Keras names (``kernel``, ``bias``...)."""
  out = {}
  for variable in keras_layer.weights:
    key = variable.path.split("/")[-1] if hasattr(variable, "path") else variable.name
    key = key.split(":")[0]
    out[key] = np.asarray(variable.numpy(), np.float32)
  return out
