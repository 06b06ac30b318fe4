"""Per-example normalisation and input scaling: LayerNormalization,
GroupNormalization, UnitNormalization, Rescaling, Normalization.

Axes are counted like Keras counts them: the batch axis is axis 0, negative
values count from the end. Each ``apply`` follows the Keras 3 arithmetic step
for step (``keras.ops.layer_normalization``, ``GroupNormalization.call``,
``keras.ops.normalize``...) so the float32 rounding matches, including Keras's
own quirks, which are written where they are reproduced.

None of these layers mixes the time axis with the batch of other steps in a way
that depends on a mask; Keras passes a time mask through all of them
(``supports_masking``), and so do these.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets.layers import base


def _positive_axes(layer, axes, ndim: int) -> tuple[int, ...]:
  """``axes`` as non-negative positions of an ``ndim``-dimensional batch.

  Raises ``ValueError`` naming the layer for an axis out of range, the batch
  axis (normalising across examples would make one example's output depend on
  the others in its batch) or an axis given twice.
  """
  out = []
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(f"{type(layer).__name__} {layer.name!r}: axis {a} is out of range")
    out.append(a % ndim)
  if 0 in out:
    raise ValueError(f"{type(layer).__name__} {layer.name!r}: axis 0 is the batch axis")
  if len(set(out)) != len(out):
    raise ValueError(f"{type(layer).__name__} {layer.name!r}: axes {tuple(axes)} repeat an axis")
  return tuple(out)


def _moments(x, axes):
  """Mean and variance over ``axes`` (kept), as ``tf.nn.moments``: the variance
  is the mean of squared differences from the mean."""
  mean = jnp.mean(x, axis=axes, keepdims=True)
  variance = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
  return mean, variance


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerNormalization(base.Layer):
  """Normalises each example over ``axis`` (one or several axes).

  Params (when used): ``gamma`` and ``beta``, each of shape
  ``tuple(x.shape[a] for a in axis)`` with ``axis`` in Keras's stored (sorted)
  order. ``gamma`` exists when ``scale`` or ``rms_scaling``; ``beta`` when
  ``center`` and not ``rms_scaling``.

  Keras reshapes (does not transpose) ``gamma``/``beta`` onto the input's
  broadcast shape; with mixed-sign axes such as ``[-1, 1]`` their stored order
  differs from the positional order and the reshape scrambles them. That is what
  Keras computes, so it is what this layer computes too.

  ``rms_scaling`` is Keras's, which divides by the *standard deviation* (the
  mean is subtracted inside the variance) and multiplies by ``gamma``; it does
  not recentre the output.
  """

  axis: tuple[int, ...] = (-1,)
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True
  rms_scaling: bool = False

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del training, rng
    _positive_axes(self, self.axis, x.ndim)
    axes = sorted(self.axis)
    broadcast_shape = [1] * x.ndim
    for a in axes:
      broadcast_shape[a] = x.shape[a]

    def broadcast(v):
      return jnp.reshape(v, broadcast_shape).astype(x.dtype)

    if self.rms_scaling:
      _, variance = _moments(x, tuple(axes))
      y = x * lax.rsqrt(variance + self.epsilon)
      if "gamma" in params:
        y = y * broadcast(params["gamma"])
      return y, mask
    mean, variance = _moments(x, tuple(axes))
    inv = lax.rsqrt(variance + self.epsilon)
    if self.scale:
      inv = inv * broadcast(params["gamma"])
    shift = -mean * inv
    if self.center:
      shift = shift + broadcast(params["beta"])
    return x * inv + shift, mask

  def init(self, rng, input_shape):
    del rng
    full = (None,) + tuple(input_shape)
    shape = tuple(full[a] for a in sorted(self.axis))
    params = {}
    if self.scale or self.rms_scaling:
      params["gamma"] = jnp.ones(shape, jnp.float32)
    if self.center and not self.rms_scaling:
      params["beta"] = jnp.zeros(shape, jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupNormalization(base.Layer):
  """Normalises each example over groups of channels along ``axis``.

  The ``C`` channels of ``axis`` split into ``groups`` consecutive groups of
  ``C // groups``; mean and variance are taken over every non-batch axis
  except the group axis. Params: ``gamma`` (when ``scale``) and ``beta`` (when
  ``center``), shape ``(C,)``. ``groups=-1`` means one group per channel.
  """

  groups: int = 32
  axis: int = -1
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True

  trailing_padding_safe = True

  def _groups(self, channels: int) -> int:
    groups = channels if self.groups == -1 else self.groups
    if groups < 1 or channels % groups:
      raise ValueError(
        f"GroupNormalization {self.name!r}: groups={self.groups} does not divide "
        f"the {channels} channels of axis {self.axis}"
      )
    return groups

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del training, rng
    (axis,) = _positive_axes(self, (self.axis,), x.ndim)
    channels = x.shape[axis]
    groups = self._groups(channels)
    # Keras inserts the group axis *before* the channel axis at list position
    # `self.axis` (for -1: [..., groups, C // groups]).
    group_shape = list(x.shape)
    group_shape[self.axis] = channels // groups
    group_shape.insert(self.axis, groups)
    grouped = jnp.reshape(x, group_shape)
    reduction = list(range(1, len(group_shape)))
    reduction.pop(-2 if self.axis == -1 else self.axis - 1)  # keep the group axis
    broadcast_shape = [1] * x.ndim
    broadcast_shape[self.axis] = channels // groups
    broadcast_shape.insert(self.axis, groups)

    mean, variance = _moments(grouped, tuple(reduction))
    inv = lax.rsqrt(variance + self.epsilon)
    if self.scale:
      inv = inv * jnp.reshape(params["gamma"], broadcast_shape).astype(x.dtype)
    shift = -mean * inv
    if self.center:
      shift = shift + jnp.reshape(params["beta"], broadcast_shape).astype(x.dtype)
    return jnp.reshape(grouped * inv + shift, x.shape), mask

  def init(self, rng, input_shape):
    del rng
    channels = ((None,) + tuple(input_shape))[self.axis]
    self._groups(channels)
    params = {}
    if self.scale:
      params["gamma"] = jnp.ones((channels,), jnp.float32)
    if self.center:
      params["beta"] = jnp.zeros((channels,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class UnitNormalization(base.Layer):
  """Scales each example to unit L2 norm over ``axis``:
  ``x * min(rsqrt(sum(x**2)), 1e12)`` (``keras.ops.normalize``, epsilon 1e-12)."""

  axis: tuple[int, ...] = (-1,)

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, training, rng
    axes = _positive_axes(self, self.axis, x.ndim)
    square_sum = jnp.sum(jnp.square(x), axis=axes, keepdims=True)
    inv_norm = jnp.minimum(lax.rsqrt(square_sum), np.float32(1.0 / 1e-12))
    return x * inv_norm, mask


def _rounded(y):
  """``y``, rounded to float32 before the add that follows.

  XLA:CPU contracts ``x * s + o`` into one fused multiply-add (one rounding);
  TF rounds the product first. For outputs of large magnitude (raw pixel or
  feature scales) that is one float32 ulp, which can exceed 1e-5. A select the
  compiler cannot remove (it keeps NaN as NaN, so it is the identity) sits
  between the multiply and the add and stops the contraction.
  """
  return jnp.where(y != y, jnp.float32(np.nan), y)


def _divide(a, b):
  """``a / b`` rounded once, as TF divides, with ``b`` broadcast to ``a``'s shape.

  XLA rewrites ``a / broadcast(b)`` into ``a * broadcast(1 / b)`` (two
  roundings: off by an ulp for some values). Broadcasting ``b`` first and
  passing it through ``_rounded`` leaves no broadcast for that rewrite to match.
  """
  return a / _rounded(jnp.broadcast_to(b, a.shape))


def _constant(values: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
  """A float32 array from flat ``values`` and its ``shape`` (``()``: a scalar)."""
  return np.asarray(values, np.float64).astype(np.float32).reshape(shape)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Rescaling(base.Layer):
  """``x * scale + offset`` with constants from the Keras config.

  ``scale`` and ``offset`` are stored flat with their shapes (``()`` for a
  scalar; ``(channels,)`` or any shape that broadcasts against the
  channels-last input for per-channel values), as Keras broadcasts them.
  """

  scale: tuple[float, ...] = (1.0,)
  scale_shape: tuple[int, ...] = ()
  offset: tuple[float, ...] = (0.0,)
  offset_shape: tuple[int, ...] = ()

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, training, rng
    if not jnp.issubdtype(x.dtype, jnp.floating):  # integer images; a float64 run stays so
      x = x.astype(jnp.float32)
    scale = _constant(self.scale, self.scale_shape)
    offset = _constant(self.offset, self.offset_shape)
    return _rounded(x * scale) + offset, mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Normalization(base.Layer):
  """Keras's ``Normalization`` preprocessing layer in its adapted state.

  ``y = (x - mean) / max(sqrt(variance), epsilon)``, or with ``invert``
  ``y = mean + x * max(sqrt(variance), epsilon)``.

  Attributes:
    axis: the axes that keep their own statistics (Keras's ``axis``; empty:
      one mean and variance for everything).
    invert: map normalised values back to the original scale.
    epsilon: ``keras.config.epsilon()`` when the model was ported (Keras reads
      the global value on every call).

  Params: ``mean`` and ``variance``, of shape ``tuple(x.shape[a] for a in
  sorted(positive axis))``, whether Keras adapted them or took them from its
  config (the port broadcasts configured values to that shape); ``count``, an
  int32 scalar (how many values ``adapt`` saw), unused here but kept so the
  layer goes back to Keras with every one of its weights.
  """

  axis: tuple[int, ...] = (-1,)
  invert: bool = False
  epsilon: float = 1e-7

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del training, rng
    keep = sorted(_positive_axes(self, self.axis, x.ndim))
    broadcast_shape = [x.shape[d] if d in keep else 1 for d in range(x.ndim)]
    x = x.astype(jnp.float32)
    mean = jnp.reshape(params["mean"], broadcast_shape)
    variance = jnp.reshape(params["variance"], broadcast_shape)
    std = jnp.maximum(jnp.sqrt(variance), np.float32(self.epsilon))
    if self.invert:
      return mean + _rounded(x * std), mask
    return _divide(x - mean, std), mask

  def init(self, rng, input_shape):
    del rng
    full = (None,) + tuple(input_shape)
    keep = sorted(_positive_axes(self, self.axis, len(full)))
    shape = tuple(full[d] for d in keep)
    return {
      "mean": jnp.zeros(shape, jnp.float32),
      "variance": jnp.ones(shape, jnp.float32),
      "count": jnp.zeros((), jnp.int32),
    }


__all__ = [
  "GroupNormalization",
  "LayerNormalization",
  "Normalization",
  "Rescaling",
  "UnitNormalization",
]
