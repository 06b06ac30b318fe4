"""Merge layers: several tensors in, one out (Keras's ``keras.layers.merging``).

Every class here takes a tuple of inputs (``multiple_inputs``; see
``jaxnets.layers.base``). Inputs are ``(batch, ...)`` arrays; a mask is a
boolean ``(batch, time)`` array or ``None`` per input.

Keras's rules, reproduced:

- Elementwise layers broadcast; inputs of lower rank first get size-1 axes
  inserted at axis 1 until the ranks agree (Keras's ``_reshape_required``).
- The output mask is the OR of the input masks when every input has one,
  else ``None``. ``Add``, ``Subtract`` and ``Average`` ignore masks in their
  values; ``Multiply`` treats masked steps as 1 and zeroes steps masked in
  every input; ``Maximum``/``Minimum`` take a masked step's value from the
  other operand (Keras's ``_apply_merge_op_and_or_mask``).
- ``Concatenate`` builds its mask by concatenating each input's mask
  broadcast to the input (all True for an unmasked input) and reducing
  with ``any`` over the last axis.

``Arithmetic`` is the ``x + y`` / ``keras.ops`` arithmetic of a functional
model (an operation node, not a layer, in Keras 3): operands are tensors or
constants, broadcasting like numpy, and no mask is passed on (Keras ops set none).
"""

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.layers import base


def _rounded(y):
  """``y`` as is, behind a select XLA cannot remove (NaN stays NaN: the identity).

  It stops XLA:CPU from contracting a product with the add that follows into
  one fused multiply-add (TF rounds the product first: an ulp apart).
  """
  return jnp.where(y != y, jnp.float32(np.nan), y)


def _divide(a, b):
  """``a / b`` rounded once, as TF divides: XLA rewrites a division by a
  broadcast or constant divisor into a multiply by its reciprocal (two
  roundings); a divisor of the full shape behind an optimization barrier
  (which constant folding cannot see through) leaves nothing to rewrite."""
  shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b))
  divisor = jnp.broadcast_to(jnp.asarray(b, jnp.result_type(a, b)), shape)
  return a / jax.lax.optimization_barrier(divisor)


def _same_rank(xs: tuple) -> tuple:
  """Inserts size-1 axes at axis 1 into lower-rank inputs, as Keras's Merge.call does."""
  rank = max(x.ndim for x in xs)
  out = []
  for x in xs:
    for _ in range(rank - x.ndim):
      x = jnp.expand_dims(x, 1)
    out.append(x)
  return tuple(out)


def _or_masks(masks: tuple):
  """OR of the masks when every input has one, else ``None`` (Keras's compute_mask)."""
  if any(m is None for m in masks):
    return None
  return functools.reduce(jnp.logical_or, masks)


