"""Records for Keras's CNN layers: Conv1D/2D, pooling, 1-D and 2-D global pooling,
BatchNormalization.

Only ``data_format="channels_last"`` is accepted: jaxnets layers are NHWC/NWC,
and silently transposing would hide a layout mismatch in the Flatten that
usually follows.
"""

import math

from jaxnets import layers as jaxnets_layers
from jaxnets.layers import conv
from jaxnets.layers import normalization
from jaxnets.layers import pooling
from port import registry
from port.converters import core as core_converters


def _data_format(cfg: registry.ConfigReader) -> None:
  value = cfg.get("data_format", "channels_last")
  if value not in (None, "channels_last"):
    raise cfg.error(
      f"option data_format={value!r} is not supported: jaxnets layers are "
      "channels_last (NHWC); rebuild the model with data_format='channels_last'"
    )


def _int_tuple(cfg: registry.ConfigReader, key: str, rank: int, default=None) -> tuple[int, ...]:
  """Reads an int-or-tuple option as a ``rank``-tuple of positive ints."""
  value = cfg.get(key, default)
  if isinstance(value, int):
    value = (value,) * rank
  try:
    value = tuple(int(v) for v in value)
  except (TypeError, ValueError):
    raise cfg.error(f"option {key}={value!r} is not a tuple of {rank} ints") from None
  if len(value) != rank or any(v < 1 for v in value):
    raise cfg.error(f"option {key}={value!r} must be {rank} positive ints")
  return value


def _conv(cfg: registry.ConfigReader, layer_class, rank: int):
  cfg.dtype()
  _data_format(cfg)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha")
  paddings = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
  padding = cfg.expect("padding", *paddings)
  kernel_size = _int_tuple(cfg, "kernel_size", rank)
  strides = _int_tuple(cfg, "strides", rank, default=1)
  dilation_rate = _int_tuple(cfg, "dilation_rate", rank, default=1)
  filters = int(cfg.get("filters"))
  groups = int(cfg.get("groups", 1))
  if groups < 1 or filters % groups:
    raise cfg.error(f"option groups={groups!r} must divide filters={filters}")
  return [
    layer_class(
      name=cfg.layer_name,
      filters=filters,
      kernel_size=kernel_size,
      strides=strides,
      padding=padding,
      dilation_rate=dilation_rate,
      groups=groups,
      activation=core_converters.activation_name(cfg),
      use_bias=bool(cfg.get("use_bias", True)),
    )
  ]


def conv1d(cfg):
  return _conv(cfg, conv.Conv1D, rank=1)


def conv2d(cfg):
  return _conv(cfg, conv.Conv2D, rank=2)


def _pooling(cfg: registry.ConfigReader, layer_class):
  cfg.dtype()
  _data_format(cfg)
  rank = layer_class.rank
  pool_size = _int_tuple(cfg, "pool_size", rank)
  strides = cfg.get("strides")
  strides = pool_size if strides is None else _int_tuple(cfg, "strides", rank)
  return [
    layer_class(
      name=cfg.layer_name,
      pool_size=pool_size,
      strides=strides,
      padding=cfg.expect("padding", "valid", "same"),
    )
  ]


def max_pooling1d(cfg):
  return _pooling(cfg, pooling.MaxPooling1D)


def average_pooling1d(cfg):
  return _pooling(cfg, pooling.AveragePooling1D)


def max_pooling2d(cfg):
  return _pooling(cfg, pooling.MaxPooling2D)


def average_pooling2d(cfg):
  return _pooling(cfg, pooling.AveragePooling2D)


def _global_pooling(cfg: registry.ConfigReader, layer_class):
  cfg.dtype()
  _data_format(cfg)
  return [layer_class(name=cfg.layer_name, keepdims=bool(cfg.get("keepdims", False)))]


def global_max_pooling2d(cfg):
  return _global_pooling(cfg, pooling.GlobalMaxPooling2D)


def global_average_pooling2d(cfg):
  return _global_pooling(cfg, pooling.GlobalAveragePooling2D)


def global_max_pooling1d(cfg):
  return _global_pooling(cfg, jaxnets_layers.GlobalMaxPooling1D)


def global_average_pooling1d(cfg):
  return _global_pooling(cfg, jaxnets_layers.GlobalAveragePooling1D)


def _batch_norm_weights(keras_layer, built):
  weights = registry.named_weights(keras_layer)
  layer = built[0]
  names = ["moving_mean", "moving_variance"]
  names += ["gamma"] if layer.scale else []
  names += ["beta"] if layer.center else []
  return {layer.name: {n: weights[n] for n in names}}


