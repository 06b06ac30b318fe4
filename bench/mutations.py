"""Deliberate bugs in a ported model, to prove the parity rule still bites.

``mutate(model, kind)`` returns a copy of a ``jaxnets.Model`` with one bug of
the kind a converter or a layer could really have, made with
``Model.replace`` (the graph, inputs and preprocessor are kept):

- ``batchnorm_channel``: one BatchNormalization channel's scale 1 % off (in the
  last BatchNormalization, the channel with the largest effective scale
  ``|gamma| / sqrt(var + eps)``).
- ``flipped_kernel``: the first convolution with a kernel of at least 2x2 (or
  2 taps in 1-D) spatially flipped — the correlation/convolution mix-up.
- ``swapped_lstm_gates``: the input and forget gates of the first LSTM (both
  directions of a Bidirectional) swapped in kernel, recurrent kernel and bias.
- ``shifted_mask``: the padding mask of the first ``mask_zero`` Embedding
  shifted one step later (the first padded step counts as real).
- ``dropped_bias``: the bias of the last Dense (or convolution) with one set to 0.
- ``softmax_wrong_axis``: the final softmax taken over the batch axis.

``None`` when the model has nothing the mutation applies to. Whether a
mutation changes the exact result at all is a question for float64:
``exact_outputs`` runs a (mutated) port's own layers under ``jax_enable_x64``
with its parameters cast, and a mutation "changes an output" when that moves
the result by more than the parity bound (a bug below float32 rounding is
invisible to any float32 check). Used by ``tests/test_mutations.py`` and
``python -m bench.parity_survey``.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnets
from jaxnets.layers import base
from port import reference

MUTATIONS = (
  "batchnorm_channel",
  "flipped_kernel",
  "swapped_lstm_gates",
  "shifted_mask",
  "dropped_bias",
  "softmax_wrong_axis",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ShiftedMask(base.Layer):
  """``inner`` with the mask it returns shifted one step later (not registered:
  a mutation is never saved)."""

  inner: base.Layer

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    y, out_mask = self.inner.apply(params, x, mask, training=training, rng=rng)
    if out_mask is None:
      return y, out_mask
    shifted = jnp.concatenate([out_mask[:, :1], out_mask[:, :-1]], axis=1)
    return y, shifted | out_mask

  def init(self, rng, input_shape):
    return self.inner.init(rng, input_shape)

  def check_input(self, x):
    self.inner.check_input(x)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _BatchAxisSoftmax(base.Layer):
  """``inner`` (its own softmax removed) then softmax over axis 0, the batch."""

  inner: base.Layer

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    y, out_mask = self.inner.apply(params, x, mask, training=training, rng=rng)
    return jax.nn.softmax(y, axis=0), out_mask

  def init(self, rng, input_shape):
    return self.inner.init(rng, input_shape)


def mutate(model: jaxnets.Model, kind: str) -> jaxnets.Model | None:
  """``model`` with one bug of ``kind`` (one of ``MUTATIONS``), or ``None``."""
  if kind not in MUTATIONS:
    raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(MUTATIONS)}")
  return globals()[f"_{kind}"](model)


def exact_outputs(model: jaxnets.Model, x) -> list[np.ndarray]:
  """``model``'s outputs on ``x`` computed in float64 (its layers under
  ``jax.enable_x64`` with the parameters and float inputs cast), one array per
  output (a dict in key order). ``x`` is already prepared (arrays, not text)."""
  with jax.enable_x64(True):
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), model.params)
    inputs = jax.tree_util.tree_map(
      lambda a: np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a, x
    )
    return reference.flatten(jax.jit(model.apply)(params, inputs))


def _numpy_params(model) -> dict[str, Any]:
  return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), model.params)


def _class_name(layer) -> str:
  return type(layer).__name__


def _batchnorm_channel(model):
  for layer in reversed(model.layers):
    if _class_name(layer) != "BatchNormalization" or not layer.scale:
      continue
    params = _numpy_params(model)
    weights = params[layer.name]
    effect = np.abs(weights["gamma"]) / np.sqrt(weights["moving_variance"] + layer.epsilon)
    channel = int(np.argmax(effect))
    weights["gamma"][channel] *= 1.01
    return model.replace(params=params)
  return None


def _flipped_kernel(model):
  for layer in model.layers:
    if not _class_name(layer).startswith(("Conv", "DepthwiseConv", "SeparableConv")):
      continue
    params = _numpy_params(model)
    weights = params.get(layer.name, {})
    key = "depthwise_kernel" if "depthwise_kernel" in weights else "kernel"
    kernel = weights.get(key)
    if kernel is None:
      continue
    spatial = kernel.ndim - 2
    if min(kernel.shape[:spatial]) < 2:
      continue
    weights[key] = np.ascontiguousarray(np.flip(kernel, axis=tuple(range(spatial))))
    return model.replace(params=params)
  return None


def _lstm_weight_sets(tree):
  """Every dict under ``tree`` that holds an LSTM's weights (4 gates)."""
  if not isinstance(tree, dict):
    return []
  if "recurrent_kernel" in tree:
    units = tree["recurrent_kernel"].shape[0]
    return [tree] if tree["recurrent_kernel"].shape[-1] == 4 * units else []
  return [found for value in tree.values() for found in _lstm_weight_sets(value)]


def _swapped_lstm_gates(model):
  params = _numpy_params(model)
  for layer in model.layers:
    sets = _lstm_weight_sets(params.get(layer.name, {}))
    if not sets:
      continue
    for weights in sets:
      units = weights["recurrent_kernel"].shape[0]
      order = np.r_[units : 2 * units, 0:units, 2 * units : 4 * units]  # f, i, c, o
      for key in ("kernel", "recurrent_kernel", "bias"):
        if key in weights:
          weights[key] = np.ascontiguousarray(weights[key][..., order])
    return model.replace(params=params)
  return None


def _shifted_mask(model):
  for layer in model.layers:
    if _class_name(layer) == "Embedding" and layer.mask_zero:
      return model.replace(layers={layer.name: _ShiftedMask(name=layer.name, inner=layer)})
  return None


def _dropped_bias(model):
  for layer in reversed(model.layers):
    weights = model.params.get(layer.name, {})
    if "bias" in weights and not _lstm_weight_sets(weights):
      params = _numpy_params(model)
      params[layer.name]["bias"] = np.zeros_like(params[layer.name]["bias"])
      return model.replace(params=params)
  return None


def _softmax_wrong_axis(model):
  for layer in reversed(model.layers):
    if getattr(layer, "activation", None) == "softmax":
      inner = dataclasses.replace(layer, activation="linear")
      return model.replace(layers={layer.name: _BatchAxisSoftmax(name=layer.name, inner=inner)})
    if _class_name(layer) == "Softmax":
      return model.replace(layers={layer.name: dataclasses.replace(layer, axis=0)})
  return None
