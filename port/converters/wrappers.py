"""Record for ``TimeDistributed``: the inner layer goes through its own record.

The wrapper's config holds the inner layer's serialised form
(``{"class_name", "config", "module"...}``); the inner class's converter reads
that config with its own ``ConfigReader`` (so every inner option is checked as
strictly as at the top level), and the inner converter's ``weights`` half reads
the inner Keras layer (``keras_layer.layer``).
"""

from jaxnets.layers import wrappers
from port import registry


def time_distributed(cfg):
  cfg.dtype()
  inner = cfg.get("layer")
  if not isinstance(inner, dict) or "class_name" not in inner or "config" not in inner:
    raise cfg.error(f"option layer={inner!r:.80} is not a serialised Keras layer")
  class_name = inner["class_name"]
  converter = registry.converter_for(class_name)
  if converter is None or class_name == "TextVectorization":
    raise cfg.error(f"inner layer class {class_name} is not supported inside TimeDistributed")
  inner_config = inner["config"]
  inner_cfg = registry.ConfigReader(inner_config.get("name", class_name), class_name, inner_config)
  try:
    built = converter.build(inner_cfg)
    inner_cfg.finish()
  except registry.UnsupportedLayerError as e:
    raise cfg.error(f"inner layer {e.layer_name!r} ({e.class_name}): {e.reason}") from None
  if len(built) != 1:
    raise cfg.error(f"inner layer class {class_name} converts to {len(built)} layers, not one")
  return [wrappers.TimeDistributed(name=cfg.layer_name, layer=built[0])]


def _weights(keras_layer, built):
  layer = built[0]
  inner = keras_layer.layer
  converter = registry.converter_for(type(inner).__name__)
  params = converter.weights(inner, [layer.layer])
  return {layer.name: params[layer.layer.name]} if layer.layer.name in params else {}


def _to_keras(keras, layer):
  inner = registry.record_for(type(layer.layer)).to_keras(keras, layer.layer)
  return keras.layers.TimeDistributed(inner, name=layer.name)


def _flops(layer, in_shape, out_shape) -> int:
  """The inner layer's FLOPs once per time step."""
  inner = registry.record_for(type(layer.layer)).flops
  return in_shape[0] * inner(layer.layer, tuple(in_shape[1:]), tuple(out_shape[1:]))


registry.register(
  registry.LayerRecord(
    layer=wrappers.TimeDistributed,
    keras_class="TimeDistributed",
    build=time_distributed,
    weights=_weights,
    to_keras=_to_keras,
    flops=_flops,
  )
)
