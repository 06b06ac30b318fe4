"""Records for LayerNormalization, GroupNormalization, UnitNormalization,
Rescaling and Normalization (``jaxnets/layers/norm_extra.py``).

Constants that Keras keeps in the config (Rescaling's scale/offset, the
``mean``/``variance`` a Normalization was given) are read here; the statistics
an adapted Normalization learned are weights and are copied by ``weights``.
"""

import math

import numpy as np

from jaxnets.layers import norm_extra
from port import registry
from port.converters import core as core_converters


def _axes(cfg: registry.ConfigReader, key: str = "axis", default=-1) -> tuple[int, ...]:
  """An int-or-list axis option as a tuple of ints (``None``: no axis)."""
  value = cfg.get(key, default)
  if value is None:
    return ()
  values = (value,) if isinstance(value, int) else value
  try:
    axes = tuple(int(a) for a in values)
  except (TypeError, ValueError):
    raise cfg.error(f"option {key}={value!r} is not an int or a list of ints") from None
  if any(isinstance(a, bool) for a in values):
    raise cfg.error(f"option {key}={value!r} is not an int or a list of ints")
  if 0 in axes:
    raise cfg.error(f"option {key}={value!r} includes axis 0, the batch axis")
  return axes


def _norm_options(cfg: registry.ConfigReader) -> dict:
  cfg.dtype()
  return {
    "epsilon": float(cfg.get("epsilon", 1e-3)),
    "center": bool(cfg.get("center", True)),
    "scale": bool(cfg.get("scale", True)),
  }


def layer_normalization(cfg):
  options = _norm_options(cfg)
  axis = _axes(cfg)
  # Keras sorts a list axis when it builds, and orders gamma/beta by it.
  return [
    norm_extra.LayerNormalization(
      name=cfg.layer_name,
      axis=tuple(sorted(axis)),
      rms_scaling=bool(cfg.get("rms_scaling", False)),
      **options,
    )
  ]


def group_normalization(cfg):
  options = _norm_options(cfg)
  axis = cfg.get("axis", -1)
  if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
    raise cfg.error(f"option axis={axis!r} is not supported (one non-batch axis)")
  groups = cfg.get("groups", 32)
  if not isinstance(groups, int) or isinstance(groups, bool) or (groups < 1 and groups != -1):
    raise cfg.error(f"option groups={groups!r} is not a positive int (or -1)")
  return [norm_extra.GroupNormalization(name=cfg.layer_name, groups=groups, axis=axis, **options)]


def unit_normalization(cfg):
  cfg.dtype()
  return [norm_extra.UnitNormalization(name=cfg.layer_name, axis=_axes(cfg))]


def _constant(cfg: registry.ConfigReader, key: str, default) -> tuple[tuple[float, ...], tuple]:
  """A scalar, list or serialised numpy array option as (flat values, shape)."""
  value = cfg.get(key, default)
  if isinstance(value, dict):
    if value.get("class_name") != "__numpy__" or "value" not in value.get("config", {}):
      raise cfg.error(f"option {key}={value!r:.80} is not a number or an array of numbers")
    value = value["config"]["value"]
  try:
    array = np.asarray(value, np.float64)
  except (TypeError, ValueError):
    raise cfg.error(f"option {key}={value!r:.80} is not a number or an array of numbers") from None
  if array.dtype == object or not np.all(np.isfinite(array)):
    raise cfg.error(f"option {key}={value!r:.80} is not an array of finite numbers")
  return tuple(float(v) for v in array.reshape(-1)), tuple(int(d) for d in array.shape)


def rescaling(cfg):
  cfg.dtype()
  scale, scale_shape = _constant(cfg, "scale", 1.0)
  offset, offset_shape = _constant(cfg, "offset", 0.0)
  if len(scale_shape) > 0:
    import keras  # pylint: disable=import-outside-toplevel

    # Keras reshapes a per-channel scale for channels_first images; jaxnets is
    # channels-last only.
    if keras.config.image_data_format() == "channels_first":
      raise cfg.error(
        "a per-channel scale under keras.config.image_data_format()='channels_first' "
        "is not supported (jaxnets is channels_last)"
      )
  return [
    norm_extra.Rescaling(
      name=cfg.layer_name,
      scale=scale,
      scale_shape=scale_shape,
      offset=offset,
      offset_shape=offset_shape,
    )
  ]


