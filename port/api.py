"""Keras model (object or file) -> jaxnets ``Model``.

``load`` reads the Keras model as a graph (``_Wiring``: functional graphs,
nested models and Sequentials inlined, shared layers converted once), checks
every layer with its converter's ``build`` half and every ``keras.ops`` node
against the supported arithmetic (collecting *all* problems before converting
anything), then copies the weights. ``unsupported`` reports the problems
without raising.
"""

import dataclasses
import os
import zipfile
from typing import Any

import jaxnets
from jaxnets import graph as graph_lib
from jaxnets.layers import merge
from port import converters  # noqa: F401  (importing it registers every layer record)
from port import registry
from port.converters import attention as attention_converters
from port.converters import merge as merge_converters

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
  """The model's computation layers, nested models flattened, each once, in graph order."""
  _check_portable(model)
  wiring = _Wiring.of(model)
  return [layer for layer in wiring.keras_layers if type(layer).__name__ not in _INPUT_CLASSES]


class _Wiring:
  """A Keras model read as a ``jaxnets.graph.Graph`` over converted layers.

  Walks the functional graph in Keras's own execution order (nodes by
  decreasing depth), inlining nested models and Sequentials. Every Keras layer
  is converted once (``build``), however many times it is called; every call is
  a graph node. ``keras.ops`` arithmetic nodes become ``Arithmetic`` layers;
  other operations (Keras's own mask computations, mostly) are problems only
  if something reads them. Masks ride along with tensors; an explicit
  ``mask=`` argument becomes a ``SetMask`` node. Every problem is collected in
  ``problems`` rather than raised.
  """

  def __init__(self):
    self.problems: list[tuple[str, str, str]] = []
    self.numbers: dict[int, int] = {}  # id(KerasTensor) -> tensor number
    self.nodes: list[graph_lib.Node] = []
    self.num_inputs = 0
    self.built: dict[int, tuple] = {}  # id(keras layer) -> (layer, converter, built layers)
    self.keras_layers: list = []
    self.names: set[str] = set()
    self.preprocessor = None  # (keras layer, converter, built)
    self.string_input: int | None = None
    self.op_layers: list = []  # Arithmetic layers standing for keras.ops nodes
    self.cleared: set[int] = set()  # tensors whose masks a MultiHeadAttention removed
    self.unported: dict[int, tuple] = {}  # code (< -1) -> problem, reported when read

  @classmethod
  def of(cls, model) -> "_Wiring":
    wiring = cls()
    inputs = list(model.inputs)
    wiring.num_inputs = len(inputs)
    for number, tensor in enumerate(inputs):
      wiring.numbers[id(tensor)] = number
      if _dtype_name(tensor) == "string":
        wiring.string_input = number
    outputs = wiring._model(model, list(range(len(inputs))), prefix="")
    wiring._report_unported(outputs)
    wiring.outputs = outputs
    wiring.inputs = inputs
    return wiring

  # ------------------------------------------------------------------ walking
  def _problem(self, layer, reason: str) -> None:
    self.problems.append((getattr(layer, "name", "?"), type(layer).__name__, reason))

  def _model(self, model, input_numbers: list[int], prefix: str) -> list[int]:
    """Adds ``model``'s computation on tensors ``input_numbers``; returns its outputs' numbers."""
    import keras  # pylint: disable=import-outside-toplevel

    if isinstance(model, keras.Sequential):
      return self._sequential(model, input_numbers, prefix)
    if not any(c.__name__ == "Functional" for c in type(model).__mro__):
      self._problem(
        model,
        f"nested model {model.name!r} is a subclassed keras.Model: its computation is Python "
        "code in call(), which cannot be ported exactly",
      )
      return [self._dead() for _ in model.outputs or [None]]
    local: dict[int, int] = {}
    if len(model.inputs) != len(input_numbers):
      self._problem(model, f"called on {len(input_numbers)} tensors, takes {len(model.inputs)}")
      return [self._dead() for _ in model.outputs]
    for tensor, number in zip(model.inputs, input_numbers):
      local[id(tensor)] = number
    for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
      for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
        if not node.operation or node.is_input:
          continue
        self._node(node, local, prefix)
    return [self._number(local, t, model) for t in model.outputs]

  def _sequential(self, model, input_numbers: list[int], prefix: str) -> list[int]:
    import keras  # pylint: disable=import-outside-toplevel

    if len(input_numbers) != 1:
      self._problem(model, f"a Sequential takes one input, called on {len(input_numbers)}")
      return [self._dead()]
    number = input_numbers[0]
    for layer in model.layers:
      if type(layer).__name__ in _INPUT_CLASSES:
        continue
      if isinstance(layer, keras.Model):
        number = self._model(layer, [number], prefix + model.name + "/")[0]
        continue
      if type(layer).__name__ in _PREPROCESSOR_CLASSES:
        number = self._preprocessor(layer, number)
        continue
      number = self._layer_call(layer, [number], [], {}, prefix + model.name + "/")
    return [number]

  def _number(self, local: dict, tensor, where) -> int:
    number = local.get(id(tensor))
    if number is None:
      self._problem(
        where, f"tensor {getattr(tensor, 'name', tensor)!r} is not computed from the inputs"
      )
      return self._dead()
    return number

  def _dead(self) -> int:
    """A tensor number standing for a value that could not be wired (a problem is recorded)."""
    return -1

  def _node(self, node, local: dict, prefix: str) -> None:
    import keras  # pylint: disable=import-outside-toplevel
    from keras import tree  # pylint: disable=import-outside-toplevel

    op = node.operation
    args, kwargs = node.arguments.args, dict(node.arguments.kwargs)
    if len(node.outputs) != 1:
      converter = registry.converter_for(type(op).__name__)
      if converter is not None and id(op) not in self.built:
        # The converter names the option behind the extra outputs (return_state...).
        self.built[id(op)] = [converter, self._build(op, converter, op.name), None]
      self._problem(
        op, f"returns {len(node.outputs)} tensors (only single-output calls are supported)"
      )
      for t in node.outputs:
        local[id(t)] = self._dead()
      return
    output = node.outputs[0]
    # An explicit mask argument is what Keras's eager call uses (the recorded
    # mask tensor, e.g. an Embedding's not_equal): it is wired as a SetMask
    # node in front of the call. Without one, each tensor's own mask is used,
    # as Keras fills it in from the tensor.
    mask = kwargs.pop("mask", None)
    if isinstance(mask, (list, tuple)):
      if any(m is not None for m in tree.flatten(mask)):
        self._problem(op, "is called with an explicit list of masks (not supported)")
      mask = None
    for key in [k for k in kwargs if k in ("query_mask", "value_mask", "key_mask")]:
      if kwargs.pop(key) is not None:
        self._problem(op, f"is called with an explicit {key} (not supported)")
    training = kwargs.pop("training", None)
    if training:
      self._problem(op, "is called with training=True (inference is what jaxnets reproduces)")
    if isinstance(op, keras.Model):
      if kwargs:
        self._problem(op, f"nested model called with unsupported argument(s) {sorted(kwargs)}")
      numbers = [self._number(local, t, op) for t in tree.flatten(args)]
      numbers = self._with_mask(op, numbers, mask, local, tree.flatten(args))
      outputs = self._model(op, numbers, prefix + op.name + "/")
      if len(outputs) != 1:
        self._problem(op, "a nested model with several outputs is not supported")
        local[id(output)] = self._dead()
        return
      local[id(output)] = outputs[0]
      return
    if not isinstance(op, keras.layers.Layer):
      local[id(output)] = self._operation(op, args, kwargs, local)
      return
    class_name = type(op).__name__
    if class_name in _PREPROCESSOR_CLASSES:
      plain = len(args) == 1 and not kwargs and mask is None
      source = local.get(id(args[0])) if plain else None
      local[id(output)] = self._preprocessor(op, source)
      return
    binder = _BINDERS.get(class_name, _bind_default)
    try:
      tensors, options = binder(op, args, kwargs)
    except registry.UnsupportedLayerError as e:
      self.problems.append((e.layer_name, e.class_name, e.reason))
      local[id(output)] = self._dead()
      return
    numbers = [self._number(local, t, op) for t in tensors]
    numbers = self._with_mask(op, numbers, mask, local, tensors)
    local[id(output)] = self._layer_call(op, numbers, options, kwargs, prefix)

  def _with_mask(self, op, numbers: list[int], mask, local, tensors) -> list[int]:
    """``numbers`` with the first tensor replaced by a SetMask of it and ``mask``.

    A mask that is the input's own (the one Keras attached to it) is the mask
    the jaxnets layers carry along, unless a MultiHeadAttention has cleared
    masks anywhere before: Keras's eager call then still uses the recorded
    mask computation, while the carried masks have lost a contribution.
    """
    if mask is None:
      return numbers
    own = len(tensors) == 1 and getattr(tensors[0], "_keras_mask", None) is mask
    if own and not self.cleared:
      return numbers
    if len(numbers) != 1:
      self._problem(op, "is called with an explicit mask and several inputs (not supported)")
      return [self._dead()]
    mask_number = self._number(local, mask, op)
    name = self._unique(f"{op.name}/mask", op)
    layer = merge.SetMask(name=name)
    self.op_layers.append(layer)
    return [self._append((name,), [numbers[0], mask_number], where=op)]

  def _operation(self, op, args, kwargs, local) -> int:
    """A ``keras.ops`` node (``x + y``, ``x * 0.5``...) as an ``Arithmetic`` layer.

    An operation jaxnets does not reproduce is only a problem when a
    supported node or the model's output reads what it computes: Keras records
    mask computations (``logical_or``, ``expand_dims``...) that jaxnets layers
    do themselves, and those are usually read by nothing.
    """
    import keras  # pylint: disable=import-outside-toplevel
    from keras import tree  # pylint: disable=import-outside-toplevel

    class_name = type(op).__name__
    if class_name == "ConvertToTensor" and len(args) == 1 and not kwargs:
      return self._number(local, args[0], op)  # an identity on a tensor
    name = merge_converters.OPS.get(class_name)
    if name is None or kwargs or len(args) != 2:
      for a in tree.flatten((args, kwargs)):
        if isinstance(a, keras.KerasTensor) and local.get(id(a)) in self.unported:
          return local[id(a)]  # downstream of an unported operation: same problem
      code = -2 - len(self.unported)
      self.unported[code] = (
        op.name,
        class_name,
        f"keras.ops operation {class_name} is not supported in a ported graph (supported: "
        f"{', '.join(sorted(merge_converters.OPS))} of two operands, tensors or numbers)",
      )
      return code
    operands, numbers = [], []
    for a in args:
      if isinstance(a, keras.KerasTensor):
        if _dtype_name(a) != "float32" and name not in ("not_equal", "logical_or", "logical_and"):
          self._problem(op, f"operand {a.name!r} has dtype {_dtype_name(a)} (only float32)")
        operands.append(None)
        numbers.append(self._number(local, a, op))
      elif isinstance(a, (int, float)) and not isinstance(a, bool):
        operands.append(float(a))
      else:
        self._problem(op, f"operand {a!r:.60} is neither a tensor nor a Python number")
        return self._dead()
    if not numbers:
      self._problem(op, "has no tensor operand")
      return self._dead()
    for n in numbers:
      if n in self.unported:
        return n  # reads an unported operation: a problem only if something reads this
    layer = merge.Arithmetic(name=self._unique(op.name, op), op=name, operands=tuple(operands))
    self.op_layers.append(layer)
    return self._append((layer.name,), numbers, where=op)

  def _preprocessor(self, op, source: int | None) -> int:
    """A TextVectorization on tensor ``source``: the host-side preprocessor when
    ``source`` is the model's single string input; returns its output's number."""
    if self.preprocessor is not None or source is None or source != self.string_input:
      self._problem(
        op,
        "a text preprocessing layer is only supported when fed directly by the model's single "
        "string input (it becomes the host-side preprocessor)",
      )
      return self._dead()
    converter = registry.converter_for(type(op).__name__)
    built = self._build(op, converter, op.name)
    if built is None:
      return self._dead()
    self.preprocessor = (op, converter, built)
    self.keras_layers.append(op)
    self.string_input = None  # its token ids are the graph's input 0 from now on
    return source

  # --------------------------------------------------------------- layers
  def _layer_call(self, layer, numbers: list[int], options, kwargs, prefix: str) -> int:
    """One call of a Keras layer on tensors ``numbers``; returns its output's number."""
    if kwargs:
      self._problem(layer, f"is called with unsupported argument(s) {sorted(kwargs)}")
      return self._dead()
    if self.string_input is not None and self.string_input in numbers:
      self._problem(layer, "reads the raw string input (only a TextVectorization layer may)")
      return self._dead()
    entry = self.built.get(id(layer))
    if entry is None:
      converter = registry.converter_for(type(layer).__name__)
      if converter is None:
        self.problems.append((layer.name, type(layer).__name__, _no_converter(layer)))
        self.built[id(layer)] = entry = [None, None, None]
      else:
        built = self._build(layer, converter, self._unique(layer.name, layer, prefix))
        self.built[id(layer)] = entry = [converter, built, None]
        self.keras_layers.append(layer)
    converter, built, bound_options = entry
    if built is None:
      return self._dead()
    # Call-time options (use_causal_mask...) become the layer's own; a shared
    # layer must be called with the same ones everywhere.
    if bound_options is None:
      entry[2] = dict(options)
      if options:
        built = entry[1] = [dataclasses.replace(built[0], **options)] + list(built[1:])
    elif bound_options != options:
      self._problem(layer, "is called with different call options at different places")
      return self._dead()
    if not built:  # converts to nothing (an identity)
      if len(numbers) != 1:
        self._problem(layer, "converts to no computation but takes several inputs")
        return self._dead()
      return numbers[0]
    many = built[0].multiple_inputs
    if not many and len(numbers) != 1:
      self._problem(layer, f"takes one input, called on {len(numbers)}")
      return self._dead()
    # Keras's MultiHeadAttention strips the masks off the tensors it is called on.
    clear = type(layer).__name__ in _CLEARS_INPUT_MASKS
    return self._append(tuple(l.name for l in built), numbers, clear, where=layer)

  def _report_unported(self, numbers) -> None:
    for n in numbers:
      problem = self.unported.get(n)
      if problem is not None and problem not in self.problems:
        self.problems.append(problem)

  def _append(self, names, numbers, clear_masks: bool = False, where=None) -> int:
    self._report_unported(numbers)
    if any(n < 0 for n in numbers):
      return self._dead()
    self.nodes.append(graph_lib.Node(tuple(names), tuple(numbers), clear_masks))
    if clear_masks:
      self.cleared.update(numbers)
    return self.num_inputs + len(self.nodes) - 1

  def _build(self, layer, converter, name: str):
    cfg = registry.ConfigReader(name, type(layer).__name__, layer.get_config())
    try:
      built = converter.build(cfg)
      cfg.finish()
    except registry.UnsupportedLayerError as e:
      self.problems.append((e.layer_name, e.class_name, e.reason))
      return None
    return list(built)

  def _unique(self, name: str, layer, prefix: str = "") -> str:
    """``name``, or ``prefix + name`` when another layer of a nested model took it."""
    del layer
    candidate = name if name not in self.names else prefix + name
    suffix = 2
    while candidate in self.names:
      candidate = f"{prefix}{name}_{suffix}"
      suffix += 1
    self.names.add(candidate)
    return candidate

  # ----------------------------------------------------------------- result
  def layers_and_params(self) -> tuple[list, dict]:
    layers, params, seen = [], {}, set()
    for keras_layer in self.keras_layers:
      if keras_layer is (self.preprocessor or (None,))[0]:
        continue
      if not hasattr(keras_layer, "get_config") or id(keras_layer) not in self.built:
        continue
      converter, built, _ = self.built[id(keras_layer)]
      params.update(converter.weights(keras_layer, built))
      for layer in built:
        if layer.name not in seen:
          seen.add(layer.name)
          layers.append(layer)
    return layers + self.op_layers, params


