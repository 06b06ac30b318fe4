"""Position-wise and shape layers: Dense, activations, Dropout, Flatten.

Activations are ``(batch, ..., features)``; Dense acts on the last axis like
Keras (``x @ kernel + bias`` with ``kernel (in, units)``, ``bias (units,)``).
These layers pass a time mask through unchanged, as Keras's do (``Flatten``,
which mixes the time axis into features, drops it).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxnets import activations
from jaxnets.layers import base
from jaxnets.layers import initializers


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dense(base.Layer):
  """``activation(x @ kernel + bias)``; params ``kernel (in, units)``, ``bias (units,)``."""

  units: int
  activation: str = "linear"
  use_bias: bool = True

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    y = jnp.dot(x, params["kernel"])
    if self.use_bias:
      y = y + params["bias"]
    return activations.get(self.activation)(y), mask

  def init(self, rng, input_shape):
    params = {"kernel": initializers.glorot_uniform(rng, (input_shape[-1], self.units))}
    if self.use_bias:
      params["bias"] = jnp.zeros((self.units,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Activation(base.Layer):
  """A named Keras activation applied element-wise (``softmax`` on the last axis)."""

  activation: str = "linear"

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    return activations.get(self.activation)(x), mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ReLU(base.Layer):
  """Keras ``ReLU`` layer: ``x`` above ``threshold`` (capped at ``max_value``),
  ``negative_slope * (x - threshold)`` below it."""

  max_value: float | None = None
  negative_slope: float = 0.0
  threshold: float = 0.0

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    # Mirrors keras.activations.relu: positive part (x where x > threshold,
    # clipped to [0, max_value]) minus negative_slope * relu(threshold - x).
    if self.threshold != 0.0:
      y = jnp.where(x > self.threshold, x, 0.0)
    else:
      y = jnp.maximum(x, 0.0)
    if self.max_value is not None:
      y = jnp.clip(y, 0.0, self.max_value)
    if self.negative_slope != 0.0:
      y = y - self.negative_slope * jnp.maximum(self.threshold - x, 0.0)
    return y.astype(x.dtype), mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class PReLU(base.Layer):
  """``relu(x) - alpha * relu(-x)`` with a learned ``alpha``.

  Params: ``alpha`` of the input's per-example shape with a 1 on every axis in
  ``shared_axes`` (Keras's numbering, batch axis = 0), so it broadcasts.
  """

  shared_axes: tuple[int, ...] | None = None

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    alpha = params["alpha"].astype(x.dtype)
    return jnp.maximum(x, 0.0) + -alpha * jnp.maximum(-x, 0.0), mask

  def init(self, rng, input_shape):
    del rng
    shape = list(input_shape)
    for axis in self.shared_axes or ():
      shape[axis - 1] = 1
    return {"alpha": jnp.zeros(tuple(shape), jnp.float32)}


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ELU(base.Layer):
  """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise (Keras's ``ELU`` layer)."""

  alpha: float = 1.0

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    # As Keras's TF backend: elu with alpha 1, then the negative side scaled.
    y = jax.nn.elu(x)
    if self.alpha != 1.0:
      y = jnp.where(x > 0, y, self.alpha * y)
    return y.astype(x.dtype), mask


# What Keras's Softmax writes where its mask is False, before the softmax.
_MASKED_LOGIT = -1e9


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Softmax(base.Layer):
  """Keras ``Softmax`` layer over ``axis``: an int, or a tuple of ints (a joint
  softmax over several axes), counted like Keras (batch axis = 0, negative
  from the end).

  A time mask ``(batch, time)`` arriving with the input broadcasts against it
  right-aligned, as in Keras: masked logits become ``-1e9`` before the softmax
  and masked outputs ``0`` after it. The mask passes on unchanged.
  """

  axis: int | tuple[int, ...] = -1

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if mask is not None:
      x = jnp.where(mask, x, jnp.asarray(_MASKED_LOGIT, x.dtype))
    if isinstance(self.axis, tuple) and len(self.axis) > 1:
      y = jnp.exp(x - jax.nn.logsumexp(x, axis=self.axis, keepdims=True))
    else:
      axis = self.axis[0] if isinstance(self.axis, tuple) else self.axis
      y = jax.nn.softmax(x, axis=axis)
    if mask is not None:
      y = jnp.where(mask, y, jnp.zeros((), y.dtype))
    return y, mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dropout(base.Layer):
  """Identity at inference; at training zeroes a ``rate`` fraction of units and
  scales the rest by ``1 / (1 - rate)`` (inverted dropout, as Keras).

  ``rate`` is the fraction *dropped* (Keras's meaning, not stax's keep rate).
  ``noise_shape`` (Keras's option, e.g. ``(None, 1, 1, 1)`` in EfficientNet's
  stochastic depth): the shape of the keep mask, broadcast over the input; a
  ``None`` entry takes the input's size on that axis."""

  rate: float
  noise_shape: tuple[int | None, ...] | None = None

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if not training or self.rate == 0.0:
      return x, mask
    if rng is None:
      raise ValueError(f"Dropout layer {self.name!r}: training=True needs an rng key")
    shape = x.shape
    if self.noise_shape is not None:
      if len(self.noise_shape) != x.ndim:
        raise ValueError(
          f"Dropout layer {self.name!r}: noise_shape {self.noise_shape} does not match "
          f"an input of rank {x.ndim}"
        )
      shape = tuple(n if d is None else d for n, d in zip(x.shape, self.noise_shape))
    keep = jax.random.bernoulli(rng, 1.0 - self.rate, shape)
    return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype), mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Flatten(base.Layer):
  """``(batch, d1, d2, ...) -> (batch, d1*d2*...)`` in row-major (channels-last)
  order, the order Keras's Flatten uses for ``channels_last`` inputs."""

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    return x.reshape(x.shape[0], math.prod(x.shape[1:])), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Reshape(base.Layer):
  """Reshapes each example to ``target_shape`` (batch axis kept; one ``-1`` allowed)."""

  target_shape: tuple[int, ...]

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    return x.reshape((x.shape[0],) + tuple(self.target_shape)), None
