"""A jaxnets model: an ordered chain of layers, compiled as one function.

``Model`` holds the layers (hyper-parameters), their parameters (a dict keyed
by layer name whose leaves carry Keras's weight names) and an input spec, and
offers what a user of a Keras model expects:

- ``model(x)``: the jitted forward pass on one batch (a ``jax.Array``).
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
from jaxnets import saving
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
  """An ordered composition of jaxnets layers.

  Args:
    layers: the layers, applied in order.
    params: ``{layer_name: {weight_name: array}}`` for every layer with weights.
    input_shape: one example's shape (no batch axis); ``None`` marks a free
      dimension (e.g. sequence length).
    input_dtype: ``"float32"`` for images/features, ``"int32"`` for token ids,
      ``"string"`` when ``preprocessor`` turns raw strings into token ids.
    preprocessor: optional host-side callable (e.g. ``jaxnets.text.TextVectorizer``)
      mapping a sequence of strings to an ``int32 (batch, length)`` array.
    name: the model's name (the Keras model's, when ported).
  """

  def __init__(
    self,
    layers: Sequence[base.Layer],
    params: dict[str, Any],
    *,
    input_shape: Sequence[int | None],
    input_dtype: str = "float32",
    preprocessor=None,
    name: str = "model",
  ):
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
      raise ValueError(f"layer names must be unique, got {names}")
    if input_dtype not in ("float32", "int32", "string"):
      raise ValueError(f"input_dtype must be float32, int32 or string, got {input_dtype!r}")
    if (input_dtype == "string") != (preprocessor is not None):
      raise ValueError("a string input needs a preprocessor, and a preprocessor a string input")
    self.layers = tuple(layers)
    self.params = jax.tree_util.tree_map(jnp.asarray, dict(params))
    self.input_shape = tuple(None if d is None else int(d) for d in input_shape)
    self.input_dtype = input_dtype
    self.preprocessor = preprocessor
    self.name = name
    self._check_params()
    self._forward = jax.jit(self.apply)
    self._trims_padding = self._padding_can_be_trimmed()

  # ---------------------------------------------------------------- forward
  def apply(self, params, x, *, training: bool = False, rng: jax.Array | None = None):
    """Pure forward pass: ``x`` is a batch of (already tokenised) inputs."""
    mask = None
    for index, layer in enumerate(self.layers):
      layer_rng = None if rng is None else jax.random.fold_in(rng, index)
      x, mask = layer.apply(params.get(layer.name, {}), x, mask, training=training, rng=layer_rng)
    return x

  def init(self, rng: jax.Array) -> dict[str, Any]:
    """Fresh parameters with Keras's default initialisers (for training)."""
    params = {}
    shape = self._concrete_input_shape(7)
    x = jax.ShapeDtypeStruct((1,) + shape, self._compute_dtype)
    mask = None
    for index, layer in enumerate(self.layers):
      layer_params = layer.init(jax.random.fold_in(rng, index), tuple(x.shape[1:]))
      if layer_params:
        params[layer.name] = layer_params
      x, mask = jax.eval_shape(
        lambda p, v, m, layer=layer: layer.apply(p, v, m), layer_params, x, mask
      )
    return params

  def __call__(self, x) -> jax.Array:
    """Jitted forward pass on one batch (strings are tokenised first)."""
    x = self.prepare_inputs(x)
    return self._forward(self.params, jnp.asarray(x))

  def predict(self, x, batch_size: int = 256) -> np.ndarray:
    """Forward pass over any number of rows, in batches; returns numpy.

    The last partial batch is zero-padded so that only a bounded set of batch
    shapes is ever compiled: ``batch_size`` itself, or the next power of two
    below it for inputs smaller than one batch (so batch-1 latency stays low).
    When more than one device is visible, each batch is sharded across all of
    them (padded to a multiple of the device count).

    When ``trims_padding`` holds, rows run sorted by real length, each batch
    cut to its longest real sequence (rounded up to
    ``jaxnets.batching.LENGTH_BUCKET``); the outputs come back in input order.
    """
    batch_size = batching.check_batch_size(batch_size)
    x = self.prepare_inputs(x)
    if x.shape[0] == 0:
      out = jax.eval_shape(
        self.apply, self.params, jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype)
      )
      return np.zeros((0,) + out.shape[1:], out.dtype)
    if x.shape[0] <= batch_size and jax.local_device_count() == 1:
      return self._predict_one_batch(x, batch_size)
    batcher = batching.Batcher(x, batch_size, trim=self._trims_padding, shrink_partial=True)
    order = batcher.length_order()
    # Dispatch every batch before reading any back: host work overlaps compute.
    pending = [
      (self._forward(self.params, batch.arrays[0]), batch.rows) for batch in batcher(order)
    ]
    out = np.concatenate([np.asarray(y)[:rows] for y, rows in pending])
    return batching.unsort(out, order)

  def _predict_one_batch(self, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``predict`` of rows that fit in one batch on one device, with no sort,
    unsort or concatenate (the same padded shapes and cut as the general path)."""
    rows = x.shape[0]
    if self._trims_padding:
      longest = int(batching.real_lengths(x).max())
      x = x[:, : batching.bucketed_length(longest, x.shape[1])]
    missing = batching.padded_rows(rows, batch_size, 1, shrink_partial=True) - rows
    if missing:
      x = np.concatenate([x, np.zeros((missing,) + x.shape[1:], x.dtype)])
    return np.asarray(self._forward(self.params, x))[:rows]

  @property
  def trims_padding(self) -> bool:
    """Whether padded text batches may be cut to their longest real sequence.

    True for a model whose padding mask comes from zero token ids (a first
    Embedding with ``mask_zero``), whose layers all leave what they pass on
    unchanged when trailing masked steps are dropped (``trailing_padding_safe``),
    and whose output has no time axis. Padding is at the end and a masked step
    leaves the state untouched, so a cut batch gives identical numbers.
    """
    return self._trims_padding

  def prepare_inputs(self, x) -> np.ndarray:
    """Validates a batch on the host and returns it as a numpy array.

    Strings go through the preprocessor (token ids ``int32 (batch, length)``);
    numbers are checked against the input spec and cast to ``float32`` or
    ``int32``; the first layer checks the values (e.g. token ids in range).
    Raises ``InputError`` naming what was expected.
    """
    if self.preprocessor is not None:
      x = self._strings(x)
      x = np.asarray(self.preprocessor(x), np.int32)
    else:
      x = self._numeric(x)
    if self.layers:
      self.layers[0].check_input(x)
    return x

  # Kept for tests/parity.py until it calls prepare_inputs; not API.

  # ------------------------------------------------------------- inspection
  def summary(self) -> str:
    """A Keras-like table: layer (class), output shape, parameter count."""
    shapes = self._layer_output_shapes()
    rows = [("Layer (type)", "Output Shape", "Param #")]
    total = 0
    for layer, shape in zip(self.layers, shapes):
      count = sum(
        int(np.prod(leaf.shape))
        for leaf in jax.tree_util.tree_leaves(self.params.get(layer.name, {}))
      )
      total += count
      rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{count:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "-" * (sum(widths) + 6)
    text = [f'Model: "{self.name}"', line]
    for i, row in enumerate(rows):
      text.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
      if i == 0:
        text.append(line)
    text += [line, f"Total params: {total:,}", f"Input: {self._input_description()}"]
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
      "input_shape": list(self.input_shape),
      "input_dtype": self.input_dtype,
      "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers],
      "preprocessor": None
      if self.preprocessor is None
      else {"class": type(self.preprocessor).__name__, "config": self.preprocessor.get_config()},
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

    names = {layer.name for layer in self.layers}
    for layer in self.layers:
      compare(
        f"layer {layer.name!r}", expected.get(layer.name, {}), self.params.get(layer.name, {})
      )
    for name in sorted(set(self.params) - names):
      problems.append(f"parameters for {name!r}, which is not a layer of the model")
    if problems:
      raise ValueError(
        f"model {self.name!r}: parameters do not match the architecture:\n  - "
        + "\n  - ".join(problems)
      )

  @property
  def _compute_dtype(self):
    return jnp.float32 if self.input_dtype == "float32" else jnp.int32

  def _concrete_input_shape(self, free_dim: int) -> tuple[int, ...]:
    if self.preprocessor is not None:
      length = getattr(self.preprocessor, "output_sequence_length", None)
      return (length or free_dim,)
    return tuple(free_dim if d is None else d for d in self.input_shape)

  def _input_description(self) -> str:
    if self.preprocessor is not None:
      return "strings (batch,)"
    return f"{self.input_dtype} {('batch',) + self.input_shape}".replace("'", "")

  def _layer_output_shapes(self) -> list[tuple]:
    """Output shape of every layer; dims that vary with a free input dim are None."""

    def shapes_for(free_dim):
      x = jax.ShapeDtypeStruct((2,) + self._concrete_input_shape(free_dim), self._compute_dtype)
      mask, result = None, []
      for layer in self.layers:
        x, mask = jax.eval_shape(
          lambda p, v, m, layer=layer: layer.apply(p, v, m),
          self.params.get(layer.name, {}),
          x,
          mask,
        )
        result.append(x.shape)
      return result

    first, second = shapes_for(7), shapes_for(11)
    return [
      (None,) + tuple(a if a == b else None for a, b in zip(s1[1:], s2[1:]))
      for s1, s2 in zip(first, second)
    ]

  def _padding_can_be_trimmed(self) -> bool:
    if self.input_dtype == "float32" or not self.layers:
      return False
    if not getattr(self.layers[0], "mask_zero", False):
      return False
    # Read on the instance: a layer may refine its class's value by its options
    # (e.g. a recurrent layer returning a reversed sequence is not safe).
    if not all(layer.trailing_padding_safe for layer in self.layers):
      return False
    return len(self._layer_output_shapes()[-1]) == 2  # no time axis in the output

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

  def _numeric(self, x) -> np.ndarray:
    if isinstance(x, jax.Array):
      x = np.asarray(x)
    try:
      x = np.asarray(x)
    except ValueError:
      raise InputError(f"model {self.name!r}: {_ragged_description(x)}") from None
    if x.dtype == object:
      raise InputError(f"model {self.name!r}: {_ragged_description(x)}")
    expected = ("batch",) + self.input_shape
    if x.dtype.kind not in "biuf":
      raise InputError(
        f"model {self.name!r} expects numeric {self.input_dtype} input "
        f"of shape {expected}, got dtype {x.dtype}"
      )
    if x.ndim != len(expected):
      raise InputError(
        f"model {self.name!r} expects input of rank {len(expected)} "
        f"{expected}, got shape {x.shape} (rank {x.ndim})"
      )
    for axis, (want, got) in enumerate(zip(self.input_shape, x.shape[1:]), start=1):
      if want is not None and want != got:
        raise InputError(
          f"model {self.name!r} expects input of shape {expected}; "
          f"axis {axis} has size {got}, expected {want}"
        )
    if self.input_dtype == "int32":
      if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
          raise InputError(
            f"model {self.name!r} expects integer token ids, got non-integer {x.dtype} values"
          )
      if x.size and x.dtype.itemsize * 8 > 32 or x.dtype.kind == "u" and x.dtype.itemsize >= 4:
        # Checked before the cast: int64 ids past the int32 range would wrap
        # around into ids that look valid.
        info = np.iinfo(np.int32)
        outside = (x < info.min) | (x > info.max)
        if outside.any():
          position = tuple(int(i) for i in np.argwhere(outside)[0])
          raise InputError(
            f"model {self.name!r}: token id {x[position]} at position {position} does not "
            f"fit in int32 ({int(outside.sum())} such id(s)); no vocabulary is that large"
          )
      return x.astype(np.int32, copy=False)
    # copy=False: a float32 batch is used as given (no copy of a large input).
    return x.astype(np.float32, copy=False)


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
  layer and the weight.
  """
  directory = os.path.abspath(os.fspath(directory))
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
  params = saving.read_params(directory, arch)
  try:
    return Model(
      layers,
      params,
      input_shape=arch["input_shape"],
      input_dtype=arch["input_dtype"],
      preprocessor=preprocessor,
      name=arch.get("name", "model"),
    )
  except ValueError as e:
    raise saving.SavedModelError(f"saved model {directory}: {e}") from None