def _expanded(mask, x):
  """A ``(batch, time)`` mask broadcast to ``x`` (Keras: expand_dims(-1) + broadcast_to)."""
  return jnp.broadcast_to(jnp.expand_dims(mask, -1), x.shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Merge(base.Layer):
  multiple_inputs: ClassVar[bool] = True
  # Not safe: with one unmasked input the output carries no mask, and the
  # layers after it would then see the padding steps.
  trailing_padding_safe: ClassVar[bool] = False

  def init(self, rng, input_shapes):
    del rng, input_shapes
    return {}

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del params, training, rng
    masks = (None,) * len(xs) if masks is None else tuple(masks)
    if len(xs) < self.min_inputs:
      raise ValueError(f"{type(self).__name__} {self.name!r} needs {self.min_inputs}+ inputs")
    return self._merge(_same_rank(tuple(xs)), masks)

  min_inputs: ClassVar[int] = 1

  def _merge(self, xs, masks):
    raise NotImplementedError


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Add(_Merge):
  """Sum of the inputs."""

  def _merge(self, xs, masks):
    return functools.reduce(jnp.add, xs), _or_masks(masks)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Subtract(_Merge):
  """``xs[0] - xs[1]`` (exactly two inputs)."""

  min_inputs: ClassVar[int] = 2

  def _merge(self, xs, masks):
    if len(xs) != 2:
      raise ValueError(f"Subtract {self.name!r} takes exactly 2 inputs, got {len(xs)}")
    return xs[0] - xs[1], _or_masks(masks)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Average(_Merge):
  """Sum of the inputs divided by their count (Keras's order: sum, then divide)."""

  def _merge(self, xs, masks):
    return _divide(functools.reduce(jnp.add, xs), float(len(xs))), _or_masks(masks)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Multiply(_Merge):
  """Product of the inputs; masked steps count as 1, steps masked everywhere are 0."""

  def _merge(self, xs, masks):
    every = all(m is not None for m in masks)
    output, output_mask = None, None
    for x, mask in zip(xs, masks):
      if mask is not None:
        mask = _expanded(mask, x)
        x = jnp.where(mask, x, jnp.ones((), x.dtype))
        if every:
          output_mask = mask if output_mask is None else jnp.logical_or(output_mask, mask)
      output = x if output is None else output * x
    if every:
      output = jnp.where(output_mask, output, jnp.zeros((), output.dtype))
      return _rounded(output), jnp.any(output_mask, axis=-1)
    return _rounded(output), None


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Extremum(_Merge):
  """Keras's ``_apply_merge_op_and_or_mask`` with ``op``."""

  def _merge(self, xs, masks):
    output, output_mask = None, None
    for x, mask in zip(xs, masks):
      if mask is not None:
        mask = _expanded(mask, x)
      if output is None:
        output, output_mask = x, mask
        continue
      if mask is not None:
        x = jnp.where(mask, x, output)
      if output_mask is not None:
        output = jnp.where(output_mask, output, x)
      if mask is not None and output_mask is not None:
        output_mask = jnp.logical_or(output_mask, mask)
      else:
        output_mask = None
      output = self._op(output, x)
    return output, None if output_mask is None else jnp.any(output_mask, axis=-1)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Maximum(_Extremum):
  """Elementwise maximum of the inputs."""

  _op = staticmethod(jnp.maximum)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Minimum(_Extremum):
  """Elementwise minimum of the inputs."""

  _op = staticmethod(jnp.minimum)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Concatenate(_Merge):
  """Inputs joined along ``axis`` (counted with the batch axis, as in Keras)."""

  axis: int = -1

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    # No rank equalisation: Keras concatenates the inputs as they are.
    del params, training, rng
    masks = (None,) * len(xs) if masks is None else tuple(masks)
    y = jnp.concatenate(xs, axis=self.axis)
    if all(m is None for m in masks):
      return y, None
    full = []
    for x, m in zip(xs, masks):
      if m is None:
        full.append(jnp.ones(x.shape, bool))
      elif m.ndim < x.ndim:
        full.append(jnp.logical_or(jnp.expand_dims(m, -1), jnp.zeros(x.shape, bool)))
      else:
        full.append(m)
    return y, jnp.any(jnp.concatenate(full, axis=self.axis), axis=-1)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dot(_Merge):
  """Keras's ``batch_dot`` of two inputs over ``axes`` (counted with the batch axis).

  The output holds ``x``'s remaining axes then ``y``'s; two rank-2 inputs give
  ``(batch, 1)``. With ``normalize``, each input is first L2-normalised along
  its axis (``x * rsqrt(max(sum(x^2), 1e-12))``, Keras's ``ops.normalize``).
  """

  axes: tuple[int, int]
  normalize: bool = False

  min_inputs: ClassVar[int] = 2

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del params, training, rng
    if len(xs) != 2:
      raise ValueError(f"Dot {self.name!r} takes exactly 2 inputs, got {len(xs)}")
    masks = (None, None) if masks is None else tuple(masks)
    x, y = xs
    a0 = self.axes[0] % x.ndim
    a1 = self.axes[1] % y.ndim
    if 0 in (a0, a1):
      raise ValueError(f"Dot {self.name!r}: cannot reduce over the batch axis")
    if self.normalize:
      x, y = _l2_normalize(x, a0), _l2_normalize(y, a1)
    x_rest = [i for i in range(1, x.ndim) if i != a0]
    y_rest = [i for i in range(1, y.ndim) if i != a1]
    # einsum letters: Z batch, Y the contracted axis, a.. the kept axes in order.
    x_sub, y_sub = ["Z"] * x.ndim, ["Z"] * y.ndim
    x_sub[a0] = y_sub[a1] = "Y"
    used = iter("abcdefghijklmnopqrstuvwxyz")
    for i in x_rest:
      x_sub[i] = next(used)
    for i in y_rest:
      y_sub[i] = next(used)
    result = "Z" + "".join(x_sub[i] for i in x_rest) + "".join(y_sub[i] for i in y_rest)
    eq = f"{''.join(x_sub)},{''.join(y_sub)}->{result}"
    z = jnp.einsum(eq, x, y, precision=jax.lax.Precision.HIGHEST)
    if x.ndim == 2 and y.ndim == 2:
      z = z[:, None]
    return z, _or_masks(masks)


def _l2_normalize(x, axis):
  square_sum = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(square_sum, 1e-12))


_OPS = {
  "add": jnp.add,
  "subtract": jnp.subtract,
  "multiply": lambda a, b: _rounded(jnp.multiply(a, b)),
  "divide": _divide,
  "maximum": jnp.maximum,
  "minimum": jnp.minimum,
  "not_equal": jnp.not_equal,
  "logical_or": jnp.logical_or,
  "logical_and": jnp.logical_and,
}


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Arithmetic(base.Layer):
  """``op`` over ``operands``: a constant, or ``None`` for the next input tensor.

  E.g. ``Arithmetic(op="add", operands=(None, 3.0))`` is ``x + 3.0`` and
  ``operands=(None, None)`` adds two tensors. Numpy broadcasting; float32.
  """

  op: str
  operands: tuple[float | None, ...]

  multiple_inputs: ClassVar[bool] = True

  @property
  def masks_padding(self) -> bool:
    """``ids != 0``: the padding mask an Embedding(mask_zero) records in Keras."""
    return self.op == "not_equal" and 0.0 in self.operands

  @property
  def trailing_padding_safe(self) -> bool:
    # Keras ops drop the mask, so the layers after one see the padding steps;
    # the padding mask itself is position-wise.
    return self.masks_padding

  def __post_init__(self):
    if self.op not in _OPS:
      raise ValueError(f"Arithmetic op must be one of {', '.join(_OPS)}, got {self.op!r}")
    if len(self.operands) != 2 or all(o is not None for o in self.operands):
      raise ValueError(f"Arithmetic takes two operands, at least one a tensor: {self.operands}")

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del params, masks, training, rng
    tensors = iter(xs)
    values = [next(tensors) if o is None else jnp.asarray(o, jnp.float32) for o in self.operands]
    return _OPS[self.op](*values), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SetMask(base.Layer):
  """``(x, mask) -> x`` carrying ``mask`` (cast to bool): an explicit ``mask=``
  argument of a Keras call, which replaces the mask ``x`` carries."""

  multiple_inputs: ClassVar[bool] = True
  trailing_padding_safe: ClassVar[bool] = True  # position-wise, passes a mask on

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del params, masks, training, rng
    x, mask = xs
    return x, mask.astype(bool)
