"""jaxnets ``Model`` -> equivalent Keras model (the converters' inverse).

A model trained by the JAX trainer (or loaded with ``jaxnets.load``) becomes a
Keras ``Sequential`` with the same layers and weights, which Keras can save as
``.keras`` and serve. One builder per jaxnets layer class maps its
hyper-parameters back to the Keras layer's options; the weights are written by
their Keras names (``kernel``, ``recurrent_kernel``, ``bias``, ``gamma``...),
which is how jaxnets names its parameter leaves.

The per-layer inverses live in each layer's record (``port/converters``).
The round trip is tested: Keras's predictions on the built model equal the
jaxnets ones.
"""

import numpy as np

import jaxnets
from port import converters  # noqa: F401  (importing it registers every layer record)
from port import registry


def _assign(keras_layer, params: dict) -> None:
  """Writes ``params`` into ``keras_layer``'s variables, matched by name."""
  if type(keras_layer).__name__ == "Bidirectional":
    _assign(keras_layer.forward_layer, params["forward_layer"])
    _assign(keras_layer.backward_layer, params["backward_layer"])
    return
  for variable in keras_layer.weights:
    key = variable.path.split("/")[-1].split(":")[0]
    if key not in params:
      raise ValueError(
        f"layer {keras_layer.name!r}: no jaxnets parameter {key!r} (has {sorted(params)})"
      )
    value = np.asarray(params[key], np.float32)
    if tuple(value.shape) != tuple(variable.shape):
      raise ValueError(
        f"layer {keras_layer.name!r}: parameter {key!r} has shape "
        f"{value.shape}, Keras expects {tuple(variable.shape)}"
      )
    variable.assign(value)
  if hasattr(keras_layer, "finalize_state"):
    # Keras's Normalization computes with a copy of its statistics made when it
    # was built; this refreshes the copy from the weights just written.
    keras_layer.finalize_state()


def to_keras(model: jaxnets.Model):
  """Builds the Keras model equivalent to ``model`` and writes its parameters.

  Raises ``ValueError`` naming the layer when a jaxnets layer has no Keras
  equivalent here.
  """
  import keras  # pylint: disable=import-outside-toplevel

  if not isinstance(model, jaxnets.Model):
    raise TypeError(f"port.to_keras takes a jaxnets.Model, got {type(model).__name__}")
  if not model.graph.is_chain:
    raise ValueError(
      f"model {model.name!r} is a graph, not a chain of layers; port.to_keras rebuilds "
      "chains (Sequential) only"
    )
  layers = [l for l in (model.preprocessor, *model.layers) if l is not None]
  missing = [
    f"{l.name!r} ({type(l).__name__})" for l in layers if type(l) not in registry.layer_classes()
  ]
  if missing:
    raise ValueError(f"no Keras equivalent for jaxnets layer(s): {', '.join(missing)}")

  def inverse(layer):
    return registry.record_for(type(layer)).to_keras(keras, layer)

  if model.preprocessor is not None:
    keras_layers = [keras.Input(shape=(), dtype="string", name="text"), inverse(model.preprocessor)]
  else:
    dtype = "float32" if model.input_dtype == "float32" else "int32"
    keras_layers = [keras.Input(shape=model.input_shape, dtype=dtype)]
  built = [inverse(l) for l in model.layers]
  keras_model = keras.Sequential(keras_layers + built, name=model.name)
  for keras_layer, layer in zip(built, model.layers):
    if layer.name in model.params:
      _assign(keras_layer, model.params[layer.name])
    elif keras_layer.weights:
      raise ValueError(
        f"layer {layer.name!r}: Keras has weights but the jaxnets model has no parameters for it"
      )
  return keras_model
