"""Keras's default initialisers, for training jaxnets layers from scratch.

Shapes follow the Keras weight layouts (``Dense kernel (in, units)``, ``Conv2D
kernel (kh, kw, in, out)``), and fan-in/fan-out are computed as Keras does:
the receptive field size multiplies both.
"""

import math

import jax
import jax.numpy as jnp


def _fans(shape):
  if len(shape) < 2:
    return shape[0], shape[0]
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(rng, shape, dtype=jnp.float32):
  fan_in, fan_out = _fans(shape)
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return jax.random.uniform(rng, shape, dtype, -limit, limit)


def orthogonal(rng, shape, dtype=jnp.float32):
  """Keras ``Orthogonal(gain=1)`` for a 2-D ``(rows, cols)`` matrix."""
  return jax.nn.initializers.orthogonal()(rng, shape, dtype)


def uniform(rng, shape, minval=-0.05, maxval=0.05, dtype=jnp.float32):
  """Keras ``RandomUniform`` defaults (used by ``Embedding``)."""
  return jax.random.uniform(rng, shape, dtype, minval, maxval)
