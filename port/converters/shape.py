"""Records for Permute, RepeatVector, Identity and the inference no-ops
(``jaxnets/layers/shape.py``).

A no-op's converter reads every option its Keras class has (listed below, one
tuple per class, from Keras 3.15's ``get_config``) and keeps them as JSON for
``port.to_keras``; an option not listed (a newer Keras's) is refused by name,
since it might make the layer act at inference.

``RandomCrop`` has no converter on purpose: at inference Keras 3.15 returns its
input unchanged while declaring the cropped ``(height, width)`` as the output
shape, so what the layers after it receive depends on which of the two one
believes; the port refuses the model by naming the layer.
"""

import json

from jaxnets.layers import shape
from port import registry
from port.converters import core as core_converters

# The options of each no-op's Keras class (besides name, trainable, dtype).
NO_OP_OPTIONS: dict[str, tuple[str, ...]] = {
  "SpatialDropout1D": ("rate", "seed"),
  "SpatialDropout2D": ("data_format", "rate", "seed"),
  "SpatialDropout3D": ("data_format", "rate", "seed"),
  "GaussianNoise": ("seed", "stddev"),
  "GaussianDropout": ("rate", "seed"),
  "AlphaDropout": ("noise_shape", "rate", "seed"),
  "ActivityRegularization": ("l1", "l2"),
  "RandomBrightness": ("data_format", "factor", "seed", "value_range"),
  "RandomColorDegeneration": ("data_format", "factor", "seed", "value_range"),
  "RandomColorJitter": (
    "brightness_factor",
    "contrast_factor",
    "data_format",
    "hue_factor",
    "saturation_factor",
    "seed",
    "value_range",
  ),
  "RandomContrast": ("data_format", "factor", "seed", "value_range"),
  "RandomElasticTransform": (
    "data_format",
    "factor",
    "fill_mode",
    "fill_value",
    "interpolation",
    "scale",
    "seed",
    "value_range",
  ),
  "RandomErasing": ("data_format", "factor", "fill_value", "scale", "seed", "value_range"),
  "RandomFlip": ("data_format", "mode", "seed"),
  "RandomGaussianBlur": ("data_format", "factor", "kernel_size", "seed", "sigma", "value_range"),
  "RandomGrayscale": ("data_format", "factor"),
  "RandomHue": ("data_format", "factor", "seed", "value_range"),
  "RandomInvert": ("data_format", "factor", "seed", "value_range"),
  "RandomPerspective": (
    "data_format",
    "factor",
    "fill_value",
    "interpolation",
    "scale",
    "seed",
  ),
  "RandomPosterization": ("data_format", "factor", "seed", "value_range"),
  "RandomRotation": ("data_format", "factor", "fill_mode", "fill_value", "interpolation", "seed"),
  "RandomSaturation": ("data_format", "factor", "seed", "value_range"),
  "RandomSharpness": ("data_format", "factor", "seed", "value_range"),
  "RandomShear": (
    "data_format",
    "fill_mode",
    "fill_value",
    "interpolation",
    "seed",
    "x_factor",
    "y_factor",
  ),
  "RandomTranslation": (
    "data_format",
    "fill_mode",
    "fill_value",
    "height_factor",
    "interpolation",
    "seed",
    "width_factor",
  ),
  "RandomZoom": (
    "data_format",
    "fill_mode",
    "fill_value",
    "height_factor",
    "interpolation",
    "seed",
    "width_factor",
  ),
}


def _positive_int(cfg: registry.ConfigReader, key: str) -> int:
  value = cfg.get(key)
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise cfg.error(f"option {key}={value!r} is not a positive int")
  return value


def permute(cfg):
  cfg.dtype()
  dims = cfg.get("dims")
  try:
    dims = tuple(int(d) for d in dims)
  except (TypeError, ValueError):
    raise cfg.error(f"option dims={dims!r} is not a tuple of ints") from None
  if sorted(dims) != list(range(1, len(dims) + 1)):
    raise cfg.error(f"option dims={dims!r} is not a permutation of 1..{len(dims)}")
  return [shape.Permute(name=cfg.layer_name, dims=dims)]


def repeat_vector(cfg):
  cfg.dtype()
  return [shape.RepeatVector(name=cfg.layer_name, n=_positive_int(cfg, "n"))]


def identity(cfg):
  cfg.dtype()
  return [shape.Identity(name=cfg.layer_name)]


def _no_op_builder(keras_name: str):
  layer_class = shape.NO_OP_CLASSES[keras_name]

  def build(cfg: registry.ConfigReader):
    cfg.dtype()
    options = {key: cfg.get(key) for key in NO_OP_OPTIONS[keras_name] if cfg.has(key)}
    try:
      text = json.dumps(options, sort_keys=True)
    except (TypeError, ValueError):
      raise cfg.error(f"options {options!r:.120} are not JSON values") from None
    return [layer_class(name=cfg.layer_name, options=text)]

  build.__name__ = f"build_{keras_name}"
  return build


def _no_op_to_keras(keras, layer):
  return getattr(keras.layers, type(layer).__name__)(name=layer.name, **layer.keras_options())


registry.register(
  registry.LayerRecord(
    layer=shape.Permute,
    keras_class="Permute",
    build=permute,
    to_keras=lambda keras, layer: keras.layers.Permute(tuple(layer.dims), name=layer.name),
    flops=core_converters.free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=shape.RepeatVector,
    keras_class="RepeatVector",
    build=repeat_vector,
    to_keras=lambda keras, layer: keras.layers.RepeatVector(layer.n, name=layer.name),
    flops=core_converters.free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=shape.Identity,
    keras_class="Identity",
    build=identity,
    to_keras=lambda keras, layer: keras.layers.Identity(name=layer.name),
    flops=core_converters.free_flops,
  )
)
for _name, _class in shape.NO_OP_CLASSES.items():
  registry.register(
    registry.LayerRecord(
      layer=_class,
      keras_class=_name,
      build=_no_op_builder(_name),
      to_keras=_no_op_to_keras,
      flops=core_converters.free_flops,
    )
  )
