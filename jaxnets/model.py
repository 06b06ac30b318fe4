"""A jaxnets model: layers wired as a graph (a chain by default), compiled as one function.

``Model`` holds the layers (hyper-parameters), their parameters (a dict keyed
by layer name whose leaves carry Keras's weight names), the graph that says
which layer reads which tensor (``jaxnets.graph``: branches, merges, several
inputs and outputs, shared layers; a chain is the graph whose nodes each read
the previous output) and an input spec, and offers what a user of a Keras
model expects:

- ``model(x)``: the jitted forward pass on one batch (a ``jax.Array``, or
  Keras's list/dict structure for several outputs).
- ``model.predict(x, batch_size=256)``: any number of rows, returned as numpy.
- ``model.summary()``: layer, class, output shape and parameter count.
- ``model.save(directory)`` / ``jaxnets.load(directory)``: architecture as
  JSON and parameters through orbax-checkpoint; loading needs JAX alone.

Inputs are validated on the host before anything is compiled: wrong rank,
shape or dtype raise ``InputError`` naming what was expected. Batching
(sorting by length, cutting, padding, sharding) is ``jaxnets.batching``'s.
"""

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import batching
from jaxnets import export as export_lib
from jaxnets import graph as graph_lib
from jaxnets import guards
from jaxnets import saving
from jaxnets import settings
from jaxnets.errors import InputError

# ``load`` rebuilds layers and preprocessors by class name from the registry in
# ``jaxnets.layers.base``: importing the package jaxnets.layers (done here,
# before ``base``) registers every layer family, and the package jaxnets
# (imported before any of its modules) imports jaxnets.text, which registers
# TextVectorizer.
from jaxnets.layers import base

__all__ = ["ARCHITECTURE_FILE", "FORMAT_VERSION", "InputError", "Model", "PARAMS_DIR", "load"]

FORMAT_VERSION = saving.FORMAT_VERSION
ARCHITECTURE_FILE = saving.ARCHITECTURE_FILE
PARAMS_DIR = saving.PARAMS_DIR


