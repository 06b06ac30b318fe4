"""Records for Keras's zero padding, cropping, up-sampling, resizing and 3-D pooling layers.

The reshaping and resizing layers accept both ``data_format`` values: they move
or interpolate values along the spatial axes only, so ``channels_first`` is
computed exactly too. 3-D pooling is channels-last only, as the other pooling
layers are. Resizing is exact for ``bilinear`` and ``nearest`` without
antialiasing (TF's half-pixel kernels); other interpolations and
``antialias=True`` (TF's ``scale_and_translate``) are refused by name.
"""

import math

from jaxnets.layers import resizing
from jaxnets.layers import spatial
from port import registry
from port.converters import conv_extra as conv_extra_converters
from port.converters import core as core_converters

_INTERPOLATIONS = ("nearest", "bilinear")


def _layout(cfg: registry.ConfigReader) -> str:
  return cfg.expect("data_format", "channels_last", "channels_first", default="channels_last")


def _pairs(cfg: registry.ConfigReader, key: str, rank: int, default) -> tuple:
  """An int, ``rank`` ints (symmetric) or ``rank`` pairs, as ``rank`` (before, after) pairs.

  Keras stores these already expanded; the short forms come from hand-written configs.
  """
  value = cfg.get(key, default)
  if isinstance(value, int):
    value = [(value, value)] * rank
  elif rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
    value = [tuple(value)]  # the 1-D layers store one (before, after) pair
  else:
    value = [(v, v) if isinstance(v, int) else v for v in value]
  try:
    pairs = tuple((int(a), int(b)) for a, b in value)
  except (TypeError, ValueError):
    raise cfg.error(f"option {key}={value!r} is not {rank} (before, after) pairs") from None
  if len(pairs) != rank or any(min(p) < 0 for p in pairs):
    raise cfg.error(f"option {key}={value!r} must be {rank} pairs of non-negative ints")
  return pairs


def _padding_or_cropping(layer_class, key: str, has_data_format: bool):
  def build(cfg):
    cfg.dtype()
    options = {key: _pairs(cfg, key, layer_class.rank, 1)}
    if has_data_format:
      options["data_format"] = _layout(cfg)
    return [layer_class(name=cfg.layer_name, **options)]

  return build


def _up_sampling(layer_class, has_data_format: bool):
  def build(cfg):
    cfg.dtype()
    rank = layer_class.rank
    options = {"size": conv_extra_converters.int_tuple(cfg, "size", rank, default=2)}
    if has_data_format:
      options["data_format"] = _layout(cfg)
    if rank == 2:
      options["interpolation"] = cfg.expect("interpolation", *_INTERPOLATIONS, default="nearest")
    return [layer_class(name=cfg.layer_name, **options)]

  return build


def _pooling(layer_class):
  def build(cfg):
    cfg.dtype()
    conv_extra_converters.data_format(cfg)
    pool_size = conv_extra_converters.int_tuple(cfg, "pool_size", 3)
    strides = cfg.get("strides")
    if strides is not None:
      strides = conv_extra_converters.int_tuple(cfg, "strides", 3)
    return [
      layer_class(
        name=cfg.layer_name,
        pool_size=pool_size,
        strides=strides or pool_size,
        padding=cfg.expect("padding", "valid", "same"),
      )
    ]

  return build


def _global_pooling(layer_class):
  def build(cfg):
    cfg.dtype()
    conv_extra_converters.data_format(cfg)
    return [layer_class(name=cfg.layer_name, keepdims=bool(cfg.get("keepdims", False)))]

  return build


def _size(cfg: registry.ConfigReader) -> dict:
  height, width = cfg.get("height"), cfg.get("width")
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (height, width)):
    raise cfg.error(f"options height={height!r}, width={width!r} must be positive ints")
  return {"height": height, "width": width}


def resizing_layer(cfg):
  cfg.dtype()
  cfg.expect("antialias", False, default=False)
  cfg.expect("fill_mode", "constant", default="constant")
  fill_value = cfg.get("fill_value", 0.0)
  if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float)):
    raise cfg.error(f"option fill_value={fill_value!r} is not a number")
  return [
    resizing.Resizing(
      name=cfg.layer_name,
      data_format=_layout(cfg),
      interpolation=cfg.expect("interpolation", *resizing.INTERPOLATIONS, default="bilinear"),
      crop_to_aspect_ratio=bool(cfg.get("crop_to_aspect_ratio", False)),
      pad_to_aspect_ratio=bool(cfg.get("pad_to_aspect_ratio", False)),
      fill_value=float(fill_value),
      **_size(cfg),
    )
  ]


def center_crop(cfg):
  cfg.dtype()
  return [resizing.CenterCrop(name=cfg.layer_name, data_format=_layout(cfg), **_size(cfg))]


# ------------------------------------------------------------------ inverses


def _with_layout(layer, options: dict, has_data_format: bool) -> dict:
  if has_data_format:
    options["data_format"] = layer.data_format
  return options


def _padding_to_keras(has_data_format: bool):
  def inverse(keras, layer):
    padding = layer.padding[0] if layer.rank == 1 else layer.padding
    options = _with_layout(layer, {"padding": padding}, has_data_format)
    return getattr(keras.layers, type(layer).__name__)(name=layer.name, **options)

  return inverse


