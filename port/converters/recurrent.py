"""Records for Keras's sequence layers: Embedding, Masking, SimpleRNN, LSTM, GRU
and Bidirectional (1-D global pooling is with the other pooling, in ``conv``).

A recurrent layer's weights live on its ``cell`` (``kernel``,
``recurrent_kernel``, ``bias``); Bidirectional's on ``forward_layer.cell`` and
``backward_layer.cell``, whose full configs are nested in the wrapper's config
and are read (and checked) like any other layer's.
"""

import dataclasses
import math

from jaxnets.layers import embedding
from jaxnets.layers import recurrent
from port import registry
from port.converters import core as core_converters
from port.converters.core import activation_name

# Keras's RNN options that only matter for training or bookkeeping.
_RNN_IGNORED = ("seed", "use_cudnn")


def _embedding_weights(keras_layer, built):
  return {built[0].name: {"embeddings": registry.named_weights(keras_layer)["embeddings"]}}


def embedding_layer(cfg):
  cfg.dtype()
  cfg.expect("quantization_config", None)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha", "input_length")
  cfg.expect("sparse", False, default=False)
  return [
    embedding.Embedding(
      name=cfg.layer_name,
      input_dim=int(cfg.get("input_dim")),
      output_dim=int(cfg.get("output_dim")),
      mask_zero=bool(cfg.get("mask_zero", False)),
    )
  ]


def masking(cfg):
  cfg.dtype()
  return [embedding.Masking(name=cfg.layer_name, mask_value=float(cfg.get("mask_value", 0.0)))]


def _rnn_options(cfg, zero_output_for_mask=None):
  """Reads the options every Keras RNN has; rejects what cannot be honoured."""
  cfg.dtype()
  cfg.expect("stateful", False, default=False)
  if cfg.get("return_state", False):
    raise cfg.error(
      "option return_state=True is not supported: a jaxnets model is a "
      "single chain, so the extra state outputs could not reach any layer"
    )
  cfg.expect("time_major", False, default=False)
  cfg.ignore(*_RNN_IGNORED)
  zero_output = bool(cfg.get("zero_output_for_mask", False))
  if zero_output_for_mask is not None:
    zero_output = zero_output_for_mask
  options = {
    "name": cfg.layer_name,
    "units": int(cfg.get("units")),
    "use_bias": bool(cfg.get("use_bias", True)),
    "return_sequences": bool(cfg.get("return_sequences", False)),
    "go_backwards": bool(cfg.get("go_backwards", False)),
    "zero_output_for_mask": zero_output,
    "unroll": bool(cfg.get("unroll", False)),  # same numbers either way
    # Identity at inference (they only act when training).
    "dropout": float(cfg.get("dropout", 0.0)),
    "recurrent_dropout": float(cfg.get("recurrent_dropout", 0.0)),
  }
  if options["units"] < 1:
    raise cfg.error(f"option units={options['units']!r} must be positive")
  return options


def _simple_rnn(cfg, zero_output_for_mask=None):
  options = _rnn_options(cfg, zero_output_for_mask)
  return recurrent.SimpleRNN(activation=activation_name(cfg, "activation"), **options)


def _lstm(cfg, zero_output_for_mask=None):
  options = _rnn_options(cfg, zero_output_for_mask)
  cfg.expect("implementation", 1, 2, default=2)  # same numbers either way
  return recurrent.LSTM(
    activation=activation_name(cfg, "activation"),
    recurrent_activation=activation_name(cfg, "recurrent_activation"),
    unit_forget_bias=bool(cfg.get("unit_forget_bias", True)),
    **options,
  )


def _gru(cfg, zero_output_for_mask=None):
  options = _rnn_options(cfg, zero_output_for_mask)
  cfg.expect("implementation", 1, 2, default=2)
  return recurrent.GRU(
    activation=activation_name(cfg, "activation"),
    recurrent_activation=activation_name(cfg, "recurrent_activation"),
    reset_after=bool(cfg.get("reset_after", True)),
    **options,
  )


_RNN_BUILDERS = {"SimpleRNN": _simple_rnn, "LSTM": _lstm, "GRU": _gru}


