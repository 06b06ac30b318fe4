"""Attention layers: Keras's ``Attention`` and ``MultiHeadAttention``, exactly.

Both take a tuple of inputs (``multiple_inputs``; ``jaxnets.layers.base``).
Shapes: query ``(batch, T, dim)``, value ``(batch, S, dim_v)``, key
``(batch, S, dim_k)``; masks are boolean ``(batch, T)`` / ``(batch, S)`` or
``None``. Dropout is an inference no-op (``training`` is not supported for
it). Call-time options of the Keras layer (``use_causal_mask``, an explicit
``attention_mask``) are fields here, fixed when the model is ported.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.layers import base
from jaxnets.layers import initializers

# Keras's Attention subtracts this from masked scores; its Softmax layer (the
# MultiHeadAttention path with dropout) puts -1e9 there.
_SCORE_PENALTY = 1.0e9
# TF's dot_product_attention fills masked logits with this (0.7 x float32 max). numpy, not
# jnp: a jnp array here would start JAX's backend at import, before the device policy.
_LARGE_NEGATIVE = float(np.float32(-0.7 * float(np.finfo(np.float32).max)))


def _causal(t: int, s: int) -> jax.Array:
  """``(1, T, S)``: True where key position <= query position (Keras's cumsum form)."""
  return (jnp.arange(t)[:, None] >= jnp.arange(s)[None, :])[None]


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Attention(base.Layer):
  """Keras ``Attention`` (Luong dot or Bahdanau-style concat scores).

  Inputs ``(query, value)`` or ``(query, value, key)``; weights ``scale ()``
  (``use_scale``) and ``concat_score_weight ()`` (``score_mode="concat"``).
  Output ``(batch, T, dim_v)`` with the query's mask; masked query steps are 0.
  """

  use_scale: bool = False
  score_mode: str = "dot"
  dropout: float = 0.0
  use_causal_mask: bool = False

  multiple_inputs: ClassVar[bool] = True

  def __post_init__(self):
    if self.score_mode not in ("dot", "concat"):
      raise ValueError(f"score_mode must be 'dot' or 'concat', got {self.score_mode!r}")

  def init(self, rng, input_shapes):
    del rng, input_shapes
    params = {}
    if self.use_scale:
      params["scale"] = jnp.ones((), jnp.float32)
    if self.score_mode == "concat":
      params["concat_score_weight"] = jnp.ones((), jnp.float32)
    return params

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del training, rng
    masks = (None,) * len(xs) if masks is None else tuple(masks)
    if len(xs) not in (2, 3):
      raise ValueError(f"Attention {self.name!r} takes (query, value[, key]), got {len(xs)}")
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) > 2 else v
    q_mask, v_mask = masks[0], masks[1]
    scale = params.get("scale")
    if self.score_mode == "dot":
      scores = jnp.matmul(q, jnp.swapaxes(k, -2, -1))
      if scale is not None:
        scores = scores * scale
    else:
      summed = jnp.expand_dims(q, -2) + jnp.expand_dims(k, -3)
      if scale is not None:
        summed = scale * summed
      scores = params["concat_score_weight"] * jnp.sum(jnp.tanh(summed), axis=-1)
    scores_mask = v_mask
    if self.use_causal_mask:
      causal = _causal(scores.shape[-2], scores.shape[-1])
      scores_mask = causal if v_mask is None else jnp.logical_and(v_mask[:, None, :], causal)
    if scores_mask is not None:
      padding = jnp.logical_not(scores_mask)
      if padding.ndim == 2:
        padding = padding[:, None, :]
      scores = jnp.where(padding, scores - _SCORE_PENALTY, scores)
    weights = jax.nn.softmax(scores, axis=-1)
    out = jnp.matmul(weights, v)
    if q_mask is not None:
      out = jnp.where(q_mask[..., None], out, 0.0)
    return out, q_mask


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiHeadAttention(base.Layer):
  """Keras ``MultiHeadAttention`` over the time axis of rank-3 inputs.

  Inputs ``(query, value, key)`` plus ``attention_mask (batch, T, S)`` when
  ``has_attention_mask``. Weights, as Keras's EinsumDense sub-layers name them:
  ``query/kernel (dim, heads, key_dim)``, ``query/bias (heads, key_dim)``,
  ``key/...`` likewise, ``value/kernel (dim_v, heads, value_dim)``,
  ``attention_output/kernel (heads, value_dim, out)``, ``attention_output/bias
  (out,)`` (no biases without ``use_bias``). ``out`` is ``output_dim`` or the
  query's last dimension. The output carries the query's mask.

  Two numerical paths, as in Keras: without dropout, TF's
  ``dot_product_attention`` (scaled logits, masked logits set to a large
  negative, so a fully masked row averages the values); with dropout, the
  query is scaled first and Keras's masked Softmax zeroes masked weights.
  """

  num_heads: int
  key_dim: int
  value_dim: int
  use_bias: bool = True
  output_dim: int | None = None
  dropout: float = 0.0
  use_causal_mask: bool = False
  has_attention_mask: bool = False

  multiple_inputs: ClassVar[bool] = True

  def init(self, rng, input_shapes):
    dims = [shape[-1] for shape in input_shapes[:3]]
    query_dim, value_dim_in = dims[0], dims[1]
    key_dim_in = dims[2] if len(dims) > 2 else value_dim_in
    out = self.output_dim or query_dim
    shapes = {
      "query": ((query_dim, self.num_heads, self.key_dim), (self.num_heads, self.key_dim)),
      "key": ((key_dim_in, self.num_heads, self.key_dim), (self.num_heads, self.key_dim)),
      "value": ((value_dim_in, self.num_heads, self.value_dim), (self.num_heads, self.value_dim)),
      "attention_output": ((self.num_heads, self.value_dim, out), (out,)),
    }
    params = {}
    for i, (name, (kernel, bias)) in enumerate(shapes.items()):
      params[name] = {"kernel": initializers.glorot_uniform(jax.random.fold_in(rng, i), kernel)}
      if self.use_bias:
        params[name]["bias"] = jnp.zeros(bias, jnp.float32)
    return params

  def apply(self, params, xs, masks=None, *, training=False, rng=None):
    del training, rng
    expected = 4 if self.has_attention_mask else 3
    if len(xs) != expected:
      raise ValueError(f"MultiHeadAttention {self.name!r} takes {expected} inputs, got {len(xs)}")
    masks = (None,) * len(xs) if masks is None else tuple(masks)
    query, value, key = xs[:3]
    query_mask, value_mask, key_mask = masks[:3]
    attention_mask = xs[3].astype(bool) if self.has_attention_mask else None
    causal_only = self.use_causal_mask and all(
      m is None for m in (query_mask, value_mask, key_mask, attention_mask)
    )
    if not causal_only:
      attention_mask = self._attention_mask(
        query, value, query_mask, value_mask, key_mask, attention_mask
      )
    q = self._project(params["query"], query)
    k = self._project(params["key"], key)
    v = self._project(params["value"], value)
    if self.dropout > 0.0:
      out = self._softmax_path(q, k, v, attention_mask, causal_only)
    else:
      out = self._dot_product_path(q, k, v, attention_mask, causal_only)
    dense = params["attention_output"]
    y = jnp.einsum("abcd,cde->abe", out, dense["kernel"])
    if self.use_bias:
      y = y + dense["bias"]
    return y, query_mask

  def _project(self, p, x):
    y = jnp.einsum("abc,cde->abde", x, p["kernel"])
    return y + p["bias"] if self.use_bias else y

  def _attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask):
    """Keras's ``_compute_attention_mask``: the masks ANDed into ``(batch, T, S)``."""
    auto = None
    if query_mask is not None:
      auto = query_mask[:, :, None]
    for mask in (value_mask, key_mask):
      if mask is not None:
        auto = mask[:, None, :] if auto is None else auto & mask[:, None, :]
    if self.use_causal_mask:
      causal = _causal(query.shape[1], value.shape[1])
      auto = causal if auto is None else auto & causal
    if auto is not None:
      attention_mask = auto if attention_mask is None else attention_mask & auto
    return attention_mask

  def _dot_product_path(self, q, k, v, attention_mask, causal_only):
    scale = jnp.float32(1.0 / float(self.key_dim) ** 0.5)
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k) * scale
    if causal_only:
      mask = _causal(logits.shape[2], logits.shape[3])[:, None]
      logits = jnp.where(mask, logits, _LARGE_NEGATIVE)
    elif attention_mask is not None:
      logits = jnp.where(attention_mask[:, None], logits, _LARGE_NEGATIVE)
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("BNTS,BSNH->BTNH", probs, v)

  def _softmax_path(self, q, k, v, attention_mask, causal_only):
    if causal_only:
      attention_mask = _causal(q.shape[1], k.shape[1])
    q = q * jnp.float32(1.0 / float(self.key_dim) ** 0.5)
    scores = jnp.einsum("aecd,abcd->acbe", k, q)
    if attention_mask is not None:
      mask = jnp.expand_dims(attention_mask, -3)
      scores = jnp.where(mask, scores, -_SCORE_PENALTY)
      weights = jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)
    else:
      weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("acbe,aecd->abcd", weights, v)
