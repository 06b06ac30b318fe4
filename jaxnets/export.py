"""A deployable artifact: the compiled forward pass as StableHLO, plus the weights.

    model.export("lstm_exported/")                    # jaxnets.Model.export
    exported = jaxnets.load_exported("lstm_exported/")
    exported.predict(["saya suka makanan ini"])       # any batch size

The folder holds:

- ``forward.jaxexport``: ``jax.export`` serialisation of the jitted
  ``model.apply(params, x)`` (StableHLO, lowered for CPU and CUDA), with a
  symbolic batch dimension (and symbolic free dimensions, e.g. a text model's
  sequence length), so one artifact serves every batch size;
- ``params.npz``: the parameters, passed to it as arguments (kept out of the
  StableHLO so the artifact stays small and the weights stay inspectable);
- ``export.json``: input spec, parameter paths, the preprocessor's config
  (a text model's ``TextVectorizer``: vocabulary, standardisation, split), and
  the JAX version that wrote it.

Running it needs jax/jaxlib (a version that can deserialise the artifact:
``jax.export`` keeps backward compatibility for about six months), numpy, and,
for text models, ``jaxnets.text.TextVectorizer`` to turn strings into token
ids — reused on purpose rather than reimplemented, since it is the tested
equal of Keras's ``TextVectorization``. No jaxnets layer code runs: the
computation is the deserialised StableHLO.
"""

import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from jaxnets import settings
from jaxnets import text
from jaxnets.errors import InputError

__all__ = ["EXPORT_FILE", "META_FILE", "PARAMS_FILE", "ExportedModel", "export", "load_exported"]

EXPORT_FILE = "forward.jaxexport"
PARAMS_FILE = "params.npz"
META_FILE = "export.json"
FORMAT = "jaxnets-export"
FORMAT_VERSION = 1
PLATFORMS = ("cpu", "cuda")
# An upper bound on the symbolic batch that is no real limit, stated so that
# layers comparing the batch with a block size get a conclusive answer.
MAX_BATCH = 2**30


def _symbolic_input(model) -> jax.ShapeDtypeStruct:
  """``(b, *input_shape)`` with ``b`` and every free dimension symbolic."""
  if model.preprocessor is not None:
    length = model.preprocessor.output_sequence_length
    dims, dtype = ["b", "t" if length is None else str(length)], np.int32
  else:
    dims = ["b"] + [f"d{i}" if d is None else str(d) for i, d in enumerate(model.input_shape, 1)]
    dtype = np.float32 if model.input_dtype == "float32" else np.int32
  shape = jax_export.symbolic_shape(", ".join(dims), constraints=(f"b <= {MAX_BATCH}",))
  return jax.ShapeDtypeStruct(shape, dtype)


def _flatten(params: dict) -> tuple[list[list[str]], list[np.ndarray]]:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return [[k.key for k in path] for path, _ in leaves], [np.asarray(v) for _, v in leaves]


def _unflatten(paths: list[list[str]], arrays: list[np.ndarray]) -> dict:
  params: dict[str, Any] = {}
  for path, array in zip(paths, arrays):
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = array
  return params


