"""A saved model folder: written whole or not at all, read back only when consistent.

Layout of a folder written by ``Model.save``::

    <folder>/architecture.json   format version, name, input spec(s), layer configs,
                                 the graph wiring the layers (format 3), and the
                                 parameters' manifest and digest
    <folder>/params/             orbax-checkpoint of {layer: {weight: array}}

Writing: both parts go into a fresh hidden sibling folder, which replaces the
target only once complete — by an atomic exchange of the two folders where the
kernel offers one (Linux ``renameat2(RENAME_EXCHANGE)``), else by two renames
microseconds apart. A save that fails (disk full, killed) leaves the target as
it was: the old model, or nothing.

Reading: ``architecture.json`` is checked key by key before anything is built,
and the parameters must hash to the digest written beside them, so a folder
whose two parts come from different saves is refused instead of loading as the
wrong model. Every error names the folder.

This module knows nothing of ``Model``; ``jaxnets.model`` builds on it.
"""

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

FORMAT_VERSION = 3
# Folders of format 1 (no manifest, no digest) and 2 (no graph: a chain) still
# load. Format 3 adds "graph" and "inputs"; an older jaxnets refuses it rather
# than running a graph as a chain.
READABLE_VERSIONS = (1, 2, 3)
ARCHITECTURE_FILE = "architecture.json"
PARAMS_DIR = "params"
INPUT_DTYPES = ("float32", "int32", "string")


class SavedModelError(ValueError):
  """A saved model folder that cannot be loaded as it is; the message names it."""


# ------------------------------------------------------------------- digest


def _leaves(params: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, np.ndarray]]:
  """``("layer/weight", array)`` for every leaf, in sorted path order."""
  out = []
  for key in sorted(params):
    value = params[key]
    path = prefix + (str(key),)
    if isinstance(value, dict):
      out.extend(_leaves(value, path))
    else:
      out.append(("/".join(path), np.asarray(value)))
  return out


def manifest(params: dict) -> dict[str, list]:
  """``{"layer/weight": [shape, dtype]}`` of a parameter tree."""
  return {path: [list(a.shape), str(a.dtype)] for path, a in _leaves(params)}


def digest(params: dict) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes."""
  h = hashlib.sha256()
  for path, array in _leaves(params):
    h.update(f"{path}|{array.dtype}|{array.shape}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
  return h.hexdigest()


# ------------------------------------------------------------------ writing


def _exchange(a: str, b: str) -> bool:
  """Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
  libc_name = ctypes.util.find_library("c")
  if not libc_name:
    return False
  libc = ctypes.CDLL(libc_name, use_errno=True)
  renameat2 = getattr(libc, "renameat2", None)
  if renameat2 is None:
    return False
  at_fdcwd, rename_exchange = -100, 2
  result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
  if result == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
    return False
  raise OSError(err, os.strerror(err), a)


def _check_replaceable(directory: str) -> None:
  """Refuses to replace a folder that holds something other than a saved model."""
  if not os.path.exists(directory):
    return
  if not os.path.isdir(directory):
    raise SavedModelError(f"cannot save a model to {directory}: it is a file")
  contents = set(os.listdir(directory))
  if contents and ARCHITECTURE_FILE not in contents:
    raise SavedModelError(
      f"cannot save a model to {directory}: the folder holds other files "
      f"({', '.join(sorted(contents)[:5])}) and no {ARCHITECTURE_FILE}; "
      "choose an empty or new folder"
    )


