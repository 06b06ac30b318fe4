"""jaxnets ``Model`` -> equivalent Keras model (the converters' inverse).

A model trained by the JAX trainer (or loaded with ``jaxnets.load``) becomes a
Keras ``Sequential`` with the same layers and weights, which Keras can save as
``.keras`` and serve. One builder per jaxnets layer class maps its
hyper-parameters back to the Keras layer's options; the weights are written by
their Keras names (``kernel``, ``recurrent_kernel``, ``bias``, ``gamma``...),
which is how jaxnets names its parameter leaves.

The result is checked by its round trip: Keras's predictions on the built
model equal the jaxnets ones (tests/test_to_keras.py).
"""

from typing import Any, Callable

import numpy as np

import jaxnets

_BUILDERS: dict[str, Callable[[Any, Any], Any]] = {}


def _builder(*class_names: str):
  def decorator(fn):
    for name in class_names:
      _BUILDERS[name] = fn
    return fn
  return decorator


def _fields(layer, *names):
  return {name: getattr(layer, name) for name in names}


@_builder("Dense")
def _dense(keras, layer):
  return keras.layers.Dense(name=layer.name, **_fields(layer, "units", "activation", "use_bias"))


@_builder("Activation")
def _activation(keras, layer):
  return keras.layers.Activation(layer.activation, name=layer.name)


@_builder("ReLU")
def _relu(keras, layer):
  return keras.layers.ReLU(name=layer.name,
                           **_fields(layer, "max_value", "negative_slope", "threshold"))


@_builder("Softmax")
def _softmax(keras, layer):
  return keras.layers.Softmax(axis=layer.axis, name=layer.name)


@_builder("Dropout")
def _dropout(keras, layer):
  return keras.layers.Dropout(layer.rate, name=layer.name)


@_builder("Flatten")
def _flatten(keras, layer):
  return keras.layers.Flatten(name=layer.name)


@_builder("Reshape")
def _reshape(keras, layer):
  return keras.layers.Reshape(tuple(layer.target_shape), name=layer.name)


@_builder("Conv1D", "Conv2D")
def _conv(keras, layer):
  cls = getattr(keras.layers, type(layer).__name__)
  options = _fields(layer, "filters", "kernel_size", "padding", "groups", "activation",
                    "use_bias")
  rank = len(layer.kernel_size)
  options["strides"] = layer.strides or (1,) * rank
  options["dilation_rate"] = layer.dilation_rate or (1,) * rank
  return cls(name=layer.name, **options)


@_builder("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D")
def _pooling(keras, layer):
  cls = getattr(keras.layers, type(layer).__name__)
  return cls(pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding,
             name=layer.name)


@_builder("GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D",
          "GlobalAveragePooling2D")
def _global_pooling(keras, layer):
  cls = getattr(keras.layers, type(layer).__name__)
  return cls(keepdims=layer.keepdims, name=layer.name)


@_builder("BatchNormalization")
def _batch_norm(keras, layer):
  return keras.layers.BatchNormalization(name=layer.name,
                                         **_fields(layer, "axis", "epsilon", "center", "scale"))


@_builder("Embedding")
def _embedding(keras, layer):
  return keras.layers.Embedding(layer.input_dim, layer.output_dim, mask_zero=layer.mask_zero,
                                name=layer.name)


@_builder("Masking")
def _masking(keras, layer):
  return keras.layers.Masking(mask_value=layer.mask_value, name=layer.name)


def _recurrent_options(layer) -> dict:
  options = _fields(layer, "units", "use_bias", "return_sequences", "go_backwards", "unroll",
                    "dropout", "recurrent_dropout", "activation")
  if hasattr(layer, "recurrent_activation"):
    options["recurrent_activation"] = layer.recurrent_activation
  if hasattr(layer, "reset_after"):
    options["reset_after"] = layer.reset_after
  if hasattr(layer, "unit_forget_bias"):
    options["unit_forget_bias"] = layer.unit_forget_bias
  return options


@_builder("SimpleRNN", "LSTM", "GRU")
def _recurrent(keras, layer):
  cls = getattr(keras.layers, type(layer).__name__)
  return cls(name=layer.name, **_recurrent_options(layer))


@_builder("Bidirectional")
def _bidirectional(keras, layer):
  forward = _recurrent(keras, layer.forward_layer)
  backward = _recurrent(keras, layer.backward_layer)
  return keras.layers.Bidirectional(forward, backward_layer=backward,
                                    merge_mode=layer.merge_mode, name=layer.name)


def _text_vectorization(keras, vectorizer):
  # Keras re-adds the padding '' and OOV '[UNK]' tokens in front of the
  # vocabulary it is given, so they are passed without them.
  return keras.layers.TextVectorization(
      max_tokens=vectorizer.max_tokens, standardize=vectorizer.standardize,
      split=vectorizer.split, output_mode="int",
      output_sequence_length=vectorizer.output_sequence_length,
      vocabulary=list(vectorizer.vocabulary[2:]), name=vectorizer.name)


def _assign(keras_layer, params: dict) -> None:
  """Writes ``params`` into ``keras_layer``'s variables, matched by name."""
  if type(keras_layer).__name__ == "Bidirectional":
    _assign(keras_layer.forward_layer, params["forward_layer"])
    _assign(keras_layer.backward_layer, params["backward_layer"])
    return
  for variable in keras_layer.weights:
    key = variable.path.split("/")[-1].split(":")[0]
    if key not in params:
      raise ValueError(f"layer {keras_layer.name!r}: no jaxnets parameter {key!r} "
                       f"(has {sorted(params)})")
    value = np.asarray(params[key], np.float32)
    if tuple(value.shape) != tuple(variable.shape):
      raise ValueError(f"layer {keras_layer.name!r}: parameter {key!r} has shape "
                       f"{value.shape}, Keras expects {tuple(variable.shape)}")
    variable.assign(value)


def to_keras(model: jaxnets.Model):
  """Builds the Keras model equivalent to ``model`` and writes its parameters.

  Raises ``ValueError`` naming the layer when a jaxnets layer has no Keras
  equivalent here.
  """
  import keras  # pylint: disable=import-outside-toplevel

  missing = [(l.name, type(l).__name__) for l in model.layers
             if type(l).__name__ not in _BUILDERS]
  if missing:
    raise ValueError(f"no Keras equivalent for jaxnets layer(s): {missing}")
  if model.preprocessor is not None:
    keras_layers = [keras.Input(shape=(), dtype="string", name="text"),
                    _text_vectorization(keras, model.preprocessor)]
  else:
    dtype = "float32" if model.input_dtype == "float32" else "int32"
    keras_layers = [keras.Input(shape=model.input_shape, dtype=dtype)]
  built = [_BUILDERS[type(l).__name__](keras, l) for l in model.layers]
  keras_model = keras.Sequential(keras_layers + built, name=model.name)
  for keras_layer, layer in zip(built, model.layers):
    if layer.name in model.params:
      _assign(keras_layer, model.params[layer.name])
    elif keras_layer.weights:
      raise ValueError(f"layer {layer.name!r}: Keras has weights but the jaxnets model "
                       "has no parameters for it")
  return keras_model
