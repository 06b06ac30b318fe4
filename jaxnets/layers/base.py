"""The layer contract every jaxnets layer follows, and the layer registry.

A layer is a frozen dataclass of hyper-parameters (fixed when it is built, as in
``jax.example_libraries.stax``) plus pure functions of explicit parameters:

- ``apply(params, x, mask=None, *, training=False, rng=None) -> (y, mask)``:
  the forward pass. ``params`` is a dict whose leaves carry the Keras weight
  names (``kernel``, ``bias``, ``recurrent_kernel``, ``gamma``...). ``mask`` is
  a boolean ``(batch, time)`` array (True = real step) or ``None``; a layer
  returns the mask its output carries, following Keras's ``compute_mask``.
- ``init(rng, input_shape) -> params``: fresh parameters with Keras's default
  initialisers, for the JAX trainer. ``input_shape`` excludes the batch axis.
- ``check_input(x)``: host-side validation of concrete input values that a
  compiled function cannot report (e.g. token ids out of range).

The registry maps a class name to the class so a saved architecture
(``get_config`` dicts) can be rebuilt without TensorFlow.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import numpy as np

Params = dict[str, Any]

_REGISTRY: dict[str, type["Layer"]] = {}


def register(cls):
  """Class decorator: makes ``cls`` rebuildable by name from a saved config.

  A name already bound to another class raises: a saved architecture names its
  classes, so two classes of one name would make loading ambiguous.
  """
  bound = _REGISTRY.get(cls.__name__)
  if bound is not None and bound is not cls:
    raise ValueError(
      f"jaxnets layer class name {cls.__name__!r} is already registered "
      f"to {bound.__module__}.{bound.__qualname__}"
    )
  _REGISTRY[cls.__name__] = cls
  return cls


def registered_classes() -> tuple[type, ...]:
  """Every class registered for loading, in name order."""
  return tuple(_REGISTRY[name] for name in sorted(_REGISTRY))


def layer_class(name: str) -> type["Layer"]:
  if name not in _REGISTRY:
    raise ValueError(f"unknown jaxnets layer class {name!r}; known: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Layer:
  """Base class: ``name`` plus the hyper-parameters a subclass declares."""

  name: str

  # (Class default; a layer may override it per instance with a property.)
  # True when dropping trailing *masked* time steps from the input leaves every
  # output value this layer passes on unchanged (recurrent layers that carry
  # state over masked steps, mask-aware pooling, position-wise layers). The
  # model uses this to cut padded text batches to their longest real sequence.
  trailing_padding_safe: ClassVar[bool] = False

  def apply(
    self,
    params: Params,
    x: jax.Array,
    mask: jax.Array | None = None,
    *,
    training: bool = False,
    rng: jax.Array | None = None,
  ):
    raise NotImplementedError

  def init(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Params:
    del rng, input_shape
    return {}

  def check_input(self, x: np.ndarray) -> None:
    del x

  def get_config(self) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "Layer":
    kwargs = {}
    for f in dataclasses.fields(cls):
      if f.name in config:
        value = config[f.name]
        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _jsonable(value):
  if isinstance(value, tuple):
    return [_jsonable(v) for v in value]
  return value