def _cell_weights(keras_rnn, layer):
  """Cell weights ``kernel``, ``recurrent_kernel`` (and ``bias``) of one RNN."""
  weights = registry.named_weights(keras_rnn.cell)
  params = {"kernel": weights["kernel"], "recurrent_kernel": weights["recurrent_kernel"]}
  if layer.use_bias:
    params["bias"] = weights["bias"]
  return params


def _rnn_weights(keras_layer, built):
  return {built[0].name: _cell_weights(keras_layer, built[0])}


def simple_rnn(cfg):
  return [_simple_rnn(cfg)]


def lstm(cfg):
  return [_lstm(cfg)]


def gru(cfg):
  return [_gru(cfg)]


def _wrapped(cfg, key, return_sequences=None):
  """Builds the recurrent layer whose serialised form is ``cfg[key]``."""
  spec = cfg.get(key)
  if not isinstance(spec, dict) or "config" not in spec:
    raise cfg.error(f"option {key} is missing or not a serialised Keras layer: {spec!r:.80}")
  class_name = spec.get("class_name")
  inner = spec["config"]
  if class_name not in _RNN_BUILDERS:
    raise cfg.error(
      f"wrapped {key} {inner.get('name')!r} is a {class_name}; only "
      f"{', '.join(_RNN_BUILDERS)} are supported inside Bidirectional"
    )
  reader = registry.ConfigReader(inner.get("name", key), class_name, inner)
  try:
    # Keras's Bidirectional forces zero_output_for_mask = return_sequences on
    # both of its layers, whatever their own configs say.
    layer = _RNN_BUILDERS[class_name](
      reader, zero_output_for_mask=bool(inner.get("return_sequences", False))
    )
    reader.finish()
  except registry.UnsupportedLayerError as e:
    raise cfg.error(f"wrapped {key} {e.layer_name!r} ({e.class_name}): {e.reason}") from None
  return layer


def _bidirectional_weights(keras_layer, built):
  layer = built[0]
  return {
    layer.name: {
      "forward_layer": _cell_weights(keras_layer.forward_layer, layer.forward_layer),
      "backward_layer": _cell_weights(keras_layer.backward_layer, layer.backward_layer),
    }
  }


def bidirectional(cfg):
  cfg.dtype()
  merge_mode = cfg.get("merge_mode", "concat")
  if merge_mode is None:
    raise cfg.error(
      "option merge_mode=None is not supported: it returns the two "
      "directions as separate outputs, which a single-chain jaxnets model "
      "cannot pass on (use 'concat', 'sum', 'mul' or 'ave')"
    )
  if merge_mode not in ("concat", "sum", "mul", "ave"):
    raise cfg.error(
      f"option merge_mode={merge_mode!r} is not supported "
      "(supported: 'concat', 'sum', 'mul', 'ave')"
    )
  forward = _wrapped(cfg, "layer")
  if cfg.has("backward_layer") and cfg.config["backward_layer"] is not None:
    backward = _wrapped(cfg, "backward_layer")
  else:  # Keras derives it from the forward layer with go_backwards flipped on
    cfg.ignore("backward_layer")
    backward = dataclasses.replace(
      forward, name=f"backward_{forward.name.removeprefix('forward_')}", go_backwards=True
    )
  if forward.go_backwards == backward.go_backwards:
    raise cfg.error("forward and backward layers must have different go_backwards values")
  return [
    recurrent.Bidirectional(
      name=cfg.layer_name, forward_layer=forward, backward_layer=backward, merge_mode=merge_mode
    )
  ]


# ------------------------------------------------------------------ inverses


def _embedding_to_keras(keras, layer):
  return keras.layers.Embedding(
    layer.input_dim, layer.output_dim, mask_zero=layer.mask_zero, name=layer.name
  )


def _recurrent_to_keras(keras, layer):
  options = core_converters.options(
    layer,
    "units",
    "use_bias",
    "return_sequences",
    "go_backwards",
    "unroll",
    "dropout",
    "recurrent_dropout",
    "activation",
  )
  for optional in ("recurrent_activation", "reset_after", "unit_forget_bias"):
    if hasattr(layer, optional):
      options[optional] = getattr(layer, optional)
  return getattr(keras.layers, type(layer).__name__)(name=layer.name, **options)


