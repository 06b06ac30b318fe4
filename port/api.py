"""Keras model (object or file) -> jaxnets ``Model``.

``load`` walks the Keras model's layers in order, checks every one with its
converter's ``build`` half (collecting *all* problems before converting
anything), then copies the weights. ``unsupported`` reports the problems
without raising.
"""

import os
import zipfile
from typing import Any

import jaxnets
from port import converters  # noqa: F401  (importing it registers every layer record)
from port import registry

# Keras layers that only describe the input; they carry no computation.
_INPUT_CLASSES = ("InputLayer",)
# A preprocessing layer that turns raw strings into token ids; it becomes the
# ported model's host-side preprocessor rather than a compiled layer.
_PREPROCESSOR_CLASSES = ("TextVectorization",)


def load_keras(src) -> Any:
  """Returns a ``keras.Model`` for a model object or a ``.keras``/``.h5`` path."""
  import keras  # pylint: disable=import-outside-toplevel

  if isinstance(src, keras.Model):
    return src
  if not isinstance(src, (str, os.PathLike)):
    raise TypeError(
      f"port.load takes a keras.Model or a path to a .keras/.h5 file, got {type(src).__name__}"
    )
  path = os.fspath(src)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no Keras model file at {path!r}")
  if os.path.isdir(path):
    raise ValueError(
      f"{path!r} is a directory; give a .keras or .h5 file "
      "(TF SavedModel directories are not supported)"
    )
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in (".keras", ".h5", ".hdf5"):
    raise ValueError(
      f"{path!r} is not a Keras model file: expected a .keras or .h5 "
      f"suffix, got {suffix or 'none'!r}"
    )
  if suffix == ".keras" and not zipfile.is_zipfile(path):
    raise ValueError(
      f"{path!r} is not a valid .keras file (not a zip archive: truncated or not written by Keras)"
    )
  try:
    return keras.saving.load_model(path, compile=False)
  except Exception as e:  # Keras raises many types for corrupt files.
    raise ValueError(f"could not load Keras model from {path!r}: {type(e).__name__}: {e}") from e


def _check_portable(model) -> None:
  """Refuses, by name, a model whose layers cannot be read as a graph at all."""
  import keras  # pylint: disable=import-outside-toplevel

  kind = type(model).__name__
  # Sequential and functional models are graphs of layers; any other
  # keras.Model subclass computes in its own Python call().
  graph = isinstance(model, keras.Sequential) or any(
    cls.__name__ == "Functional" for cls in type(model).__mro__
  )
  if not graph:
    raise registry.UnsupportedLayerError(
      model.name,
      kind,
      f"model {model.name!r} is a subclassed keras.Model ({kind}): its computation is "
      "Python code in call(), which cannot be ported exactly; rebuild it as a Sequential "
      "or functional model (keras.Input -> layers -> keras.Model) and port that",
    )
  try:
    inputs = model.inputs
  except (AttributeError, ValueError):
    inputs = None
  if not inputs:
    raise registry.UnsupportedLayerError(
      model.name,
      kind,
      f"model {model.name!r} has never been built, so its input shape is unknown: start "
      "it with keras.Input(shape=...), or call model.build((None, ...)) or run it on a "
      "batch once, then port it",
    )


def flat_layers(model) -> list:
  """The model's computation layers in order, nested models flattened.

  Only a single chain is accepted: one input, one output, each layer fed by
  exactly the previous layer's output. Anything else is reported as an
  ``UnsupportedLayerError`` naming the offending layer.
  """
  import keras  # pylint: disable=import-outside-toplevel

  _check_portable(model)
  if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
    raise registry.UnsupportedLayerError(
      model.name,
      type(model).__name__,
      f"only single-input, single-output models are supported; this one has "
      f"{len(model.inputs or [])} inputs and {len(model.outputs or [])} outputs",
    )
  layers = [l for l in model.layers if type(l).__name__ not in _INPUT_CLASSES]
  if not isinstance(model, keras.Sequential):
    previous = model.inputs[0]
    for layer in layers:
      # Keras has no public accessor for the call graph of a layer.
      nodes = layer._inbound_nodes  # pylint: disable=protected-access
      if len(nodes) != 1:
        raise registry.UnsupportedLayerError(
          layer.name,
          type(layer).__name__,
          f"layer is called {len(nodes)} times (shared layers are not supported)",
        )
      # The mask Keras propagates from the previous output arrives as the
      # `mask` keyword; it is that output's own mask, not a second input.
      previous_mask = getattr(previous, "_keras_mask", None)
      inputs = [
        t for t in nodes[0].input_tensors if previous_mask is None or t is not previous_mask
      ]
      if len(inputs) != 1 or inputs[0] is not previous:
        raise registry.UnsupportedLayerError(
          layer.name,
          type(layer).__name__,
          "the model is not a single chain: this layer does not take exactly the "
          "previous layer's output (branches, merges and skip connections are "
          "not supported)",
        )
      previous = nodes[0].output_tensors[0]
  out = []
  for layer in layers:
    if isinstance(layer, keras.Model):
      out.extend(flat_layers(layer))
    else:
      out.append(layer)
  return out


