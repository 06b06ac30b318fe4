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

Several-input layers (merge layers, attention) set the class attribute
``multiple_inputs = True``; for them the contract reads:

- ``apply(params, xs: tuple, masks: tuple, *, training=False, rng=None) -> (y, mask)``:
  ``xs`` holds the inputs in the order the layer documents (Keras's call
  order), ``masks`` one mask or ``None`` per input.
- ``init(rng, input_shapes: tuple) -> params``: one shape (no batch axis) per input.

A model wires layers together with a ``jaxnets.graph.Graph``; a layer never
sees the graph.

The registry maps a class name to the class so a saved architecture
(``get_config`` dicts) can be rebuilt without TensorFlow.
"""

import dataclasses
import types
import typing
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
  # True for a layer taking a tuple of inputs (see the module docstring).
  multiple_inputs: ClassVar[bool] = False

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
    """Rebuilds a layer from ``get_config()``'s dict; every value's type is checked."""
    return cls(**checked_options(cls, config))


def checked_options(cls, config: dict[str, Any]) -> dict[str, Any]:
  """``config`` as keyword arguments of the dataclass ``cls``, lists as tuples.

  Raises ``ValueError`` naming the option for an unknown or missing option or a
  value of the wrong type (a string where a number belongs, a float where an
  int does...): a saved architecture may have been edited by hand.
  """
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(config) - set(fields))
  if unknown:
    raise ValueError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}")
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for name, f in fields.items():
    if name not in config:
      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        raise ValueError(f"missing option {name!r} for {cls.__name__}")
      continue
    value = config[name]
    if not _matches(value, hints[name]):
      raise ValueError(f"option {name}={value!r:.80} is not of type {_type_name(hints[name])}")
    kwargs[name] = _tuples(value)
  return kwargs


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _matches(value, hint) -> bool:
  """Whether a JSON value fits a simple annotation (scalars, ``X | None``, tuples)."""
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_matches(value, h) for h in typing.get_args(hint))
  if hint is type(None):
    return value is None
  if origin is tuple:
    args = typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
      return False
    if len(args) == 2 and args[1] is Ellipsis:
      return all(_matches(v, args[0]) for v in value)
    return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if hint is str:
    return isinstance(value, str)
  return True  # anything richer (a nested layer) is checked by its own from_config


def _type_name(hint) -> str:
  return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _jsonable(value):
  if isinstance(value, tuple):
    return [_jsonable(v) for v in value]
  return value