def _bidirectional_to_keras(keras, layer):
  return keras.layers.Bidirectional(
    _recurrent_to_keras(keras, layer.forward_layer),
    backward_layer=_recurrent_to_keras(keras, layer.backward_layer),
    merge_mode=layer.merge_mode,
    name=layer.name,
  )


# --------------------------------------------------------------- FLOP counts
# Recurrent layers count every time step of the input they are given; the
# benchmark gives a text model's rows at their real lengths (bench/flops.py).


def _simple_rnn_step(cell, features: int) -> int:
  """Input and recurrent matmuls, their sum, the bias, the activation."""
  u = cell.units
  return (
    2 * features * u
    + 2 * u * u
    + u
    + (u if cell.use_bias else 0)
    + core_converters.activation_flops(cell.activation, u)
  )


def _lstm_step(cell, features: int) -> int:
  """Matmuls for the four gates, their sum and bias, three sigmoids and two tanh
  (``5u``), then ``c = f*c + i*g`` (``3u``) and ``h = o*tanh(c)`` (``u``)."""
  u, width = cell.units, 4 * cell.units
  bias = width if cell.use_bias else 0
  return 2 * features * width + 2 * u * width + width + bias + 5 * u + 4 * u


def _gru_step(cell, features: int) -> int:
  """Matmuls for the three gates, bias (twice with ``reset_after``), then gate
  adds ``2u``, ``x_h + r*h_h`` ``2u``, activations ``3u``, ``z*h + (1-z)*hh`` ``4u``."""
  u, width = cell.units, 3 * cell.units
  bias = (2 * width if cell.reset_after else width) if cell.use_bias else 0
  return 2 * features * width + 2 * u * width + bias + 11 * u


_STEP_FLOPS = {
  recurrent.SimpleRNN: _simple_rnn_step,
  recurrent.LSTM: _lstm_step,
  recurrent.GRU: _gru_step,
}


def _recurrent_flops(layer, in_shape, out_shape) -> int:
  del out_shape
  return in_shape[0] * _STEP_FLOPS[type(layer)](layer, in_shape[-1])


def _bidirectional_flops(layer, in_shape, out_shape) -> int:
  """Both directions, plus 1 FLOP per output element to merge by sum/mul, 2 by ave."""
  steps, features = in_shape[0], in_shape[-1]
  directions = sum(
    _STEP_FLOPS[type(cell)](cell, features) for cell in (layer.forward_layer, layer.backward_layer)
  )
  merge = {"concat": 0, "sum": 1, "mul": 1, "ave": 2}[layer.merge_mode]
  return steps * directions + merge * math.prod(out_shape)


def _masking_flops(layer, in_shape, out_shape) -> int:
  del layer, out_shape
  return math.prod(in_shape)  # one comparison per element


# ------------------------------------------------------------------- records

registry.register(
  registry.LayerRecord(
    layer=embedding.Embedding,
    keras_class="Embedding",
    build=embedding_layer,
    weights=_embedding_weights,
    to_keras=_embedding_to_keras,
    flops=core_converters.free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=embedding.Masking,
    keras_class="Masking",
    build=masking,
    to_keras=lambda keras, layer: keras.layers.Masking(
      mask_value=layer.mask_value, name=layer.name
    ),
    flops=_masking_flops,
  )
)
for _layer, _build in (
  (recurrent.SimpleRNN, simple_rnn),
  (recurrent.LSTM, lstm),
  (recurrent.GRU, gru),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_build,
      weights=_rnn_weights,
      to_keras=_recurrent_to_keras,
      flops=_recurrent_flops,
    )
  )
registry.register(
  registry.LayerRecord(
    layer=recurrent.Bidirectional,
    keras_class="Bidirectional",
    build=bidirectional,
    weights=_bidirectional_weights,
    to_keras=_bidirectional_to_keras,
    flops=_bidirectional_flops,
  )
)