def check_layers(layers) -> tuple[list, list[tuple[str, str, str]]]:
  """Runs every converter's ``build``; returns (built layers, problems)."""
  built, problems = [], []
  for position, layer in enumerate(layers):
    class_name = type(layer).__name__
    if class_name in _PREPROCESSOR_CLASSES and position != 0:
      problems.append(
        (layer.name, class_name, "a text preprocessing layer is only supported as the first layer")
      )
      continue
    converter = registry.converter_for(class_name)
    if converter is None:
      custom = not type(layer).__module__.startswith("keras.")
      advice = (
        "it is a custom layer (defined in "
        f"{type(layer).__module__}); replace it with built-in Keras layers, or "
        "register a port record for it in port/converters"
        if custom
        else f"supported: {', '.join(registry.supported_classes())}"
      )
      problems.append(
        (layer.name, class_name, f"no jaxnets converter for Keras class {class_name} ({advice})")
      )
      continue
    cfg = registry.ConfigReader(layer.name, class_name, layer.get_config())
    try:
      result = converter.build(cfg)
      cfg.finish()
    except registry.UnsupportedLayerError as e:
      problems.append((e.layer_name, e.class_name, e.reason))
      continue
    built.append((layer, converter, result))
  return built, problems


def unsupported(src) -> list[tuple[str, str, str]]:
  """Every ``(layer name, Keras class, reason)`` that stops ``load(src)``."""
  model = load_keras(src)
  try:
    layers = flat_layers(model)
  except registry.UnsupportedLayerError as e:
    return [(e.layer_name, e.class_name, e.reason)]
  return check_layers(layers)[1]


def load(src) -> jaxnets.Model:
  """Ports a Keras model (object, ``.keras`` or ``.h5`` path) to jaxnets.

  Raises ``UnsupportedModelError`` (a ``ValueError``) listing every layer or
  option that cannot be reproduced exactly, before converting anything.
  """
  model = load_keras(src)
  built, problems = check_layers(flat_layers(model))
  if problems:
    raise registry.UnsupportedModelError(problems)

  preprocessor, layers, params = None, [], {}
  for keras_layer, converter, result in built:
    if type(keras_layer).__name__ in _PREPROCESSOR_CLASSES:
      # A preprocessor's state (an adapted vocabulary) is not in its config: the
      # converter's weights half returns the finished preprocessor.
      preprocessor = converter.weights(keras_layer, result).get(result[0].name, result[0])
      continue
    layers.extend(result)
    params.update(converter.weights(keras_layer, result))

  spec = model.inputs[0]
  dtype = str(getattr(spec.dtype, "name", spec.dtype))
  if preprocessor is not None or dtype == "string":
    if preprocessor is None:
      raise registry.UnsupportedLayerError(
        model.name, type(model).__name__, "string input without a TextVectorization first layer"
      )
    input_dtype, input_shape = "string", ()
  else:
    input_dtype = "float32" if "float" in dtype else "int32"
    if "float" not in dtype and "int" not in dtype:
      raise registry.UnsupportedLayerError(
        model.name, type(model).__name__, f"input dtype {dtype!r} is not supported"
      )
    if "float" in dtype and dtype != "float32":
      raise registry.UnsupportedLayerError(
        model.name, type(model).__name__, f"input dtype {dtype!r} is not supported (only float32)"
      )
    input_shape = tuple(spec.shape[1:])
  return jaxnets.Model(
    layers,
    params,
    input_shape=input_shape,
    input_dtype=input_dtype,
    preprocessor=preprocessor,
    name=model.name,
  )
