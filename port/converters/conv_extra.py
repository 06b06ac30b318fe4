"""Records for Keras's depthwise, separable, transposed and 3-D convolutions.

Only ``data_format="channels_last"`` is accepted (as for Conv1D/2D, see
``port/converters/conv.py``), and only the ``"valid"``/``"same"`` paddings;
Keras's explicit padding lists are refused by name.
"""

import math

from jaxnets.layers import conv_extra
from port import registry
from port.converters import core as core_converters


def data_format(cfg: registry.ConfigReader) -> None:
  """Refuses ``channels_first`` by name: these layers compute NHWC only."""
  value = cfg.get("data_format", "channels_last")
  if value not in (None, "channels_last"):
    raise cfg.error(
      f"option data_format={value!r} is not supported: jaxnets convolutions are "
      "channels_last (NHWC); rebuild the model with data_format='channels_last'"
    )


def int_tuple(cfg: registry.ConfigReader, key: str, rank: int, default=None, minimum=1):
  """Reads an int-or-tuple option as a ``rank``-tuple of ints ``>= minimum``."""
  value = cfg.get(key, default)
  if isinstance(value, int):
    value = (value,) * rank
  try:
    value = tuple(int(v) for v in value)
  except (TypeError, ValueError):
    raise cfg.error(f"option {key}={value!r} is not a tuple of {rank} ints") from None
  if len(value) != rank or any(v < minimum for v in value):
    raise cfg.error(f"option {key}={value!r} must be {rank} ints >= {minimum}")
  return value


def _padding(cfg: registry.ConfigReader) -> str:
  value = cfg.get("padding", "valid")
  if value not in ("valid", "same"):
    raise cfg.error(
      f"option padding={value!r} is not supported (supported: 'valid', 'same'; "
      "explicit padding lists are not)"
    )
  return value


def _window(cfg: registry.ConfigReader, rank: int) -> dict:
  """The options every windowed conv here shares."""
  cfg.dtype()
  data_format(cfg)
  return dict(
    name=cfg.layer_name,
    kernel_size=int_tuple(cfg, "kernel_size", rank),
    strides=int_tuple(cfg, "strides", rank, default=1),
    padding=_padding(cfg),
    dilation_rate=int_tuple(cfg, "dilation_rate", rank, default=1),
    activation=core_converters.activation_name(cfg),
    use_bias=bool(cfg.get("use_bias", True)),
  )


def _depthwise(layer_class):
  def build(cfg):
    options = _window(cfg, layer_class.rank)
    return [layer_class(depth_multiplier=int(cfg.get("depth_multiplier", 1)), **options)]

  return build


def _separable(layer_class):
  def build(cfg):
    options = _window(cfg, layer_class.rank)
    return [
      layer_class(
        filters=int(cfg.get("filters")),
        depth_multiplier=int(cfg.get("depth_multiplier", 1)),
        **options,
      )
    ]

  return build


def _transpose(layer_class):
  def build(cfg):
    rank = layer_class.rank
    options = _window(cfg, rank)
    output_padding = cfg.get("output_padding")
    if output_padding is not None:
      output_padding = int_tuple(cfg, "output_padding", rank, minimum=0)
      if any(p >= s for p, s in zip(output_padding, options["strides"])):
        raise cfg.error(
          f"option output_padding={output_padding!r} must be below strides={options['strides']!r}"
        )
    if max(options["strides"]) > 1 and max(options["dilation_rate"]) > 1:
      # Keras refuses this pair itself; a hand-edited config could still carry it.
      raise cfg.error(
        f"options strides={options['strides']!r} with dilation_rate="
        f"{options['dilation_rate']!r} are not supported (Keras allows only one above 1)"
      )
    if options["padding"] == "same" and output_padding is not None:
      for k, d, p in zip(options["kernel_size"], options["dilation_rate"], output_padding):
        if ((k - 1) * d + 1) % 2 == 0 and p == 0:
          # The output is one cell short of what a 'same' conv maps back to the
          # input: TF refuses to compute it, Keras's other backends disagree.
          raise cfg.error(
            f"option output_padding={output_padding!r} with padding='same' and an even "
            f"(dilated) kernel size {(k - 1) * d + 1} is not supported: TensorFlow cannot "
            "compute it and Keras's backends disagree on it"
          )
    return [layer_class(filters=int(cfg.get("filters")), output_padding=output_padding, **options)]

  return build