def _dtype_name(tensor) -> str:
  return str(getattr(tensor.dtype, "name", tensor.dtype))


def _bind_default(layer, args, kwargs):
  """A layer called on one tensor, or a merge layer on a list of tensors."""
  import keras  # pylint: disable=import-outside-toplevel

  error = registry.UnsupportedLayerError
  if len(args) != 1:
    raise error(
      layer.name, type(layer).__name__, f"is called with {len(args)} positional arguments"
    )
  (arg,) = args
  if isinstance(arg, (list, tuple)) and all(isinstance(a, keras.KerasTensor) for a in arg):
    return list(arg), {}
  if not isinstance(arg, keras.KerasTensor):
    raise error(
      layer.name, type(layer).__name__, f"is called on {type(arg).__name__}, not a tensor"
    )
  return [arg], {}


# Built-in Keras classes refused on purpose, with the reason (not just "no converter").
_KNOWN_REFUSALS = {
  "RandomCrop": (
    "at inference Keras 3 returns the input uncropped while declaring the cropped "
    "output shape, so there is no consistent answer to reproduce; use CenterCrop"
  ),
}


def _no_converter(layer) -> str:
  class_name = type(layer).__name__
  if class_name in _KNOWN_REFUSALS and type(layer).__module__.startswith("keras."):
    return f"Keras class {class_name} is refused: {_KNOWN_REFUSALS[class_name]}"
  custom = not type(layer).__module__.startswith("keras.")
  advice = (
    "it is a custom layer (defined in "
    f"{type(layer).__module__}); replace it with built-in Keras layers, or "
    "register a port record for it in port/converters"
    if custom
    else f"supported: {', '.join(registry.supported_classes())}"
  )
  return f"no jaxnets converter for Keras class {class_name} ({advice})"