def _cropping_to_keras(has_data_format: bool):
  def inverse(keras, layer):
    cropping = layer.cropping[0] if layer.rank == 1 else layer.cropping
    options = _with_layout(layer, {"cropping": cropping}, has_data_format)
    return getattr(keras.layers, type(layer).__name__)(name=layer.name, **options)

  return inverse


def _up_sampling_to_keras(has_data_format: bool):
  def inverse(keras, layer):
    size = layer.size[0] if layer.rank == 1 else layer.size
    options = _with_layout(layer, {"size": size}, has_data_format)
    if layer.rank == 2:
      options["interpolation"] = layer.interpolation
    return getattr(keras.layers, type(layer).__name__)(name=layer.name, **options)

  return inverse


def _pooling_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(
    pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding, name=layer.name
  )


def _global_pooling_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(keepdims=layer.keepdims, name=layer.name)


def _resizing_to_keras(keras, layer):
  return keras.layers.Resizing(
    name=layer.name,
    **core_converters.options(
      layer,
      "height",
      "width",
      "interpolation",
      "crop_to_aspect_ratio",
      "pad_to_aspect_ratio",
      "fill_value",
      "data_format",
    ),
  )


def _center_crop_to_keras(keras, layer):
  return keras.layers.CenterCrop(
    name=layer.name, **core_converters.options(layer, "height", "width", "data_format")
  )


# --------------------------------------------------------------- FLOP counts


def _up_sampling_flops(layer, in_shape, out_shape) -> int:
  """Nearest is a copy; bilinear costs 3 FLOPs (subtract, multiply, add) per
  interpolated value, along each axis it interpolates."""
  if layer.interpolation == "nearest":
    return 0
  channels_last = layer.data_format == "channels_last"
  spatial_in = in_shape[:-1] if channels_last else in_shape[1:]
  spatial_out = out_shape[:-1] if channels_last else out_shape[1:]
  channels = in_shape[-1] if channels_last else in_shape[0]
  # Width first (height still at its input size), then height at full width.
  width_pass = spatial_in[0] * spatial_out[1] * channels
  return 3 * (width_pass + math.prod(spatial_out) * channels)


def _resizing_flops(layer, in_shape, out_shape) -> int:
  """Bilinear: 3 FLOPs per interpolated value along each axis (as up-sampling),
  counted at the output size; nearest, crops and pads are copies."""
  if getattr(layer, "interpolation", "bilinear") == "nearest":
    return 0
  if isinstance(layer, resizing.CenterCrop):
    image = in_shape[:2] if layer.data_format == "channels_last" else in_shape[1:]
    if image[0] >= layer.height and image[1] >= layer.width:
      return 0  # a plain crop
  return 2 * 3 * math.prod(out_shape)


def _pooling_flops(layer, in_shape, out_shape) -> int:
  """``window - 1`` comparisons per max output, ``window`` adds-and-divide per average."""
  del in_shape
  window = math.prod(layer.pool_size)
  return math.prod(out_shape) * (window - 1 if layer.reducer == "max" else window)


def _global_pooling_flops(layer, in_shape, out_shape) -> int:
  del out_shape
  cells, channels = math.prod(in_shape[:-1]), in_shape[-1]
  return channels * (cells - 1 if layer.reducer == "max" else cells)


# ------------------------------------------------------------------- records

for _layer, _has_format in (
  (spatial.ZeroPadding1D, True),
  (spatial.ZeroPadding2D, True),
  (spatial.ZeroPadding3D, True),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_padding_or_cropping(_layer, "padding", _has_format),
      to_keras=_padding_to_keras(_has_format),
      flops=core_converters.free_flops,
    )
  )
for _layer, _has_format in (
  (spatial.Cropping1D, False),
  (spatial.Cropping2D, True),
  (spatial.Cropping3D, True),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_padding_or_cropping(_layer, "cropping", _has_format),
      to_keras=_cropping_to_keras(_has_format),
      flops=core_converters.free_flops,
    )
  )
for _layer, _has_format in (
  (spatial.UpSampling1D, False),
  (spatial.UpSampling2D, True),
  (spatial.UpSampling3D, True),
):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_up_sampling(_layer, _has_format),
      to_keras=_up_sampling_to_keras(_has_format),
      flops=_up_sampling_flops,
    )
  )
for _layer in (spatial.MaxPooling3D, spatial.AveragePooling3D):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_pooling(_layer),
      to_keras=_pooling_to_keras,
      flops=_pooling_flops,
    )
  )
for _layer in (spatial.GlobalMaxPooling3D, spatial.GlobalAveragePooling3D):
  registry.register(
    registry.LayerRecord(
      layer=_layer,
      keras_class=_layer.__name__,
      build=_global_pooling(_layer),
      to_keras=_global_pooling_to_keras,
      flops=_global_pooling_flops,
    )
  )
registry.register(
  registry.LayerRecord(
    layer=resizing.Resizing,
    keras_class="Resizing",
    build=resizing_layer,
    to_keras=_resizing_to_keras,
    flops=_resizing_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=resizing.CenterCrop,
    keras_class="CenterCrop",
    build=center_crop,
    to_keras=_center_crop_to_keras,
    flops=_resizing_flops,
  )
)