def conv3d(cfg):
  options = _window(cfg, 3)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha")
  filters = int(cfg.get("filters"))
  groups = int(cfg.get("groups", 1))
  if groups < 1 or filters % groups:
    raise cfg.error(f"option groups={groups!r} must divide filters={filters}")
  return [conv_extra.Conv3D(filters=filters, groups=groups, **options)]


# ------------------------------------------------------------------ weights


def _depthwise_weights(keras_layer, built):
  """Keras names the depthwise kernel ``kernel`` (``(k..., C, M)``)."""
  return core_converters.kernel_and_bias_weights(keras_layer, built)


def _separable_weights(keras_layer, built):
  weights = registry.named_weights(keras_layer)
  layer = built[0]
  names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if layer.use_bias else [])
  return {layer.name: {n: weights[n] for n in names}}


# ------------------------------------------------------------------ inverses


def _window_options(layer) -> dict:
  return core_converters.options(
    layer, "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias"
  )


def _depthwise_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(
    name=layer.name, depth_multiplier=layer.depth_multiplier, **_window_options(layer)
  )


def _separable_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(
    layer.filters,
    name=layer.name,
    depth_multiplier=layer.depth_multiplier,
    **_window_options(layer),
  )


def _transpose_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(
    layer.filters, name=layer.name, output_padding=layer.output_padding, **_window_options(layer)
  )


def _conv3d_to_keras(keras, layer):
  return keras.layers.Conv3D(
    layer.filters, name=layer.name, groups=layer.groups, **_window_options(layer)
  )


# --------------------------------------------------------------- FLOP counts


def _finish(layer, out_shape, per_output_macs: int) -> int:
  outputs = math.prod(out_shape)
  return outputs * (2 * per_output_macs + int(layer.use_bias)) + (
    core_converters.activation_flops(layer.activation, outputs)
  )


def _depthwise_flops(layer, in_shape, out_shape) -> int:
  """A multiply-add per kernel cell for each output value (padded cells included)."""
  del in_shape
  return _finish(layer, out_shape, math.prod(layer.kernel_size))


def _separable_flops(layer, in_shape, out_shape) -> int:
  """The depthwise step's multiply-adds, then ``C * M`` per pointwise output."""
  middle = math.prod(out_shape[:-1]) * in_shape[-1] * layer.depth_multiplier
  depthwise = 2 * middle * math.prod(layer.kernel_size)
  return depthwise + _finish(layer, out_shape, in_shape[-1] * layer.depth_multiplier)


def _transpose_flops(layer, in_shape, out_shape) -> int:
  """Every input value times every kernel cell and filter: ``2 * in * k * filters``
  (the scatter form; the zeros the strides insert are not counted), plus bias and
  activation per output."""
  macs = math.prod(in_shape) * math.prod(layer.kernel_size) * layer.filters
  outputs = math.prod(out_shape)
  return (
    2 * macs
    + outputs * int(layer.use_bias)
    + (core_converters.activation_flops(layer.activation, outputs))
  )


def _conv3d_flops(layer, in_shape, out_shape) -> int:
  return _finish(layer, out_shape, math.prod(layer.kernel_size) * in_shape[-1] // layer.groups)


# ------------------------------------------------------------------- records

for _layer in (conv_extra.DepthwiseConv1D, conv_extra.DepthwiseConv2D):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_depthwise(_layer),
      weights=_depthwise_weights,
      to_keras=_depthwise_to_keras,
      flops=_depthwise_flops,
    )
  )
for _layer in (conv_extra.SeparableConv1D, conv_extra.SeparableConv2D):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_separable(_layer),
      weights=_separable_weights,
      to_keras=_separable_to_keras,
      flops=_separable_flops,
    )
  )
for _layer in (conv_extra.Conv1DTranspose, conv_extra.Conv2DTranspose):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_transpose(_layer),
      weights=core_converters.kernel_and_bias_weights,
      to_keras=_transpose_to_keras,
      flops=_transpose_flops,
    )
  )
registry.register(
  registry.LayerRecord(
    layer=conv_extra.Conv3D,
    keras_class="Conv3D",
    build=conv3d,
    weights=core_converters.kernel_and_bias_weights,
    to_keras=_conv3d_to_keras,
    flops=_conv3d_flops,
  )
)