class Model:
  """Jaxnets layers wired by a ``jaxnets.graph.Graph`` (a chain by default).

  Args:
    layers: the layers, each once (a shared layer is one layer used by several
      graph nodes); without ``graph``, applied in order.
    params: ``{layer_name: {weight_name: array}}`` for every layer with weights.
    input_shape: one example's shape (no batch axis); ``None`` marks a free
      dimension (e.g. sequence length). For several inputs: one shape per input.
    input_dtype: ``"float32"`` for images/features, ``"int32"`` for token ids,
      ``"string"`` when ``preprocessor`` turns raw strings into token ids. For
      several inputs: one dtype per input (``"string"`` is single-input only).
    preprocessor: optional host-side callable (e.g. ``jaxnets.text.TextVectorizer``)
      mapping a sequence of strings to an ``int32 (batch, length)`` array.
    name: the model's name (the Keras model's, when ported).
    graph: which layers run on which tensors; ``None``: ``layers`` as a chain.
    input_names: names of the inputs (a dict input is read by them); defaults
      to ``input``, ``input_1``...
  """

  def __init__(
    self,
    layers: Sequence[base.Layer],
    params: dict[str, Any],
    *,
    input_shape,
    input_dtype="float32",
    preprocessor=None,
    name: str = "model",
    graph: graph_lib.Graph | None = None,
    input_names: Sequence[str] | None = None,
  ):
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
      raise ValueError(f"layer names must be unique, got {names}")
    self._by_name = {layer.name: layer for layer in layers}
    self.graph = graph_lib.Graph.chain(names) if graph is None else graph
    self.graph.check(self._by_name)
    order = self.graph.chain_order()
    if order is not None:
      # A graph that is a chain is stored as one: layers in order, one per node.
      self.graph = graph_lib.Graph.chain(order)
      layers = [self._by_name[name] for name in order]
    self.layers = tuple(layers)
    count = self.graph.num_inputs
    if count == 1:
      shapes, dtypes = [input_shape], [input_dtype]
    else:
      shapes, dtypes = list(input_shape), input_dtype
      if isinstance(dtypes, str):
        dtypes = [dtypes] * count
      dtypes = list(dtypes)
      if len(shapes) != count or len(dtypes) != count:
        raise ValueError(
          f"the graph takes {count} inputs: give one input_shape and one input_dtype per "
          f"input, got {len(shapes)} shapes and {len(dtypes)} dtypes"
        )
    for dtype in dtypes:
      if dtype not in ("float32", "int32", "string"):
        raise ValueError(f"input_dtype must be float32, int32 or string, got {dtype!r}")
    if ("string" in dtypes) != (preprocessor is not None) or (
      preprocessor is not None and count != 1
    ):
      raise ValueError(
        "a string input needs a preprocessor, and a preprocessor a single string input"
      )
    self.input_shapes = tuple(tuple(None if d is None else int(d) for d in s) for s in shapes)
    self.input_dtypes = tuple(dtypes)
    if input_names is None:
      input_names = ["input"] + [f"input_{i}" for i in range(1, count)]
    self.input_names = tuple(input_names)
    if len(self.input_names) != count or len(set(self.input_names)) != count:
      raise ValueError(f"give {count} distinct input names, got {list(self.input_names)}")
    self.params = jax.tree_util.tree_map(jnp.asarray, dict(params))
    self.preprocessor = preprocessor
    self.name = name
    self._check_params()
    self._forward = jax.jit(self.apply)
    self._fast_forward = jax.jit(self.apply_fast)
    self._has_fast_paths: dict = {}  # per input shapes, found on first use
    self._trims_padding = self._padding_can_be_trimmed()

  def replace(
    self,
    *,
    params: dict[str, Any] | None = None,
    layers: dict[str, base.Layer] | None = None,
    name: str | None = None,
  ) -> "Model":
    """A new model with other ``params`` and/or some layers swapped, keeping
    the graph, input names, shapes, dtypes and preprocessor.

    Args:
      params: ``{layer: {weight: array}}`` for every layer with weights
        (checked like the constructor's); default: these parameters.
      layers: ``{layer name: new layer}``; each new layer must keep its name
        (the graph refers to layers by name).
      name: the new model's name; default: this one's.
    """
    swapped = dict(layers or {})
    unknown = sorted(set(swapped) - set(self._by_name))
    if unknown:
      raise ValueError(f"model {self.name!r} has no layer(s) {unknown}")
    for key, layer in swapped.items():
      if layer.name != key:
        raise ValueError(f"layers[{key!r}] is named {layer.name!r}: a swapped layer keeps its name")
    return Model(
      [swapped.get(layer.name, layer) for layer in self.layers],
      self.params if params is None else params,
      input_shape=self.input_shapes[0] if self.num_inputs == 1 else list(self.input_shapes),
      input_dtype=self.input_dtypes[0] if self.num_inputs == 1 else list(self.input_dtypes),
      preprocessor=self.preprocessor,
      name=self.name if name is None else name,
      graph=self.graph,
      input_names=self.input_names,
    )

  @property
  def num_inputs(self) -> int:
    return self.graph.num_inputs

  @property
  def input_shape(self):
    """One example's shape; a tuple of shapes for a model with several inputs."""
    return self.input_shapes[0] if self.num_inputs == 1 else self.input_shapes

  @property
  def input_dtype(self):
    """The input dtype; a tuple of dtypes for a model with several inputs."""
    return self.input_dtypes[0] if self.num_inputs == 1 else self.input_dtypes

  # ---------------------------------------------------------------- forward
  def apply(self, params, x, *, training: bool = False, rng: jax.Array | None = None):
    """Pure forward pass on a batch of (already tokenised) inputs.

    ``x`` is one array, or a tuple/list of arrays (one per input, in order)
    for a model with several inputs. Returns one array, or the outputs in
    Keras's structure (list or dict) for a model with several outputs.

    At inference the pass takes the speed choices of the platform it is
    compiled for (``jaxnets.settings.per_platform``: the CPU's measured ones
    on a CPU, none elsewhere; a multi-platform ``jax.export`` holds both).
    A training pass takes those of the platform in force (JAX's default
    backend, where the JAX trainer compiles it).
    """
    if training or guards.fast_path_allowed():
      # Inside a caller's guarded fast pass (guards.fast_pass), the pass's own platform
      # decides: a layer's flag must not be raised inside a platform branch.
      return self._apply(params, x, training=training, rng=rng)
    return settings.per_platform(lambda p, v: self._apply(p, v, rng=rng), params, x)

  def _apply(self, params, x, *, training: bool = False, rng: jax.Array | None = None):
    """``apply`` with the choices of ``jaxnets.settings.platform()``."""

    def apply_layer(name, value, mask, count):
      layer = self._by_name[name]
      layer_rng = None if rng is None else jax.random.fold_in(rng, count)
      with jax.named_scope(name):
        return layer.apply(params.get(name, {}), value, mask, training=training, rng=layer_rng)

    tensors = self.graph.run(self._by_name, apply_layer, self._input_tuple(x))
    return self.graph.structure([tensors[t][0] for t in self.graph.outputs])

  def apply_fast(self, params, x):
    """Inference pass through the layers' guarded fast forms (``jaxnets.guards``).

    Returns ``(outputs, needs_exact)``: ``outputs`` as ``apply``'s, and a
    boolean scalar that is true when a layer's fast form may have differed
    from Keras's rule (a NaN or infinite input, an all -inf pooling window);
    ``apply``'s outputs must then be used instead. ``predict`` and
    ``__call__`` do this per batch. Pure and jittable, like ``apply``. The
    fast forms were measured on CPU: compiled for another platform this is
    ``apply`` and a constant false flag (``jaxnets.settings.CPU_MEASURED``).
    """

    def fast(p, v):
      return guards.fast_pass(lambda inputs: self._apply(p, inputs), v)

    return settings.per_platform(fast, params, x)

  def init(self, rng: jax.Array) -> dict[str, Any]:
    """Fresh parameters with Keras's default initialisers (for training)."""
    params: dict[str, Any] = {}
    seen = set()

    def apply_layer(name, value, mask, count):
      layer = self._by_name[name]
      if name not in seen:  # a shared layer is initialised at its first use
        seen.add(name)
        if layer.multiple_inputs:
          shape = tuple(tuple(v.shape[1:]) for v in value)
        else:
          shape = tuple(value.shape[1:])
        layer_params = layer.init(jax.random.fold_in(rng, count), shape)
        if layer_params:
          params[name] = layer_params
      return jax.eval_shape(lambda p, v, m: layer.apply(p, v, m), params.get(name, {}), value, mask)

    self.graph.run(self._by_name, apply_layer, self._input_structs(7, batch=1))
    return params

  def __call__(self, x):
    """Jitted forward pass on one batch (strings are tokenised first)."""
    return self._ordered(self._run(self.prepare_inputs(x)))

  def predict(self, x, batch_size: int = 256):
    """Forward pass over any number of rows, in batches; returns numpy.

    The last partial batch is zero-padded so that only a bounded set of batch
    shapes is ever compiled: ``batch_size`` itself, or the next power of two
    below it for inputs smaller than one batch (so batch-1 latency stays low).
    When more than one device is visible, each batch is sharded across all of
    them (padded to a multiple of the device count). The rows of several
    inputs are batched together.

    When ``trims_padding`` holds, rows run sorted by real length, each batch
    cut to its longest real sequence (rounded up to
    ``jaxnets.batching.LENGTH_BUCKET``); the outputs come back in input order.
    Several outputs come back in Keras's structure (list or dict of arrays).
    """
    batch_size = batching.check_batch_size(batch_size)
    xs = self._input_tuple(self.prepare_inputs(x))
    rows = xs[0].shape[0]
    if rows == 0:
      structs = tuple(jax.ShapeDtypeStruct((1,) + a.shape[1:], a.dtype) for a in xs)
      out = jax.eval_shape(self.apply, self.params, self._model_input(structs))
      return self._ordered(
        jax.tree_util.tree_map(lambda o: np.zeros((0,) + o.shape[1:], o.dtype), out)
      )
    if rows <= batch_size and jax.local_device_count() == 1:
      return self._predict_one_batch(xs, batch_size)
    batcher = batching.Batcher(
      xs[0], batch_size, per_row=xs[1:], trim=self._trims_padding, shrink_partial=True
    )
    order = batcher.length_order()
    # Dispatch every batch before reading any back: host work overlaps compute.
    pending = [
      (self._run(self._model_input(batch.arrays), wait=False), batch.rows)
      for batch in batcher(order)
    ]
    pending = [(self._exact_if_flagged(*dispatched), rows) for dispatched, rows in pending]
    treedef = jax.tree_util.tree_structure(pending[0][0])
    leaves = [jax.tree_util.tree_leaves(y) for y, _ in pending]
    outs = [
      batching.unsort(
        np.concatenate([np.asarray(l[i])[:r] for l, (_, r) in zip(leaves, pending)]), order
      )
      for i in range(treedef.num_leaves)
    ]
    return self._ordered(jax.tree_util.tree_unflatten(treedef, outs))

  def _predict_one_batch(self, xs: tuple, batch_size: int):
    """``predict`` of rows that fit in one batch on one device, with no sort,
    unsort or concatenate (the same padded shapes and cut as the general path)."""
    rows = xs[0].shape[0]
    if self._trims_padding:
      longest = int(batching.real_lengths(xs[0]).max())
      xs = (xs[0][:, : batching.bucketed_length(longest, xs[0].shape[1])],)
    missing = batching.padded_rows(rows, batch_size, 1, shrink_partial=True) - rows
    if missing:
      xs = tuple(np.concatenate([a, np.zeros((missing,) + a.shape[1:], a.dtype)]) for a in xs)
    out = self._run(self._model_input(xs))
    return self._ordered(jax.tree_util.tree_map(lambda y: np.asarray(y)[:rows], out))

  def _run(self, x, *, wait: bool = True):
    """One jitted batch: the guarded fast pass, redone exactly when it flags.

    With ``wait=False`` returns ``(outputs, needs_exact, x)`` without reading
    the flag, so further batches can be dispatched first; finish with
    ``_exact_if_flagged``.
    """
    if not (self.has_fast_paths(x) and settings.current().guard_fast_paths):
      out, needs_exact = self._forward(self.params, x), None
    else:
      out, needs_exact = self._fast_forward(self.params, x)
    return (out, needs_exact, x) if not wait else self._exact_if_flagged(out, needs_exact, x)

  def has_fast_paths(self, x) -> bool:
    """Whether any layer takes a guarded fast form on inputs shaped like ``x``.

    Layers choose by shape (``jaxnets.settings.fast_pool_min_floats``); when
    none does, ``apply_fast`` is ``apply`` plus a constant flag, and
    ``predict`` runs ``apply`` alone. Found once per input shape.
    """
    shapes = tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(x))
    if shapes not in self._has_fast_paths:
      # For the platform predict runs on (JAX's default backend): elsewhere than on a CPU
      # there is no fast form, hence no second program and no flag read per batch.
      self._has_fast_paths[shapes] = guards.has_fast_paths(
        lambda inputs: self._apply(self.params, inputs), x
      )
    return self._has_fast_paths[shapes]

  def _exact_if_flagged(self, out, needs_exact, x):
    if needs_exact is not None and bool(needs_exact):
      return self._forward(self.params, x)
    return out

  def _ordered(self, out):
    """A dict output in Keras's key order (jax returns pytree dicts sorted by key)."""
    names = self.graph.output_names
    return out if names is None else {name: out[name] for name in names}

  @property
  def trims_padding(self) -> bool:
    """Whether padded text batches may be cut to their longest real sequence.

    True for a single-input model whose padding mask comes from zero token
    ids (every layer reading the input is an Embedding with ``mask_zero`` or
    the ``ids != 0`` mask Keras records for one),
    whose layers all leave what they pass on unchanged when trailing masked
    steps are dropped (``trailing_padding_safe``), and whose outputs have no
    time axis. Padding is at the end and a masked step leaves the state
    untouched, so a cut batch gives identical numbers.
    """
    return self._trims_padding

  def prepare_inputs(self, x):
    """Validates a batch on the host and returns it as numpy.

    Strings go through the preprocessor (token ids ``int32 (batch, length)``);
    numbers are checked against the input spec and cast to ``float32`` or
    ``int32``; the layers reading an input check its values (e.g. token ids in
    range). Several inputs: a list/tuple in input order or a dict keyed by
    ``input_names``, returned as a tuple of arrays with equal row counts.
    Raises ``InputError`` naming what was expected.
    """
    if self.preprocessor is not None:
      arrays = [np.asarray(self.preprocessor(self._strings(x)), np.int32)]
    elif self.num_inputs == 1:
      arrays = [self._numeric(x, self.input_shapes[0], self.input_dtypes[0], "input")]
    else:
      arrays = [
        self._numeric(v, shape, dtype, f"input {name!r}")
        for v, shape, dtype, name in zip(
          self._split_inputs(x), self.input_shapes, self.input_dtypes, self.input_names
        )
      ]
      counts = {a.shape[0] for a in arrays}
      if len(counts) != 1:
        raise InputError(
          f"model {self.name!r}: the inputs have different numbers of rows "
          f"{[a.shape[0] for a in arrays]}"
        )
    for node in self.graph.nodes:
      first = self._by_name[node.layers[0]]
      if not first.multiple_inputs and node.inputs[0] < self.num_inputs:
        first.check_input(arrays[node.inputs[0]])
    return arrays[0] if self.num_inputs == 1 else tuple(arrays)

  # ------------------------------------------------------------- inspection
  def summary(self) -> str:
    """A Keras-like table: layer (class), output shape, parameter count (and,
    for a graph that is not a chain, the layers each node reads)."""
    applications = self._applications()
    chain = self.graph.is_chain
    header = ("Layer (type)", "Output Shape", "Param #") + (() if chain else ("Connected to",))
    rows = [header]
    total, counted = 0, set()
    for name, shape, sources in applications:
      layer = self._by_name[name]
      count = 0
      if name not in counted:
        counted.add(name)
        count = sum(
          int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(self.params.get(name, {}))
        )
      total += count
      row = (f"{name} ({type(layer).__name__})", str(shape), f"{count:,}")
      rows.append(row + (() if chain else (", ".join(sources),)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    line = "-" * (sum(widths) + 2 * len(header))
    text = [f'Model: "{self.name}"', line]
    for i, row in enumerate(rows):
      text.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
      if i == 0:
        text.append(line)
    text += [line, f"Total params: {total:,}", f"Input: {self._input_description()}"]
    if not self.graph.single_output:
      text.append(f"Outputs: {self._output_description()}")
    if self.preprocessor is not None:
      text.append(f"Preprocessor: {self.preprocessor!r}")
    return "\n".join(text)

  @property
  def param_count(self) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(self.params))

  # ------------------------------------------------------------ persistence
  def save(self, directory: str | os.PathLike) -> str:
    """Writes ``architecture.json`` and an orbax checkpoint of the params.

    The folder is replaced as a whole (``jaxnets.saving``): a save that fails
    leaves the previous model there, never a mix of the two. Returns the
    folder's absolute path.
    """
    architecture = {
      "name": self.name,
      "input_shape": list(self.input_shapes[0]),
      "input_dtype": self.input_dtypes[0],
      "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers],
      "preprocessor": None
      if self.preprocessor is None
      else {"class": type(self.preprocessor).__name__, "config": self.preprocessor.get_config()},
      "graph": self.graph.get_config(),
      "inputs": [
        {"name": n, "shape": list(s), "dtype": d}
        for n, s, d in zip(self.input_names, self.input_shapes, self.input_dtypes)
      ],
    }
    params = jax.tree_util.tree_map(np.asarray, self.params)
    return saving.write_folder(directory, architecture, params)

  def export(self, path: str | os.PathLike) -> str:
    """Writes a deployable folder (``jaxnets.export``): the forward pass as
    StableHLO with a symbolic batch dimension, the parameters and, for a text
    model, the preprocessor's config; ``jaxnets.load_exported`` runs it without
    the layer code. Returns the folder's absolute path."""
    return export_lib.export(self, path)

  def expected_params(self) -> dict[str, Any]:
    """``{layer: {weight: ShapeDtypeStruct}}`` that the layers' hyper-parameters imply."""
    return jax.eval_shape(self.init, jax.random.key(0))

  # -------------------------------------------------------------- internals
  def _check_params(self) -> None:
    """Every layer's weights have the names, shapes and dtypes its options imply.

    Raises one ``ValueError`` listing every difference (missing, unexpected or
    mis-shaped weights), so a model never runs on parameters that broadcast
    or index their way into a wrong answer.
    """
    try:
      expected = self.expected_params()
    except Exception as e:  # a layer rejecting the shape it is given
      raise ValueError(
        f"model {self.name!r}: the layers do not fit together on input "
        f"{self._input_description()}: {type(e).__name__}: {e}"
      ) from None
    problems = []

    def compare(where: str, want, got) -> None:
      if isinstance(want, dict) or isinstance(got, dict):
        if not isinstance(want, dict) or not isinstance(got, dict):
          problems.append(f"{where}: expected {_describe(want)}, found {_describe(got)}")
          return
        for key in sorted(set(want) | set(got), key=str):
          if key not in got:
            problems.append(f"{where}/{key}: missing (expected {_describe(want[key])})")
          elif key not in want:
            problems.append(f"{where}/{key}: unexpected weight {_describe(got[key])}")
          else:
            compare(f"{where}/{key}", want[key], got[key])
        return
      if tuple(want.shape) != tuple(got.shape) or want.dtype != got.dtype:
        problems.append(f"{where}: expected {_describe(want)}, found {_describe(got)}")

    for layer in self.layers:
      compare(
        f"layer {layer.name!r}", expected.get(layer.name, {}), self.params.get(layer.name, {})
      )
    for name in sorted(set(self.params) - set(self._by_name)):
      problems.append(f"parameters for {name!r}, which is not a layer of the model")
    if problems:
      raise ValueError(
        f"model {self.name!r}: parameters do not match the architecture:\n  - "
        + "\n  - ".join(problems)
      )

  def _input_tuple(self, x) -> tuple:
    """The model's input(s) as a tuple of arrays (``apply`` takes one array or a tuple)."""
    if self.num_inputs == 1:
      return (x,)
    if isinstance(x, dict):
      return tuple(x[n] for n in self.input_names)
    if not isinstance(x, (tuple, list)) or len(x) != self.num_inputs:
      raise InputError(
        f"model {self.name!r} takes {self.num_inputs} inputs {list(self.input_names)}: "
        "give a list/tuple in that order or a dict keyed by those names"
      )
    return tuple(x)

  def _model_input(self, arrays: Sequence) -> Any:
    """What ``apply`` takes: one array, or a tuple of them."""
    return arrays[0] if self.num_inputs == 1 else tuple(arrays[: self.num_inputs])

  def _split_inputs(self, x) -> list:
    if isinstance(x, dict):
      missing = [n for n in self.input_names if n not in x]
      extra = sorted(set(x) - set(self.input_names), key=str)
      if missing or extra:
        raise InputError(
          f"model {self.name!r} takes inputs {list(self.input_names)}; "
          f"missing {missing}, unexpected {extra}"
        )
      return [x[n] for n in self.input_names]
    if not isinstance(x, (list, tuple)) or len(x) != self.num_inputs:
      raise InputError(
        f"model {self.name!r} takes {self.num_inputs} inputs {list(self.input_names)}: "
        f"give a list/tuple in that order or a dict keyed by those names, got {type(x).__name__}"
      )
    return list(x)

  def _concrete_shapes(self, free_dim: int) -> list[tuple[int, ...]]:
    if self.preprocessor is not None:
      length = getattr(self.preprocessor, "output_sequence_length", None)
      return [(length or free_dim,)]
    return [tuple(free_dim if d is None else d for d in s) for s in self.input_shapes]

  def _input_structs(self, free_dim: int, batch: int) -> list[jax.ShapeDtypeStruct]:
    return [
      jax.ShapeDtypeStruct((batch,) + shape, jnp.float32 if dtype == "float32" else jnp.int32)
      for shape, dtype in zip(self._concrete_shapes(free_dim), self.input_dtypes)
    ]

  def _input_description(self) -> str:
    if self.preprocessor is not None:
      return "strings (batch,)"
    parts = [
      f"{dtype} {('batch',) + shape}".replace("'", "")
      for shape, dtype in zip(self.input_shapes, self.input_dtypes)
    ]
    if self.num_inputs == 1:
      return parts[0]
    return ", ".join(f"{n}: {p}" for n, p in zip(self.input_names, parts))

  def _output_description(self) -> str:
    shapes = self._tensor_shapes()
    parts = [str(shapes[t]) for t in self.graph.outputs]
    if self.graph.output_names is not None:
      return "{" + ", ".join(f"{n}: {p}" for n, p in zip(self.graph.output_names, parts)) + "}"
    return "[" + ", ".join(parts) + "]"

  def _shape_walk(self, free_dim: int):
    """Shapes of every layer application and every tensor at one free-dim size."""
    applications = []

    def apply_layer(name, value, mask, count):
      del count
      layer = self._by_name[name]
      out = jax.eval_shape(
        lambda p, v, m: layer.apply(p, v, m), self.params.get(name, {}), value, mask
      )
      applications.append(out[0].shape)
      return out

    tensors = self.graph.run(self._by_name, apply_layer, self._input_structs(free_dim, batch=2))
    return applications, [t[0].shape for t in tensors]

  def _tensor_shapes(self) -> list[tuple]:
    """Shape of every tensor; dims that vary with a free input dim are None."""
    first, second = self._shape_walk(7)[1], self._shape_walk(11)[1]
    return [_merged(a, b) for a, b in zip(first, second)]

  def _applications(self) -> list[tuple[str, tuple, list[str]]]:
    """``(layer name, output shape, names of what it reads)`` per layer application."""
    first, second = self._shape_walk(7)[0], self._shape_walk(11)[0]
    shapes = iter(_merged(a, b) for a, b in zip(first, second))
    producers = list(self.input_names)
    out = []
    for node in self.graph.nodes:
      sources = [producers[t] for t in node.inputs]
      for name in node.layers:
        out.append((name, next(shapes), sources))
        sources = [name]
      producers.append(node.layers[-1])
    return out

  def _padding_can_be_trimmed(self) -> bool:
    if self.num_inputs != 1 or self.input_dtypes[0] == "float32" or not self.layers:
      return False
    readers = [self._by_name[n.layers[0]] for n in self.graph.nodes if 0 in n.inputs]
    # Each reader masks the padding: an Embedding(mask_zero), or the ids != 0
    # Keras records for one in a functional graph.
    masking = ("mask_zero", "masks_padding")
    if not readers or not all(any(getattr(l, a, False) for a in masking) for l in readers):
      return False
    # Read on the instance: a layer may refine its class's value by its options
    # (e.g. a recurrent layer returning a reversed sequence is not safe).
    if not all(layer.trailing_padding_safe for layer in self.layers):
      return False
    shapes = self._tensor_shapes()
    return all(len(shapes[t]) == 2 for t in self.graph.outputs)  # no time axis in the outputs

  def _strings(self, x) -> list[str]:
    if isinstance(x, str):
      raise InputError(
        f"model {self.name!r} takes a batch of strings (a list), "
        "got a single str; wrap it in a list"
      )
    array = np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    if array.ndim == 2 and array.shape[1] == 1:
      array = array[:, 0]  # Keras's (batch, 1) string layout
    if array.ndim != 1:
      raise InputError(
        f"model {self.name!r} takes a 1-D batch of strings, got an array of shape {array.shape}"
      )
    values = []
    for i, item in enumerate(array):
      if isinstance(item, bytes):
        try:
          item = item.decode("utf-8")
        except UnicodeDecodeError as e:
          raise InputError(
            f"model {self.name!r} takes UTF-8 text; item {i} is not valid UTF-8 "
            f"(byte {e.start}: {item[e.start : e.start + 4]!r})"
          ) from None
      if not isinstance(item, str):
        raise InputError(
          f"model {self.name!r} takes strings; item {i} is {type(item).__name__}: {item!r:.60}"
        )
      values.append(item)
    return values

  def _numeric(self, x, shape: tuple, dtype: str, what: str) -> np.ndarray:
    """One numeric input checked against its spec (``what`` names it in errors)."""
    where = f"model {self.name!r}" if self.num_inputs == 1 else f"model {self.name!r} {what}"
    if isinstance(x, jax.Array):
      x = np.asarray(x)
    try:
      x = np.asarray(x)
    except ValueError:
      raise InputError(f"{where}: {_ragged_description(x)}") from None
    if x.dtype == object:
      raise InputError(f"{where}: {_ragged_description(x)}")
    expected = ("batch",) + shape
    if x.dtype.kind not in "biuf":
      raise InputError(
        f"{where} expects numeric {dtype} input of shape {expected}, got dtype {x.dtype}"
      )
    if x.ndim != len(expected):
      raise InputError(
        f"{where} expects input of rank {len(expected)} "
        f"{expected}, got shape {x.shape} (rank {x.ndim})"
      )
    for axis, (want, got) in enumerate(zip(shape, x.shape[1:]), start=1):
      if want is not None and want != got:
        raise InputError(
          f"{where} expects input of shape {expected}; axis {axis} has size {got}, expected {want}"
        )
    if dtype == "int32":
      if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
          raise InputError(f"{where} expects integer token ids, got non-integer {x.dtype} values")
      if x.size and x.dtype.itemsize * 8 > 32 or x.dtype.kind == "u" and x.dtype.itemsize >= 4:
        # Checked before the cast: int64 ids past the int32 range would wrap
        # around into ids that look valid.
        info = np.iinfo(np.int32)
        outside = (x < info.min) | (x > info.max)
        if outside.any():
          position = tuple(int(i) for i in np.argwhere(outside)[0])
          raise InputError(
            f"{where}: token id {x[position]} at position {position} does not "
            f"fit in int32 ({int(outside.sum())} such id(s)); no vocabulary is that large"
          )
      return x.astype(np.int32, copy=False)
    # copy=False: a float32 batch is used as given (no copy of a large input).
    return x.astype(np.float32, copy=False)


def _merged(a: tuple, b: tuple) -> tuple:
  """A shape at two free-dim sizes -> batch None, differing dims None."""
  return (None,) + tuple(x if x == y else None for x, y in zip(a[1:], b[1:]))


def _ragged_description(x) -> str:
  """Names the first row of a nested Python list whose length differs from row 0's."""
  try:
    rows = list(x)
    first = len(rows[0])
    for i, row in enumerate(rows):
      if len(row) != first:
        return (
          f"the input is ragged: row {i} has length {len(row)}, row 0 has {first}; "
          "pad the rows to one length (or pass a numpy array)"
        )
  except TypeError:
    pass
  return "the input is not a rectangular numeric array (ragged rows or mixed types)"


def _describe(value) -> str:
  if isinstance(value, dict):
    return f"a group of weights {sorted(value)}"
  return f"{tuple(value.shape)} {value.dtype}"


def load(directory: str | os.PathLike) -> Model:
  """Loads a model written by ``Model.save``; needs JAX (and orbax) only.

  Everything is checked before the model is returned: the architecture file's
  structure and every layer's options, then every parameter's name, shape and
  dtype against what the architecture implies, and that the parameters are the
  ones saved with this architecture. Any difference raises
  ``jaxnets.saving.SavedModelError`` (a ``ValueError``) naming the folder, the
  layer and the weight. A save that replaces the folder while it is read makes
  the read start over (a few times), rather than report the two parts as edited.
  """
  directory = os.path.abspath(os.fspath(directory))
  for attempt in range(3):
    before = saving.folder_identity(directory)
    try:
      return _load_once(directory)
    except (saving.SavedModelError, FileNotFoundError):
      if attempt == 2 or saving.folder_identity(directory) == before:
        raise
  raise AssertionError("unreachable")


def _load_once(directory: str) -> Model:
  arch = saving.read_architecture(directory)

  def rebuild(where: str, spec: dict):
    try:
      return base.layer_class(spec["class"]).from_config(spec["config"])
    except (TypeError, ValueError, KeyError) as e:
      raise saving.SavedModelError(
        f"saved model {directory}: {saving.ARCHITECTURE_FILE} {where} ({spec['class']}): {e}"
      ) from None

  layers = [rebuild(f"layers[{i}]", spec) for i, spec in enumerate(arch["layers"])]
  preprocessor = None
  if arch.get("preprocessor") is not None:
    preprocessor = rebuild("preprocessor", arch["preprocessor"])

  def build(params) -> Model:
    try:
      graph = None
      if arch.get("graph") is not None:  # folders saved before graphs hold a chain
        graph = graph_lib.Graph.from_config(arch["graph"])
      inputs = arch.get("inputs")
      if inputs is not None and len(inputs) > 1:
        shape, dtype = [i["shape"] for i in inputs], [i["dtype"] for i in inputs]
      else:
        shape, dtype = arch["input_shape"], arch["input_dtype"]
      return Model(
        layers,
        params,
        input_shape=shape,
        input_dtype=dtype,
        preprocessor=preprocessor,
        name=arch.get("name", "model"),
        graph=graph,
        input_names=None if inputs is None else [i["name"] for i in inputs],
      )
    except ValueError as e:
      raise saving.SavedModelError(f"saved model {directory}: {e}") from None

  # Every size params/ declares is checked against the layers before a byte
  # is allocated: a folder declaring a huge array is refused, not restored.
  jax.eval_shape(lambda p: build(p).params, saving.declared_params(directory, arch))
  return build(saving.read_params(directory, arch))
