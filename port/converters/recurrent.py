"""Converters for Keras's sequence layers: Embedding, Masking, SimpleRNN, LSTM,
GRU, Bidirectional and 1-D global pooling.

A recurrent layer's weights live on its ``cell`` (``kernel``,
``recurrent_kernel``, ``bias``); Bidirectional's on ``forward_layer.cell`` and
``backward_layer.cell``, whose full configs are nested in the wrapper's config
and are read (and checked) like any other layer's.
"""

import dataclasses

from jaxnets.layers import embedding
from jaxnets.layers import recurrent
from port import registry
from port.converters.core import activation_name

# Keras's RNN options that only matter for training or bookkeeping.
_RNN_IGNORED = ("seed", "use_cudnn")


def _embedding_weights(keras_layer, built):
  return {built[0].name: {"embeddings": registry.named_weights(keras_layer)["embeddings"]}}


@registry.register("Embedding", weights=_embedding_weights)
def embedding_layer(cfg):
  cfg.dtype()
  cfg.expect("quantization_config", None)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha", "input_length")
  cfg.expect("sparse", False, default=False)
  return [embedding.Embedding(name=cfg.layer_name, input_dim=int(cfg.get("input_dim")),
                              output_dim=int(cfg.get("output_dim")),
                              mask_zero=bool(cfg.get("mask_zero", False)))]


@registry.register("Masking")
def masking(cfg):
  cfg.dtype()
  return [embedding.Masking(name=cfg.layer_name, mask_value=float(cfg.get("mask_value", 0.0)))]


def _rnn_options(cfg, zero_output_for_mask=None):
  """Reads the options every Keras RNN has; rejects what cannot be honoured."""
  cfg.dtype()
  cfg.expect("stateful", False, default=False)
  if cfg.get("return_state", False):
    raise cfg.error("option return_state=True is not supported: a jaxnets model is a "
                    "single chain, so the extra state outputs could not reach any layer")
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
  return recurrent.LSTM(activation=activation_name(cfg, "activation"),
                        recurrent_activation=activation_name(cfg, "recurrent_activation"),
                        unit_forget_bias=bool(cfg.get("unit_forget_bias", True)), **options)


def _gru(cfg, zero_output_for_mask=None):
  options = _rnn_options(cfg, zero_output_for_mask)
  cfg.expect("implementation", 1, 2, default=2)
  return recurrent.GRU(activation=activation_name(cfg, "activation"),
                       recurrent_activation=activation_name(cfg, "recurrent_activation"),
                       reset_after=bool(cfg.get("reset_after", True)), **options)


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


@registry.register("SimpleRNN", weights=_rnn_weights)
def simple_rnn(cfg):
  return [_simple_rnn(cfg)]


@registry.register("LSTM", weights=_rnn_weights)
def lstm(cfg):
  return [_lstm(cfg)]


@registry.register("GRU", weights=_rnn_weights)
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
    raise cfg.error(f"wrapped {key} {inner.get('name')!r} is a {class_name}; only "
                    f"{', '.join(_RNN_BUILDERS)} are supported inside Bidirectional")
  reader = registry.ConfigReader(inner.get("name", key), class_name, inner)
  try:
    # Keras's Bidirectional forces zero_output_for_mask = return_sequences on
    # both of its layers, whatever their own configs say.
    layer = _RNN_BUILDERS[class_name](
        reader, zero_output_for_mask=bool(inner.get("return_sequences", False)))
    reader.finish()
  except registry.UnsupportedLayerError as e:
    raise cfg.error(f"wrapped {key} {e.layer_name!r} ({e.class_name}): {e.reason}") from None
  return layer


def _bidirectional_weights(keras_layer, built):
  layer = built[0]
  return {layer.name: {
      "forward_layer": _cell_weights(keras_layer.forward_layer, layer.forward_layer),
      "backward_layer": _cell_weights(keras_layer.backward_layer, layer.backward_layer)}}


@registry.register("Bidirectional", weights=_bidirectional_weights)
def bidirectional(cfg):
  cfg.dtype()
  merge_mode = cfg.get("merge_mode", "concat")
  if merge_mode is None:
    raise cfg.error("option merge_mode=None is not supported: it returns the two "
                    "directions as separate outputs, which a single-chain jaxnets model "
                    "cannot pass on (use 'concat', 'sum', 'mul' or 'ave')")
  if merge_mode not in ("concat", "sum", "mul", "ave"):
    raise cfg.error(f"option merge_mode={merge_mode!r} is not supported "
                    "(supported: 'concat', 'sum', 'mul', 'ave')")
  forward = _wrapped(cfg, "layer")
  if cfg.has("backward_layer") and cfg.config["backward_layer"] is not None:
    backward = _wrapped(cfg, "backward_layer")
  else:  # Keras derives it from the forward layer with go_backwards flipped on
    cfg.ignore("backward_layer")
    backward = dataclasses.replace(
        forward, name=f"backward_{forward.name.removeprefix('forward_')}", go_backwards=True)
  if forward.go_backwards == backward.go_backwards:
    raise cfg.error("forward and backward layers must have different go_backwards values")
  return [recurrent.Bidirectional(name=cfg.layer_name, forward_layer=forward,
                                  backward_layer=backward, merge_mode=merge_mode)]


def _global_pooling_options(cfg):
  cfg.dtype()
  cfg.expect("data_format", "channels_last", None)
  return {"name": cfg.layer_name, "keepdims": bool(cfg.get("keepdims", False))}


@registry.register("GlobalAveragePooling1D")
def global_average_pooling_1d(cfg):
  return [recurrent.GlobalAveragePooling1D(**_global_pooling_options(cfg))]


@registry.register("GlobalMaxPooling1D")
def global_max_pooling_1d(cfg):
  return [recurrent.GlobalMaxPooling1D(**_global_pooling_options(cfg))]