def export(model, path: str | os.PathLike, *, platforms=PLATFORMS) -> str:
  """Writes ``model`` (a ``jaxnets.Model``) as a deployable folder; returns its path.

  Traced with the direct convolution and one row block per recurrent layer
  (``jaxnets.settings``; the same numbers): the automatic choices compare the
  batch size with thresholds, which a symbolic batch cannot answer. An
  existing export folder at ``path`` is replaced as a whole.
  """
  if model.num_inputs != 1 or not model.graph.single_output:
    raise ValueError(
      f"model {model.name!r}: export supports models with one input and one output; this one "
      f"has {model.num_inputs} input(s) and {len(model.graph.outputs)} output(s)"
    )
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path) and not os.path.isfile(os.path.join(path, META_FILE)):
    if os.path.isfile(path) or os.listdir(path):
      raise ValueError(f"cannot export to {path}: it exists and is not an export folder")
  x_spec = _symbolic_input(model)
  params_spec = jax.tree_util.tree_map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model.params
  )

  def forward(params, x):
    return model.apply(params, x)

  with settings.override(conv_algorithm="direct", rnn_row_block_floats=2**62):
    exported = jax_export.export(jax.jit(forward), platforms=platforms)(params_spec, x_spec)
  paths, arrays = _flatten(model.params)
  meta = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "name": model.name,
    "input_shape": list(model.input_shape),
    "input_dtype": model.input_dtype,
    "preprocessor": None if model.preprocessor is None else model.preprocessor.get_config(),
    "param_paths": paths,
    "platforms": list(platforms),
    "jax_version": jax.__version__,
  }
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.export-")
  try:
    with open(os.path.join(tmp, EXPORT_FILE), "wb") as f:
      f.write(exported.serialize())
    np.savez(os.path.join(tmp, PARAMS_FILE), *arrays)
    with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=1)
    # Swap folders so that a reader never sees half an export.
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.old-")
      os.replace(path, os.path.join(old, "export"))
    os.replace(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


class ExportedModel:
  """A model read back by :func:`load_exported`: deserialised StableHLO + weights.

  Attributes:
    name, input_shape, input_dtype: as the ``jaxnets.Model`` it came from
      (``input_shape`` excludes the batch axis; ``None`` is a free dimension).
    preprocessor: the ``jaxnets.text.TextVectorizer`` of a text model, else None.
  """

  def __init__(self, exported, params: dict, meta: dict, preprocessor):
    self._exported = exported
    self.params = params
    self.name = meta["name"]
    self.input_shape = tuple(meta["input_shape"])
    self.input_dtype = meta["input_dtype"]
    self.preprocessor = preprocessor

  def prepare_inputs(self, x) -> np.ndarray:
    """Strings -> token ids ``int32 (batch, length)``; numbers checked and cast."""
    if self.preprocessor is not None:
      if isinstance(x, str):
        raise InputError(f"model {self.name!r} takes a batch of strings (a list), got one str")
      return np.asarray(self.preprocessor([str(s) for s in x]), np.int32)
    x = np.asarray(x)
    expected = ("batch",) + self.input_shape
    if x.dtype.kind not in "biuf" or x.ndim != len(expected):
      raise InputError(
        f"model {self.name!r} expects numeric input of shape {expected}, "
        f"got {x.dtype} of shape {x.shape}"
      )
    for axis, (want, got) in enumerate(zip(self.input_shape, x.shape[1:]), start=1):
      if want is not None and want != got:
        raise InputError(
          f"model {self.name!r} expects input of shape {expected}; "
          f"axis {axis} has size {got}, expected {want}"
        )
    return x.astype(np.float32 if self.input_dtype == "float32" else np.int32, copy=False)

  def __call__(self, x) -> jax.Array:
    """The exported forward pass on one batch of any size."""
    return self._exported.call(self.params, self.prepare_inputs(x))

  def predict(self, x, batch_size: int | None = None) -> np.ndarray:
    """Forward pass over every row, ``batch_size`` rows at a time (all at once if None)."""
    x = self.prepare_inputs(x)
    if batch_size is None or len(x) <= batch_size:
      return np.asarray(self._exported.call(self.params, x))
    return np.concatenate(
      [
        np.asarray(self._exported.call(self.params, x[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
      ]
    )


def load_exported(path: str | os.PathLike) -> ExportedModel:
  """Reads a folder written by :func:`export` (``Model.export``)."""
  path = os.path.abspath(os.fspath(path))
  meta_path = os.path.join(path, META_FILE)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f"{path} is not an exported jaxnets model: no {META_FILE}")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
    raise ValueError(
      f"{meta_path}: format {meta.get('format')!r} version {meta.get('format_version')!r}; "
      f"this jaxnets reads {FORMAT!r} version {FORMAT_VERSION}"
    )
  with open(os.path.join(path, EXPORT_FILE), "rb") as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  with np.load(os.path.join(path, PARAMS_FILE), allow_pickle=False) as arrays:
    leaves = [arrays[f"arr_{i}"] for i in range(len(meta["param_paths"]))]
  params = _unflatten(meta["param_paths"], leaves)
  preprocessor = None
  if meta["preprocessor"] is not None:
    preprocessor = text.TextVectorizer.from_config(meta["preprocessor"])
  return ExportedModel(exported, params, meta, preprocessor)
