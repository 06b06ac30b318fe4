"""Records for Keras's ``Attention`` and ``MultiHeadAttention``, and their
call binders (``BINDERS``, read by ``port.api``).

A binder maps one call of the Keras layer in a functional graph to the jaxnets
layer's inputs and call-time options: ``(keras layer, args, kwargs) ->
(tensors, options)``. It pops the keyword arguments it handles; ``port.api``
refuses any left over. Options become fields of the jaxnets layer
(``use_causal_mask``, ``has_attention_mask``). ``return_attention_scores``
is refused (a second output).
"""

import math

from jaxnets.layers import attention
from port import registry


def _error(layer, reason: str) -> registry.UnsupportedLayerError:
  return registry.UnsupportedLayerError(layer.name, type(layer).__name__, reason)


def _flag(layer, kwargs, key: str) -> bool:
  value = kwargs.pop(key, False)
  if not isinstance(value, bool):
    raise _error(layer, f"call argument {key}={value!r:.60} must be a Python bool")
  return value


def _rank3(layer, tensors) -> None:
  for t in tensors:
    if len(t.shape) != 3:
      raise _error(
        layer, f"input {t.name!r} has shape {tuple(t.shape)}: only rank-3 (batch, time, features)"
      )
  if any(str(getattr(t.dtype, "name", t.dtype)) != "float32" for t in tensors):
    raise _error(layer, "inputs must be float32")


def bind_attention(layer, args, kwargs):
  """``Attention()([query, value(, key)], use_causal_mask=...)``."""
  if _flag(layer, kwargs, "return_attention_scores"):
    raise _error(layer, "return_attention_scores=True is not supported (a second output)")
  causal = _flag(layer, kwargs, "use_causal_mask")
  if len(args) != 1 or not isinstance(args[0], (list, tuple)) or len(args[0]) not in (2, 3):
    raise _error(layer, "must be called on a list [query, value] or [query, value, key]")
  tensors = list(args[0])
  _rank3(layer, tensors)
  return tensors, {"use_causal_mask": causal}


def bind_multi_head_attention(layer, args, kwargs):
  """``MultiHeadAttention()(query, value, key=None, attention_mask=None, use_causal_mask=...)``."""
  names = ("query", "value", "key", "attention_mask")
  given = dict(zip(names, args))
  if len(args) > 4:
    raise _error(layer, f"is called with {len(args)} positional arguments")
  for name in names:
    if name in kwargs:
      if name in given:
        raise _error(layer, f"argument {name} given twice")
      given[name] = kwargs.pop(name)
  if _flag(layer, kwargs, "return_attention_scores"):
    raise _error(layer, "return_attention_scores=True is not supported (a second output)")
  causal = _flag(layer, kwargs, "use_causal_mask")
  if given.get("query") is None or given.get("value") is None:
    raise _error(layer, "needs query and value tensors")
  key = given.get("key")
  # key=None means key=value in Keras (and the value's mask then stands for both).
  tensors = [given["query"], given["value"], given["value"] if key is None else key]
  _rank3(layer, tensors)
  attention_mask = given.get("attention_mask")
  if attention_mask is not None:
    if len(attention_mask.shape) != 3:
      raise _error(layer, "attention_mask must be (batch, T, S)")
    tensors.append(attention_mask)
  return tensors, {"use_causal_mask": causal, "has_attention_mask": attention_mask is not None}


BINDERS = {"Attention": bind_attention, "MultiHeadAttention": bind_multi_head_attention}


def attention_layer(cfg):
  cfg.dtype()
  score_mode = cfg.expect("score_mode", "dot", "concat", default="dot")
  return [
    attention.Attention(
      name=cfg.layer_name,
      use_scale=bool(cfg.get("use_scale", False)),
      score_mode=score_mode,
      dropout=float(cfg.get("dropout", 0.0)),  # inference no-op
    )
  ]


def multi_head_attention(cfg):
  cfg.dtype()
  cfg.expect("use_gate", False, default=False)
  cfg.expect("sliding_window", None)
  cfg.expect("flash_attention", None, False)
  axes = cfg.get("attention_axes")
  if axes not in (None, 1, -2, [1], [-2], (1,), (-2,)):
    raise cfg.error(
      f"option attention_axes={axes!r} is not supported (only the default: the time axis)"
    )
  output_shape = cfg.get("output_shape")
  if isinstance(output_shape, (list, tuple)):
    if len(output_shape) != 1:
      raise cfg.error(f"option output_shape={output_shape!r} is not supported (one dimension)")
    output_shape = output_shape[0]
  if output_shape is not None and (not isinstance(output_shape, int) or output_shape < 1):
    raise cfg.error(f"option output_shape={output_shape!r} is not supported")
  key_dim = int(cfg.get("key_dim"))
  value_dim = cfg.get("value_dim")
  return [
    attention.MultiHeadAttention(
      name=cfg.layer_name,
      num_heads=int(cfg.get("num_heads")),
      key_dim=key_dim,
      value_dim=key_dim if value_dim is None else int(value_dim),
      use_bias=bool(cfg.get("use_bias", True)),
      output_dim=output_shape,
      dropout=float(cfg.get("dropout", 0.0)),
    )
  ]


def _attention_weights(keras_layer, built):
  weights = registry.named_weights(keras_layer)
  return {built[0].name: weights} if weights else {}


def _mha_weights(keras_layer, built):
  params = {}
  for name in ("query", "key", "value", "attention_output"):
    sub = {"query": "_query_dense", "key": "_key_dense", "value": "_value_dense"}.get(
      name, "_output_dense"
    )
    params[name] = registry.named_weights(getattr(keras_layer, sub))
  return {built[0].name: params}


def _attention_flops(layer, in_shape, out_shape) -> int:
  q, v = in_shape[0], in_shape[1]
  t, s, d = q[0], v[0], q[-1]
  return 4 * t * s * d + 5 * t * s


def _mha_flops(layer, in_shape, out_shape) -> int:
  q, v = in_shape[0], in_shape[1]
  k = in_shape[2] if len(in_shape) > 2 else v
  h = layer.num_heads
  t, s = q[0], v[0]
  projections = 2 * h * (t * q[-1] * layer.key_dim + s * k[-1] * layer.key_dim)
  projections += 2 * h * s * v[-1] * layer.value_dim
  scores = 2 * h * t * s * (layer.key_dim + layer.value_dim) + 5 * h * t * s
  return projections + scores + 2 * h * layer.value_dim * math.prod(out_shape)


registry.register(
  registry.LayerRecord(
    layer=attention.Attention,
    keras_class="Attention",
    build=attention_layer,
    weights=_attention_weights,
    to_keras=lambda keras, layer: keras.layers.Attention(
      use_scale=layer.use_scale,
      score_mode=layer.score_mode,
      dropout=layer.dropout,
      name=layer.name,
    ),
    flops=_attention_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=attention.MultiHeadAttention,
    keras_class="MultiHeadAttention",
    build=multi_head_attention,
    weights=_mha_weights,
    to_keras=lambda keras, layer: keras.layers.MultiHeadAttention(
      num_heads=layer.num_heads,
      key_dim=layer.key_dim,
      value_dim=layer.value_dim,
      use_bias=layer.use_bias,
      output_shape=layer.output_dim,
      dropout=layer.dropout,
      name=layer.name,
    ),
    flops=_mha_flops,
  )
)