def normalization(cfg):
  import keras  # pylint: disable=import-outside-toplevel

  cfg.dtype()
  # Either value source gives the same layer: `weights` reads the statistics
  # Keras computes with (`keras_layer.mean`/`.variance`, broadcast), whether
  # adapted or configured.
  cfg.get("mean")
  cfg.get("variance")
  return [
    norm_extra.Normalization(
      name=cfg.layer_name,
      axis=_axes(cfg),
      invert=bool(cfg.get("invert", False)),
      epsilon=float(keras.config.epsilon()),
    )
  ]


def _norm_weights(keras_layer, built):
  weights = registry.named_weights(keras_layer)
  layer = built[0]
  return {layer.name: {k: weights[k] for k in ("gamma", "beta") if k in weights}}


def _normalization_weights(keras_layer, built):
  layer = built[0]
  if getattr(keras_layer, "mean", None) is None:
    raise registry.UnsupportedLayerError(
      keras_layer.name, "Normalization", "the layer was never built or adapted"
    )
  ndim = len(keras_layer._build_input_shape)  # pylint: disable=protected-access
  keep = sorted(a % ndim for a in layer.axis)
  shape = tuple(int(keras_layer._build_input_shape[d]) for d in keep)  # pylint: disable=protected-access
  mean = np.asarray(keras_layer.mean, np.float32).reshape(shape)
  variance = np.asarray(keras_layer.variance, np.float32).reshape(shape)
  count = getattr(keras_layer, "count", None)  # adapted layers only
  count = np.int32(0 if count is None else np.asarray(count))
  return {layer.name: {"mean": mean, "variance": variance, "count": count}}


def _normalization_flops(layer, in_shape, out_shape) -> int:
  """Per element: subtract and divide (sqrt/max are per statistic, not counted)."""
  del layer, out_shape
  return 2 * math.prod(in_shape)


def _moment_norm_flops(layer, in_shape, out_shape) -> int:
  """Per element: mean and variance sums (3), then ``x * inv + shift`` (2)."""
  del layer, out_shape
  return 5 * math.prod(in_shape)


def _unit_norm_flops(layer, in_shape, out_shape) -> int:
  """Per element: square, sum, multiply."""
  del layer, out_shape
  return 3 * math.prod(in_shape)


def _keras_constant(values, shape):
  array = np.asarray(values, np.float32).reshape(shape)
  return float(array) if array.ndim == 0 else array


registry.register(
  registry.LayerRecord(
    layer=norm_extra.LayerNormalization,
    keras_class="LayerNormalization",
    build=layer_normalization,
    weights=_norm_weights,
    to_keras=lambda keras, layer: keras.layers.LayerNormalization(
      name=layer.name,
      axis=list(layer.axis),
      **core_converters.options(layer, "epsilon", "center", "scale", "rms_scaling"),
    ),
    flops=_moment_norm_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=norm_extra.GroupNormalization,
    keras_class="GroupNormalization",
    build=group_normalization,
    weights=_norm_weights,
    to_keras=lambda keras, layer: keras.layers.GroupNormalization(
      name=layer.name,
      **core_converters.options(layer, "groups", "axis", "epsilon", "center", "scale"),
    ),
    flops=_moment_norm_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=norm_extra.UnitNormalization,
    keras_class="UnitNormalization",
    build=unit_normalization,
    to_keras=lambda keras, layer: keras.layers.UnitNormalization(
      name=layer.name, axis=list(layer.axis)
    ),
    flops=_unit_norm_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=norm_extra.Rescaling,
    keras_class="Rescaling",
    build=rescaling,
    to_keras=lambda keras, layer: keras.layers.Rescaling(
      _keras_constant(layer.scale, layer.scale_shape),
      offset=_keras_constant(layer.offset, layer.offset_shape),
      name=layer.name,
    ),
    flops=lambda layer, in_shape, out_shape: 2 * math.prod(in_shape),
  )
)
registry.register(
  registry.LayerRecord(
    layer=norm_extra.Normalization,
    keras_class="Normalization",
    build=normalization,
    weights=_normalization_weights,
    to_keras=lambda keras, layer: keras.layers.Normalization(
      name=layer.name, axis=list(layer.axis), invert=layer.invert
    ),
    flops=_normalization_flops,
  )
)