# Keras layers whose call removes the masks of the tensors they are given.
_CLEARS_INPUT_MASKS = ("MultiHeadAttention",)
# Keras class -> how its call arguments map to jaxnets inputs and options.
_BINDERS = {**attention_converters.BINDERS}


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


def _wired(model) -> _Wiring:
  """The model's wiring; structural problems are in ``problems`` (raises only for
  a model that cannot be read as a graph at all)."""
  _check_portable(model)
  wiring = _Wiring.of(model)
  if wiring.string_input is not None:
    wiring.problems.append(
      (model.name, type(model).__name__, "string input without a TextVectorization layer on it")
    )
  if wiring.preprocessor is not None and wiring.num_inputs != 1:
    wiring.problems.append(
      (model.name, type(model).__name__, "a text model must have a single (string) input")
    )
  for tensor in wiring.inputs:
    dtype = _dtype_name(tensor)
    if dtype != "string" and "int" not in dtype and dtype != "float32":
      wiring.problems.append(
        (
          model.name,
          type(model).__name__,
          f"input dtype {dtype!r} is not supported (only float32, int, string)",
        )
      )
  return wiring


def unsupported(src) -> list[tuple[str, str, str]]:
  """Every ``(layer name, Keras class, reason)`` that stops ``load(src)``."""
  model = load_keras(src)
  try:
    return _wired(model).problems
  except registry.UnsupportedLayerError as e:
    return [(e.layer_name, e.class_name, e.reason)]


