"""Records for Keras's position-wise and shape layers (Dense, activations...).

Each record pairs the converter (Keras config -> jaxnets layer) with its
inverse (jaxnets layer -> Keras layer) and its FLOP count for one example.
"""

import math

from jaxnets import activations
from jaxnets.layers import core
from port import registry


def activation_name(cfg: registry.ConfigReader, key: str = "activation") -> str:
  """Reads an activation option; only Keras's named built-ins are accepted."""
  value = cfg.get(key, "linear")
  if value is None:
    return "linear"
  if not isinstance(value, str):
    raise cfg.error(
      f"option {key}={value!r} is a custom/serialised activation; "
      "only Keras's built-in named activations are supported"
    )
  try:
    activations.get(value)
  except ValueError:
    raise cfg.error(
      f"option {key}={value!r} is not a supported activation "
      f"(supported: {', '.join(activations.NAMES)})"
    ) from None
  return value


def activation_flops(name: str, elements: int) -> int:
  """One FLOP per element for a non-linear activation, none for ``linear``."""
  return 0 if name == "linear" else elements


def free_flops(layer, in_shape, out_shape) -> int:
  """Lookups and data movement (Dropout at inference, Flatten, Reshape) cost nothing."""
  del layer, in_shape, out_shape
  return 0


def per_element_flops(layer, in_shape, out_shape) -> int:
  """One FLOP per input element (an activation layer, a comparison)."""
  del out_shape
  return activation_flops(getattr(layer, "activation", "relu"), math.prod(in_shape))


def options(layer, *names) -> dict:
  """``{name: layer.name_}`` for the hyper-parameters a Keras constructor takes as is."""
  return {name: getattr(layer, name) for name in names}


def kernel_and_bias_weights(keras_layer, built):
  """``kernel`` (and ``bias`` when used) of a single-layer conversion, as Keras names them."""
  weights = registry.named_weights(keras_layer)
  params = {"kernel": weights["kernel"]}
  if built[0].use_bias:
    params["bias"] = weights["bias"]
  return {built[0].name: params}


def dense(cfg):
  cfg.dtype()
  cfg.expect("quantization_config", None)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha")
  return [
    core.Dense(
      name=cfg.layer_name,
      units=int(cfg.get("units")),
      activation=activation_name(cfg),
      use_bias=bool(cfg.get("use_bias", True)),
    )
  ]


def activation(cfg):
  cfg.dtype()
  return [core.Activation(name=cfg.layer_name, activation=activation_name(cfg))]


def relu(cfg):
  cfg.dtype()
  max_value = cfg.get("max_value")
  return [
    core.ReLU(
      name=cfg.layer_name,
      max_value=None if max_value is None else float(max_value),
      negative_slope=float(cfg.get("negative_slope", 0.0)),
      threshold=float(cfg.get("threshold", 0.0)),
    )
  ]


def leaky_relu(cfg):
  cfg.dtype()
  slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
  return [core.ReLU(name=cfg.layer_name, negative_slope=float(slope))]


def softmax(cfg):
  cfg.dtype()
  axis = cfg.get("axis", -1)
  values = axis if isinstance(axis, (list, tuple)) else (axis,)
  if not values or not all(isinstance(a, int) and not isinstance(a, bool) for a in values):
    raise cfg.error(f"option axis={axis!r} is not an int or a list of ints")
  if 0 in values:
    raise cfg.error(f"option axis={axis!r} includes axis 0, the batch axis")
  axis = tuple(values) if isinstance(axis, (list, tuple)) else axis
  return [core.Softmax(name=cfg.layer_name, axis=axis)]


def prelu(cfg):
  cfg.dtype()
  cfg.ignore("alpha_initializer", "alpha_regularizer", "alpha_constraint")
  shared = cfg.get("shared_axes")
  if shared is not None:
    shared = (shared,) if isinstance(shared, int) else tuple(shared)
    if not all(isinstance(a, int) and a >= 1 for a in shared):
      raise cfg.error(f"option shared_axes={shared!r} is not a list of positive axes")
  return [core.PReLU(name=cfg.layer_name, shared_axes=shared)]


def elu(cfg):
  cfg.dtype()
  return [core.ELU(name=cfg.layer_name, alpha=float(cfg.get("alpha", 1.0)))]


def dropout(cfg):
  cfg.dtype()
  noise_shape = cfg.get("noise_shape", None)
  if noise_shape is not None:
    noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
  return [core.Dropout(name=cfg.layer_name, rate=float(cfg.get("rate")), noise_shape=noise_shape)]


def flatten(cfg):
  cfg.dtype()
  cfg.expect("data_format", "channels_last", None)
  return [core.Flatten(name=cfg.layer_name)]


def reshape(cfg):
  cfg.dtype()
  return [
    core.Reshape(name=cfg.layer_name, target_shape=tuple(int(d) for d in cfg.get("target_shape")))
  ]


def _dense_flops(layer, in_shape, out_shape) -> int:
  positions = math.prod(in_shape[:-1])
  per_output = 2 * in_shape[-1] + int(layer.use_bias)
  return positions * layer.units * per_output + activation_flops(
    layer.activation, math.prod(out_shape)
  )


registry.register(
  registry.LayerRecord(
    layer=core.Dense,
    keras_class="Dense",
    build=dense,
    weights=kernel_and_bias_weights,
    to_keras=lambda keras, layer: keras.layers.Dense(
      name=layer.name, **options(layer, "units", "activation", "use_bias")
    ),
    flops=_dense_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.Activation,
    keras_class="Activation",
    build=activation,
    to_keras=lambda keras, layer: keras.layers.Activation(layer.activation, name=layer.name),
    flops=per_element_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.ReLU,
    keras_class="ReLU",
    build=relu,
    also_from={"LeakyReLU": leaky_relu},
    to_keras=lambda keras, layer: keras.layers.ReLU(
      name=layer.name, **options(layer, "max_value", "negative_slope", "threshold")
    ),
    flops=per_element_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.Softmax,
    keras_class="Softmax",
    build=softmax,
    to_keras=lambda keras, layer: keras.layers.Softmax(
      axis=list(layer.axis) if isinstance(layer.axis, tuple) else layer.axis, name=layer.name
    ),
    flops=per_element_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.PReLU,
    keras_class="PReLU",
    build=prelu,
    weights=lambda keras_layer, built: {
      built[0].name: {"alpha": registry.named_weights(keras_layer)["alpha"]}
    },
    to_keras=lambda keras, layer: keras.layers.PReLU(
      name=layer.name,
      shared_axes=None if layer.shared_axes is None else list(layer.shared_axes),
    ),
    flops=lambda layer, in_shape, out_shape: 3 * math.prod(in_shape),
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.ELU,
    keras_class="ELU",
    build=elu,
    to_keras=lambda keras, layer: keras.layers.ELU(alpha=layer.alpha, name=layer.name),
    flops=per_element_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.Dropout,
    keras_class="Dropout",
    build=dropout,
    to_keras=lambda keras, layer: keras.layers.Dropout(
      layer.rate, noise_shape=layer.noise_shape, name=layer.name
    ),
    flops=free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.Flatten,
    keras_class="Flatten",
    build=flatten,
    to_keras=lambda keras, layer: keras.layers.Flatten(name=layer.name),
    flops=free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=core.Reshape,
    keras_class="Reshape",
    build=reshape,
    to_keras=lambda keras, layer: keras.layers.Reshape(tuple(layer.target_shape), name=layer.name),
    flops=free_flops,
  )
)
