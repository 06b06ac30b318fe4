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
class Softmax(base.Layer):
  """Keras ``Softmax`` layer over ``axis`` (an int, batch axis excluded from
  nothing: ``-1`` is the feature axis)."""

  axis: int = -1

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    return jax.nn.softmax(x, axis=self.axis), mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dropout(base.Layer):
  """Identity at inference; at training zeroes a ``rate`` fraction of units and
  scales the rest by ``1 / (1 - rate)`` (inverted dropout, as Keras).

  ``rate`` is the fraction *dropped* (Keras's meaning, not stax's keep rate)."""

  rate: float

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if not training or self.rate == 0.0:
      return x, mask
    if rng is None:
      raise ValueError(f"Dropout layer {self.name!r}: training=True needs an rng key")
    keep = jax.random.bernoulli(rng, 1.0 - self.rate, x.shape)
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
