"""Element-wise activations, defined exactly as Keras 3 defines them.

Keras stores an activation in a layer config by name (``"relu"``,
``"gelu"``...). ``get(name)`` returns the matching pure JAX function; an unknown
name raises ``ValueError`` naming it, so the port rejects it instead of guessing.

Where Keras 3's defaults differ from JAX's, Keras wins:
- ``gelu`` is the exact erf form (``approximate=False``); jax defaults to tanh.
- ``leaky_relu`` uses ``negative_slope=0.2``; jax defaults to 0.01.
- ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (Keras 3), not Keras 2's ``0.2x + 0.5``.
"""

from typing import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def linear(x):
  return x


def relu(x):
  return jnp.maximum(x, 0)


def relu6(x):
  return jnp.clip(x, 0, 6)


def sigmoid(x):
  return jax.nn.sigmoid(x)


def hard_sigmoid(x):
  return relu6(x + 3.0) / 6.0


def hard_silu(x):
  return x * hard_sigmoid(x)


def tanh(x):
  return jnp.tanh(x)


def softmax(x):
  return jax.nn.softmax(x, axis=-1)


def log_softmax(x):
  return jax.nn.log_softmax(x, axis=-1)


def gelu(x):
  return jax.nn.gelu(x, approximate=False)


def elu(x):
  return jax.nn.elu(x, alpha=1.0)


def selu(x):
  return jax.nn.selu(x)


def softplus(x):
  return jax.nn.softplus(x)


def softsign(x):
  return x / (1.0 + jnp.abs(x))


def silu(x):
  return x * jax.nn.sigmoid(x)


def leaky_relu(x):
  return jax.nn.leaky_relu(x, negative_slope=0.2)


def exponential(x):
  return jnp.exp(x)


def mish(x):
  return x * jnp.tanh(jax.nn.softplus(x))


_ACTIVATIONS: dict[str, Activation] = {
  "linear": linear,
  "relu": relu,
  "relu6": relu6,
  "sigmoid": sigmoid,
  "hard_sigmoid": hard_sigmoid,
  "hard_silu": hard_silu,
  "hard_swish": hard_silu,
  "tanh": tanh,
  "softmax": softmax,
  "log_softmax": log_softmax,
  "gelu": gelu,
  "elu": elu,
  "selu": selu,
  "softplus": softplus,
  "softsign": softsign,
  "silu": silu,
  "swish": silu,
  "leaky_relu": leaky_relu,
  "exponential": exponential,
  "mish": mish,
}

NAMES = tuple(sorted(_ACTIVATIONS))


def get(name: str | None) -> Activation:
  """Returns the activation called ``name`` (``None`` means linear)."""
  if name is None:
    return linear
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(NAMES)}")
  return _ACTIVATIONS[name]
