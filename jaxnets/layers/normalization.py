"""BatchNormalization in its inference form (moving statistics), any feature axis.

Params, each of shape ``(features,)`` where ``features = x.shape[axis]``:
``gamma`` (when ``scale``), ``beta`` (when ``center``), ``moving_mean``,
``moving_variance``. With the default ``axis=-1`` that is the channel axis of
``NHWC`` images or the feature axis of ``(batch, features)``.

The arithmetic is ``tf.nn.batch_normalization``'s, step for step, so that the
float32 rounding matches Keras::

    inv = rsqrt(moving_variance + epsilon) * gamma
    y = x * inv + (beta - moving_mean * inv)

Training mode (batch statistics, moving-average updates) is not implemented:
these models are trained in Keras, or by the JAX trainer with its own state.
"""

import dataclasses

import jax.numpy as jnp
from jax import lax

from jaxnets.layers import base


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchNormalization(base.Layer):
  """Normalises ``x`` along ``axis`` with the stored moving mean and variance.

  Attributes:
    axis: the feature axis, counted like Keras (batch axis included; negative
      values count from the end). ``0`` (the batch axis) is not allowed.
    epsilon: added to the variance before the square root.
    center: whether ``beta`` is added.
    scale: whether ``gamma`` multiplies.
  """

  axis: int = -1
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True

  # Position-wise along the time axis: a time mask passes through unchanged.
  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if training:
      raise NotImplementedError(
        f"BatchNormalization {self.name!r}: only the inference form is implemented"
      )
    axis = self.axis % x.ndim
    if axis == 0:
      raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} is the batch axis")
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]

    def per_feature(v):
      return jnp.reshape(v, shape).astype(x.dtype)

    inv = lax.rsqrt(per_feature(params["moving_variance"]) + self.epsilon)
    if self.scale:
      inv = inv * per_feature(params["gamma"])
    shift = -per_feature(params["moving_mean"]) * inv
    if self.center:
      shift = per_feature(params["beta"]) - per_feature(params["moving_mean"]) * inv
    return x * inv + shift, mask

  def init(self, rng, input_shape):
    del rng
    features = input_shape[self.axis if self.axis < 0 else self.axis - 1]
    params = {
      "moving_mean": jnp.zeros((features,), jnp.float32),
      "moving_variance": jnp.ones((features,), jnp.float32),
    }
    if self.scale:
      params["gamma"] = jnp.ones((features,), jnp.float32)
    if self.center:
      params["beta"] = jnp.zeros((features,), jnp.float32)
    return params
