"""Layers that start a sequence model: token Embedding and the Masking layer.

Layouts: token ids ``(batch, time)`` int; activations ``(batch, time,
features)``; mask ``(batch, time)`` bool, True = real step. Both layers make
the mask the rest of the model sees, exactly as Keras 3 computes it.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxnets.errors import InputError
from jaxnets.layers import base
from jaxnets.layers import initializers


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Embedding(base.Layer):
  """Token ids ``(batch, time)`` -> ``embeddings[ids]`` ``(batch, time, output_dim)``.

  Params: ``embeddings (input_dim, output_dim)``. With ``mask_zero`` the output
  mask is ``ids != 0`` (id 0 is padding); without it the mask is ``None``, as
  Keras's ``Embedding.compute_mask``. ``jaxnets.Model`` reads ``mask_zero`` on
  the first layer to cut padded batches to their real length.
  """

  input_dim: int
  output_dim: int
  mask_zero: bool = False

  # Position-wise: a trailing padding step only produces its own output row.
  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    # JAX's gather clamps out-of-range ids; check_input rejects them first.
    y = jnp.take(params["embeddings"], x.astype(jnp.int32), axis=0)
    return y, (x != 0) if self.mask_zero else None

  def init(self, rng, input_shape):
    return {"embeddings": initializers.uniform(rng, (self.input_dim, self.output_dim))}

  def check_input(self, x):
    """Rejects token ids outside ``[0, input_dim)`` (Keras on CPU raises too)."""
    ids = np.asarray(x)
    if ids.size == 0:
      return
    bad = (ids < 0) | (ids >= self.input_dim)
    if bad.any():
      position = tuple(int(i) for i in np.argwhere(bad)[0])
      raise InputError(
        f"Embedding layer {self.name!r}: token id {int(ids[position])} at position "
        f"{position} is outside the valid range [0, {self.input_dim}) "
        f"({int(bad.sum())} out-of-range id(s) in this input)"
      )


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Masking(base.Layer):
  """Keras ``Masking``: a step whose features all equal ``mask_value`` is masked.

  ``x (batch, time, features)`` -> same shape with masked steps set to 0; the
  output mask ``any(x != mask_value, axis=-1)`` replaces any incoming mask.
  """

  mask_value: float = 0.0

  # The mask comes from the values at each step: after an Embedding the padded
  # steps need not equal mask_value, so trimming them could change results.
  trailing_padding_safe = False

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    keep = jnp.any(x != self.mask_value, axis=-1)
    # Keras uses where (not a product), so a NaN/inf at a masked step becomes 0.
    return jnp.where(keep[..., None], x, jnp.zeros((), x.dtype)), keep
