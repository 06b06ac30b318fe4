"""Converters for Keras's position-wise and shape layers (Dense, activations...)."""

from jaxnets import activations
from jaxnets.layers import core
from port import registry


def activation_name(cfg: registry.ConfigReader, key: str = "activation") -> str:
  """Reads an activation option; only Keras's named built-ins are accepted."""
  value = cfg.get(key, "linear")
  if value is None:
    return "linear"
  if not isinstance(value, str):
    raise cfg.error(f"option {key}={value!r} is a custom/serialised activation; "
                    "only Keras's built-in named activations are supported")
  try:
    activations.get(value)
  except KeyError:
    raise cfg.error(f"option {key}={value!r} is not a supported activation "
                    f"(supported: {', '.join(activations.NAMES)})") from None
  return value


def kernel_and_bias_weights(keras_layer, built):
  """``kernel`` (and ``bias`` when used) of a single-layer conversion, as Keras names them."""
  weights = registry.named_weights(keras_layer)
  params = {"kernel": weights["kernel"]}
  if built[0].use_bias:
    params["bias"] = weights["bias"]
  return {built[0].name: params}


@registry.register("Dense", weights=kernel_and_bias_weights)
def dense(cfg):
  cfg.dtype()
  cfg.expect("quantization_config", None)
  cfg.expect("lora_rank", None)
  cfg.ignore("lora_alpha")
  return [core.Dense(name=cfg.layer_name, units=int(cfg.get("units")),
                     activation=activation_name(cfg), use_bias=bool(cfg.get("use_bias", True)))]


@registry.register("Activation")
def activation(cfg):
  cfg.dtype()
  return [core.Activation(name=cfg.layer_name, activation=activation_name(cfg))]


@registry.register("ReLU")
def relu(cfg):
  cfg.dtype()
  max_value = cfg.get("max_value")
  return [core.ReLU(name=cfg.layer_name,
                    max_value=None if max_value is None else float(max_value),
                    negative_slope=float(cfg.get("negative_slope", 0.0)),
                    threshold=float(cfg.get("threshold", 0.0)))]


@registry.register("LeakyReLU")
def leaky_relu(cfg):
  cfg.dtype()
  slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
  return [core.ReLU(name=cfg.layer_name, negative_slope=float(slope))]


@registry.register("Softmax")
def softmax(cfg):
  cfg.dtype()
  axis = cfg.get("axis", -1)
  if axis != -1 and axis != [-1]:
    raise cfg.error(f"option axis={axis!r} is not supported (only -1, the feature axis)")
  return [core.Softmax(name=cfg.layer_name, axis=-1)]


@registry.register("Dropout")
def dropout(cfg):
  cfg.dtype()
  cfg.expect("noise_shape", None)
  return [core.Dropout(name=cfg.layer_name, rate=float(cfg.get("rate")))]


@registry.register("Flatten")
def flatten(cfg):
  cfg.dtype()
  cfg.expect("data_format", "channels_last", None)
  return [core.Flatten(name=cfg.layer_name)]


@registry.register("Reshape")
def reshape(cfg):
  cfg.dtype()
  return [core.Reshape(name=cfg.layer_name, target_shape=tuple(int(d) for d in cfg.get("target_shape")))]