def load(src) -> jaxnets.Model:
  """Ports a Keras model (object, ``.keras`` or ``.h5`` path) to jaxnets.

  Any functional graph of supported layers ports: branches and merges,
  several inputs and outputs (returned in Keras's structure), nested models,
  shared layers. Raises ``UnsupportedModelError`` (a ``ValueError``) listing
  every layer, option or operation that cannot be reproduced exactly, before
  converting anything.
  """
  model = load_keras(src)
  wiring = _wired(model)
  if wiring.problems:
    raise registry.UnsupportedModelError(wiring.problems)
  preprocessor = None
  if wiring.preprocessor is not None:
    keras_layer, converter, built = wiring.preprocessor
    # A preprocessor's state (an adapted vocabulary) is not in its config: the
    # converter's weights half returns the finished preprocessor.
    preprocessor = converter.weights(keras_layer, built).get(built[0].name, built[0])
  layers, params = wiring.layers_and_params()
  struct = getattr(model, "_outputs_struct", None)
  names, output_list = None, False
  outputs = tuple(wiring.outputs)
  if isinstance(struct, dict):
    # Keras returns the dict in the order it was given; model.outputs is sorted.
    by_id = {id(t): n for t, n in zip(model.outputs, wiring.outputs)}
    names = tuple(struct)
    outputs = tuple(by_id[id(struct[k])] for k in names)
  elif len(outputs) > 1:
    output_list = True
  graph = graph_lib.Graph(wiring.num_inputs, tuple(wiring.nodes), outputs, names, output_list)
  shapes, dtypes = [], []
  for tensor in wiring.inputs:
    dtype = _dtype_name(tensor)
    if dtype == "string":
      shapes.append(())
      dtypes.append("string")
    else:
      shapes.append(tuple(tensor.shape[1:]))
      dtypes.append("float32" if "float" in dtype else "int32")
  single = wiring.num_inputs == 1
  return jaxnets.Model(
    layers,
    params,
    input_shape=shapes[0] if single else shapes,
    input_dtype=dtypes[0] if single else dtypes,
    preprocessor=preprocessor,
    name=model.name,
    graph=graph,
    input_names=[t._keras_history.operation.name for t in wiring.inputs]  # pylint: disable=protected-access
    if not single
    else None,
  )