def batch_normalization(cfg):
  cfg.dtype()
  axis = cfg.get("axis", -1)
  if isinstance(axis, (list, tuple)):
    if len(axis) != 1:
      raise cfg.error(f"option axis={axis!r} is not supported (a single feature axis only)")
    axis = axis[0]
  if int(axis) == 0:
    raise cfg.error("option axis=0 is not supported (that is the batch axis)")
  # Synchronised statistics only change training-time batch moments; the
  # inference form uses the moving statistics either way.
  cfg.ignore("synchronized")
  return [
    normalization.BatchNormalization(
      name=cfg.layer_name,
      axis=int(axis),
      epsilon=float(cfg.get("epsilon", 1e-3)),
      center=bool(cfg.get("center", True)),
      scale=bool(cfg.get("scale", True)),
    )
  ]


# ------------------------------------------------------------------ inverses


def _conv_to_keras(keras, layer):
  options = core_converters.options(
    layer, "filters", "kernel_size", "padding", "groups", "activation", "use_bias"
  )
  rank = len(layer.kernel_size)
  options["strides"] = layer.strides or (1,) * rank
  options["dilation_rate"] = layer.dilation_rate or (1,) * rank
  return getattr(keras.layers, type(layer).__name__)(name=layer.name, **options)


def _pooling_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(
    pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding, name=layer.name
  )


def global_pooling_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(keepdims=layer.keepdims, name=layer.name)


def _batch_norm_to_keras(keras, layer):
  return keras.layers.BatchNormalization(
    name=layer.name, **core_converters.options(layer, "axis", "epsilon", "center", "scale")
  )


# --------------------------------------------------------------- FLOP counts


def _conv_flops(layer, in_shape, out_shape) -> int:
  """A multiply-add per kernel cell and input channel (padded cells included)."""
  outputs = math.prod(out_shape)
  per_output = 2 * math.prod(layer.kernel_size) * in_shape[-1] // layer.groups
  return outputs * (per_output + int(layer.use_bias)) + core_converters.activation_flops(
    layer.activation, outputs
  )


def _pooling_flops(layer, in_shape, out_shape) -> int:
  """``window - 1`` comparisons per max output, ``window`` adds-and-divide per average."""
  del in_shape
  window = math.prod(layer.pool_size)
  return math.prod(out_shape) * (window - 1 if layer.reducer == "max" else window)


def global_pooling_flops(reducer: str):
  """FLOP counter of a global ``reducer`` pooling: as pooling above, over every
  position but the channel axis."""

  def count(layer, in_shape, out_shape) -> int:
    del layer, out_shape
    cells, channels = math.prod(in_shape[:-1]), in_shape[-1]
    return channels * (cells - 1 if reducer == "max" else cells)

  return count


def _batch_norm_flops(layer, in_shape, out_shape) -> int:
  del layer, out_shape
  return 2 * math.prod(in_shape)  # scale and shift


# ------------------------------------------------------------------- records

for _layer, _build in ((conv.Conv1D, conv1d), (conv.Conv2D, conv2d)):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_build,
      weights=core_converters.kernel_and_bias_weights,
      to_keras=_conv_to_keras,
      flops=_conv_flops,
    )
  )
for _layer, _build in (
  (pooling.MaxPooling1D, max_pooling1d),
  (pooling.AveragePooling1D, average_pooling1d),
  (pooling.MaxPooling2D, max_pooling2d),
  (pooling.AveragePooling2D, average_pooling2d),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_build,
      to_keras=_pooling_to_keras,
      flops=_pooling_flops,
    )
  )
for _layer, _build, _reducer in (
  (pooling.GlobalMaxPooling2D, global_max_pooling2d, "max"),
  (pooling.GlobalAveragePooling2D, global_average_pooling2d, "average"),
  (jaxnets_layers.GlobalMaxPooling1D, global_max_pooling1d, "max"),
  (jaxnets_layers.GlobalAveragePooling1D, global_average_pooling1d, "average"),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_build,
      to_keras=global_pooling_to_keras,
      flops=global_pooling_flops(_reducer),
    )
  )
registry.register(
  registry.LayerRecord(
    layer=normalization.BatchNormalization,
    keras_class="BatchNormalization",
    build=batch_normalization,
    weights=_batch_norm_weights,
    to_keras=_batch_norm_to_keras,
    flops=_batch_norm_flops,
  )
)