def write_folder(directory: str | os.PathLike, architecture: dict[str, Any], params: dict) -> str:
  """Writes ``architecture`` and ``params`` to ``directory`` as one unit.

  ``params`` is a tree of numpy arrays. Returns the absolute folder path.
  """
  # Imported here for speed only: orbax costs ~0.3 s on top of jax, and only
  # saving and loading need it. It imports nothing of ours: no cycle.
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  directory = os.path.abspath(os.fspath(directory))
  _check_replaceable(directory)
  parent, name = os.path.split(directory)
  os.makedirs(parent, exist_ok=True)
  architecture = dict(
    architecture,
    format_version=FORMAT_VERSION,
    params_manifest=manifest(params),
    params_digest=digest(params),
  )
  staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.saving-")
  try:
    if params:  # orbax refuses an empty tree: a weightless model has no params/ folder
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(os.path.join(staging, PARAMS_DIR), params)
      checkpointer.wait_until_finished()
    path = os.path.join(staging, ARCHITECTURE_FILE)
    with open(path, "w", encoding="utf-8") as f:
      f.write(json.dumps(architecture, indent=1))
      f.flush()
      os.fsync(f.fileno())
    if not os.path.exists(directory):
      os.rename(staging, directory)
      return directory
    if _exchange(staging, directory):
      shutil.rmtree(staging, ignore_errors=True)  # now the old model
      return directory
    old = f"{staging}.old"
    os.rename(directory, old)
    os.rename(staging, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


# ------------------------------------------------------------------ reading


def _fail(directory: str, message: str) -> SavedModelError:
  return SavedModelError(f"saved model {directory}: {message}")


def _expect(directory: str, where: str, value, kind: type, what: str):
  if not isinstance(value, kind):
    raise _fail(directory, f"{ARCHITECTURE_FILE}: {where} must be {what}, found {value!r:.80}")
  return value


def read_architecture(directory: str) -> dict[str, Any]:
  """Reads and checks the structure of ``architecture.json`` (not the layer options)."""
  path = os.path.join(directory, ARCHITECTURE_FILE)
  if not os.path.isdir(directory):
    leftovers = _leftovers(directory)
    hint = (
      f" (an interrupted save left {leftovers[0]}: check it and rename it)" if leftovers else ""
    )
    raise FileNotFoundError(f"no saved jaxnets model at {directory}: no such folder{hint}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{directory} is not a saved jaxnets model: no {ARCHITECTURE_FILE}")
  try:
    with open(path, encoding="utf-8") as f:
      arch = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _fail(directory, f"cannot read {ARCHITECTURE_FILE}: {e}") from e
  _expect(directory, "the top level", arch, dict, "a JSON object")
  version = arch.get("format_version")
  if version not in READABLE_VERSIONS:
    raise _fail(
      directory,
      f"{ARCHITECTURE_FILE}: unsupported format_version {version!r} "
      f"(this jaxnets reads {', '.join(map(str, READABLE_VERSIONS))})",
    )
  for key in ("input_shape", "input_dtype", "layers"):
    if key not in arch:
      raise _fail(directory, f"{ARCHITECTURE_FILE}: missing key {key!r}")
  _expect(directory, "'name'", arch.get("name", "model"), str, "a string")
  specs = [("input_shape", arch["input_shape"], "input_dtype", arch["input_dtype"])]
  if arch.get("inputs") is not None:
    inputs = _expect(directory, "'inputs'", arch["inputs"], list, "a list")
    for i, spec in enumerate(inputs):
      where = f"inputs[{i}]"
      _expect(directory, where, spec, dict, 'an object {"name", "shape", "dtype"}')
      _expect(directory, f"{where}.name", spec.get("name"), str, "a string")
      specs.append((f"{where}.shape", spec.get("shape"), f"{where}.dtype", spec.get("dtype")))
  for shape_where, shape, dtype_where, dtype in specs:
    _expect(directory, f"'{shape_where}'", shape, list, "a list")
    for i, dim in enumerate(shape):
      if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise _fail(
          directory,
          f"{ARCHITECTURE_FILE}: {shape_where}[{i}] must be a positive int or null, found {dim!r}",
        )
    if dtype not in INPUT_DTYPES:
      raise _fail(
        directory,
        f"{ARCHITECTURE_FILE}: {dtype_where} must be one of {', '.join(INPUT_DTYPES)}, "
        f"found {dtype!r}",
      )
  layers = _expect(directory, "'layers'", arch["layers"], list, "a list")
  specs = [(f"layers[{i}]", spec) for i, spec in enumerate(layers)]
  if arch.get("preprocessor") is not None:
    specs.append(("preprocessor", arch["preprocessor"]))
  for where, spec in specs:
    _expect(directory, where, spec, dict, 'an object {"class": ..., "config": {...}}')
    _expect(directory, f"{where}.class", spec.get("class"), str, "a class name")
    _expect(directory, f"{where}.config", spec.get("config"), dict, "an object")
  return arch


def read_params(directory: str, arch: dict[str, Any]) -> dict:
  """Restores the parameter tree and checks it belongs to ``arch``."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel  # see write_folder

  path = os.path.join(directory, PARAMS_DIR)
  if not os.path.isdir(path) and arch.get("params_manifest") == {}:
    return {}  # a model without weights (written without params/)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"saved model {directory}: missing parameter checkpoint {PARAMS_DIR}/")
  try:
    params = ocp.StandardCheckpointer().restore(path)
  except Exception as e:  # orbax raises many types for a damaged checkpoint
    raise _fail(directory, f"cannot restore {PARAMS_DIR}/: {type(e).__name__}: {e}") from e
  params = {} if params is None else params
  expected = arch.get("params_digest")
  if expected is not None and digest(params) != expected:
    raise _fail(
      directory,
      f"{PARAMS_DIR}/ does not belong to {ARCHITECTURE_FILE} (the parameters' digest "
      "differs from the one saved with the architecture: the two parts come from "
      "different saves, or one was edited); save the model again",
    )
  return params


def _leftovers(directory: str) -> list[str]:
  parent, name = os.path.split(directory)
  if not os.path.isdir(parent):
    return []
  return sorted(
    os.path.join(parent, entry)
    for entry in os.listdir(parent)
    if entry.startswith(f".{name}.saving-")
  )
