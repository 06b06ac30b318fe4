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
  (a text model's ``TextVectorizer``: vocabulary, standardisation, split), the
  JAX version that wrote it, and the SHA-256 of the two other files.

Reading checks what a saved folder's reading checks: ``export.json`` key by
key, both files against their digests before either is parsed (a changed
byte in the StableHLO could crash the deserialiser), and every array's
declared shape and dtype against the exported function's signature before
it is read. Any problem raises :class:`ExportedModelError` naming the folder
and the part.

Running it needs jax/jaxlib (a version that can deserialise the artifact:
``jax.export`` keeps backward compatibility for about six months), numpy, and,
for text models, ``jaxnets.text.TextVectorizer`` to turn strings into token
ids — reused on purpose rather than reimplemented, since it is the tested
equal of Keras's ``TextVectorization``. No jaxnets layer code runs: the
computation is the deserialised StableHLO.
"""

import hashlib
import json
import os
import shutil
import zipfile
import tempfile
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from jaxnets import saving
from jaxnets import settings
from jaxnets import text
from jaxnets.errors import InputError

__all__ = [
  "EXPORT_FILE",
  "META_FILE",
  "PARAMS_FILE",
  "ExportedModel",
  "ExportedModelError",
  "export",
  "load_exported",
]

EXPORT_FILE = "forward.jaxexport"
PARAMS_FILE = "params.npz"
META_FILE = "export.json"
FORMAT = "jaxnets-export"
FORMAT_VERSION = 2
# Version 1 had no digests; it still loads (without the digest check).
READABLE_VERSIONS = (1, 2)
PLATFORMS = ("cpu", "cuda")
# An upper bound on the symbolic batch that is no real limit, stated so that
# layers comparing the batch with a block size get a conclusive answer.
MAX_BATCH = 2**30


class ExportedModelError(ValueError):
  """An export folder that cannot be loaded as it is; the message names it and the part."""


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _is_export_meta(path: str) -> bool:
  """Whether ``path`` is an ``export.json`` that jaxnets wrote."""
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError, RecursionError):
    return False
  return isinstance(meta, dict) and meta.get("format") == FORMAT


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
  path = _check_target(path)
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
    os.chmod(tmp, 0o777 & ~saving.current_umask())  # mkdtemp's 0700 would outlive the rename
    with open(os.path.join(tmp, EXPORT_FILE), "wb") as f:
      f.write(exported.serialize())
    np.savez(os.path.join(tmp, PARAMS_FILE), *arrays)
    meta["digests"] = {
      name: _sha256(os.path.join(tmp, name)) for name in (EXPORT_FILE, PARAMS_FILE)
    }
    with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=1)
    # Swap folders so that a reader never sees half an export.
    old = None
    if os.path.exists(path):
      _check_target(path)  # still ours (it may have changed while tracing)
      old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.old-")
      os.replace(path, os.path.join(old, "export"))
    os.replace(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def _check_target(path) -> str:
  return saving.resolve_target(
    path,
    own=(EXPORT_FILE, PARAMS_FILE, META_FILE),
    marker=META_FILE,
    is_ours=_is_export_meta,
    what="an export",
    error=ExportedModelError,
  )


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
      texts = list(x)
      if not texts:
        raise InputError(f"model {self.name!r}: the batch holds no strings")
      for i, item in enumerate(texts):  # as jaxnets.Model: UTF-8 bytes decoded, else refused
        if isinstance(item, bytes):
          try:
            texts[i] = item = item.decode("utf-8")
          except UnicodeDecodeError as e:
            raise InputError(
              f"model {self.name!r} takes UTF-8 text; item {i} is not valid UTF-8 (byte {e.start})"
            ) from None
        if not isinstance(item, str):
          raise InputError(
            f"model {self.name!r} takes strings; item {i} is {type(item).__name__}: {item!r:.60}"
          )
      return np.asarray(self.preprocessor(texts), np.int32)
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
  """Reads a folder written by :func:`export` (``Model.export``).

  Raises ``FileNotFoundError`` when ``path`` is not an export folder, and
  :class:`ExportedModelError` (naming the folder and the part) when it is a
  damaged or edited one.
  """
  path = os.path.abspath(os.fspath(path))
  meta_path = os.path.join(path, META_FILE)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f"{path} is not an exported jaxnets model: no {META_FILE}")

  def fail(message: str) -> ExportedModelError:
    return ExportedModelError(f"export folder {path}: {message}")

  meta = _read_meta(meta_path, fail)
  for name in (EXPORT_FILE, PARAMS_FILE):
    if not os.path.isfile(os.path.join(path, name)):
      raise fail(f"missing {name}")
    if "digests" in meta and _sha256(os.path.join(path, name)) != meta["digests"].get(name):
      raise fail(
        f"{name} does not match its digest in {META_FILE} (a damaged or edited file, or a "
        "part of another export); export the model again"
      )
  try:
    with open(os.path.join(path, EXPORT_FILE), "rb") as f:
      exported = jax_export.deserialize(bytearray(f.read()))
    param_avals = exported.in_avals[: len(meta["param_paths"])]
  except Exception as e:  # the deserialiser raises many types for bad bytes
    raise fail(f"cannot read {EXPORT_FILE}: {type(e).__name__}: {e}") from None
  if len(exported.in_avals) != len(meta["param_paths"]) + 1:
    raise fail(
      f"{EXPORT_FILE} takes {len(exported.in_avals)} arguments; {META_FILE} lists "
      f"{len(meta['param_paths'])} parameters and one input"
    )
  _check_signature(exported, meta, fail)
  leaves = _read_params(os.path.join(path, PARAMS_FILE), meta["param_paths"], param_avals, fail)
  params = _unflatten(meta["param_paths"], leaves)
  preprocessor = None
  if meta["preprocessor"] is not None:
    try:
      preprocessor = text.TextVectorizer.from_config(meta["preprocessor"])
    except (TypeError, ValueError, KeyError) as e:
      raise fail(f"{META_FILE}: preprocessor: {e}") from None
  return ExportedModel(exported, params, meta, preprocessor)


def _read_meta(meta_path: str, fail) -> dict:
  """``export.json``, checked key by key."""
  try:
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise fail(f"cannot read {META_FILE}: {e}") from None
  except RecursionError:
    raise fail(f"cannot read {META_FILE}: it is nested too deeply") from None
  if not isinstance(meta, dict):
    raise fail(f"{META_FILE}: the top level must be a JSON object")
  if meta.get("format") != FORMAT or meta.get("format_version") not in READABLE_VERSIONS:
    raise fail(
      f"{META_FILE}: format {meta.get('format')!r:.40} version "
      f"{meta.get('format_version')!r:.20}; this jaxnets reads {FORMAT!r} versions "
      f"{', '.join(map(str, READABLE_VERSIONS))}"
    )
  checks = [
    ("name", isinstance(meta.get("name"), str), "a string"),
    (
      "input_shape",
      isinstance(meta.get("input_shape"), list)
      and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
        for d in meta["input_shape"]
      ),
      "a list of positive ints or nulls",
    ),
    ("input_dtype", meta.get("input_dtype") in saving.INPUT_DTYPES, "float32, int32 or string"),
    (
      "preprocessor",
      "preprocessor" in meta
      and (meta["preprocessor"] is None or isinstance(meta["preprocessor"], dict)),
      "null or an object",
    ),
    (
      "param_paths",
      isinstance(meta.get("param_paths"), list)
      and all(
        isinstance(p, list) and p and all(isinstance(k, str) for k in p)
        for p in meta["param_paths"]
      ),
      "a list of key paths",
    ),
  ]
  if meta["format_version"] >= 2:
    checks.append(
      (
        "digests",
        isinstance(meta.get("digests"), dict)
        and all(isinstance(meta["digests"].get(n), str) for n in (EXPORT_FILE, PARAMS_FILE)),
        f"an object with the SHA-256 of {EXPORT_FILE} and {PARAMS_FILE}",
      )
    )
  for key, ok, what in checks:
    if not ok:
      raise fail(f"{META_FILE}: {key!r} must be {what}, found {meta.get(key)!r:.80}")
  return meta


def _check_signature(exported, meta: dict, fail) -> None:
  """``export.json``'s parameter paths and input spec agree with the StableHLO's signature."""
  structs = [jax.ShapeDtypeStruct((), np.float32)] * len(meta["param_paths"])
  try:
    params_tree = jax.tree_util.tree_structure(_unflatten(meta["param_paths"], structs))
    expected_tree = exported.in_tree.children()[0].children()[0]
  except Exception as e:  # a path that is a prefix of another, an odd tree
    raise fail(f"{META_FILE}: 'param_paths' do not form a parameter tree: {e}") from None
  if params_tree != expected_tree or params_tree.num_leaves != len(structs):
    raise fail(f"{META_FILE}: 'param_paths' do not match the parameters {EXPORT_FILE} takes")
  x = exported.in_avals[-1]
  text_model = meta["preprocessor"] is not None
  want_dtype = np.int32 if text_model or meta["input_dtype"] == "int32" else np.float32
  if text_model != (meta["input_dtype"] == "string") or x.dtype != want_dtype:
    raise fail(f"{META_FILE}: input_dtype {meta['input_dtype']!r} does not fit {EXPORT_FILE}")
  if text_model:
    return
  dims = list(x.shape[1:])
  if len(dims) != len(meta["input_shape"]) or any(
    want is not None and (not isinstance(got, int) or got != want)
    for want, got in zip(meta["input_shape"], dims)
  ):
    raise fail(
      f"{META_FILE}: input_shape {meta['input_shape']} does not fit the input {EXPORT_FILE} takes"
    )


def _read_params(npz_path: str, paths: list, avals, fail) -> list[np.ndarray]:
  """The ``params.npz`` arrays, each header checked against the signature before reading."""
  leaves = []
  try:
    with zipfile.ZipFile(npz_path) as archive:
      for i, (keys, aval) in enumerate(zip(paths, avals)):
        where = f"{PARAMS_FILE} arr_{i} ({'/'.join(keys)})"
        with archive.open(f"arr_{i}.npy") as member:
          version = np.lib.format.read_magic(member)
          if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
          else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
          if tuple(shape) != tuple(aval.shape) or dtype != aval.dtype:
            raise fail(
              f"{where} declares {tuple(shape)} {dtype}; {EXPORT_FILE} takes "
              f"{tuple(aval.shape)} {aval.dtype}"
            )
        with archive.open(f"arr_{i}.npy") as member:
          leaves.append(np.lib.format.read_array(member, allow_pickle=False))
  except ExportedModelError:
    raise
  except Exception as e:  # zipfile and numpy raise many types for a damaged archive
    raise fail(f"cannot read {PARAMS_FILE}: {type(e).__name__}: {e}") from None
  return leaves
