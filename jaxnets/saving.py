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
import threading
from typing import Any, Callable

import jax
import numpy as np

FORMAT_VERSION = 3
# Folders of format 1 (no manifest, no digest) and 2 (no graph: a chain) still
# load. Format 3 adds "graph" and "inputs"; an older jaxnets refuses it rather
# than running a graph as a chain.
READABLE_VERSIONS = (1, 2, 3)
ARCHITECTURE_FILE = "architecture.json"
PARAMS_DIR = "params"
INPUT_DTYPES = ("float32", "int32", "string")
# One orbax save or restore at a time in a process: two threads saving at once
# broke each other's checkpoints (and could hang in orbax's background work).
_ORBAX_LOCK = threading.Lock()


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


def current_umask() -> int:
  """The process's umask (read from /proc where possible: setting it is not thread-safe)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _is_saved_architecture(path: str) -> bool:
  """Whether ``path`` is an ``architecture.json`` that jaxnets wrote (by its keys)."""
  try:
    with open(path, encoding="utf-8") as f:
      arch = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError, RecursionError):
    return False
  return (
    isinstance(arch, dict)
    and arch.get("format_version") in READABLE_VERSIONS
    and isinstance(arch.get("layers"), list)
    and "input_shape" in arch
  )


def resolve_target(
  directory: str | os.PathLike,
  *,
  own: tuple[str, ...],
  marker: str,
  is_ours: Callable[[str], bool],
  what: str,
  error: type[Exception],
) -> str:
  """The absolute folder a save or export may replace as a whole, or ``error``.

  A symbolic link is followed to the folder it names (the link stays). The
  folder must be new, empty, or hold only ``own`` entries with a ``marker``
  file that ``is_ours``: anything else is a user's, named in the error, and
  never deleted. The working directory (or a folder holding it) is refused:
  replacing it would pull the process's own folder away.
  """
  directory = os.path.abspath(os.fspath(directory))
  if os.path.islink(directory):
    target = os.path.realpath(directory)
    if not os.path.isdir(target):
      raise error(
        f"cannot write {what} to {directory}: it is a symbolic link to {target}, "
        "which is not a folder"
      )
    directory = target
  if not os.path.lexists(directory):
    return directory
  if not os.path.isdir(directory):
    raise error(f"cannot write {what} to {directory}: it is a file")
  cwd = os.getcwd()
  if cwd == directory or cwd.startswith(directory.rstrip(os.sep) + os.sep):
    raise error(
      f"cannot write {what} to {directory}: it is (or holds) the working directory, which a "
      "save replaces as a whole; choose a new folder"
    )
  contents = sorted(os.listdir(directory))
  foreign = [entry for entry in contents if entry not in own]
  if foreign:
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    raise error(
      f"cannot write {what} to {directory}: it is not {what} folder and not empty: it holds "
      f"other files ({foreign[0]!r}{more}), which jaxnets did not write and would delete; "
      "choose an empty or new folder, or move them out"
    )
  if contents and not is_ours(os.path.join(directory, marker)):
    raise error(
      f"cannot write {what} to {directory}: its {marker} was not written by jaxnets "
      "(or is damaged), so the folder is not replaced; choose an empty or new folder"
    )
  return directory


def check_target(directory: str | os.PathLike) -> str:
  """The absolute folder ``write_folder`` would replace; ``SavedModelError`` if it may not."""
  return resolve_target(
    directory,
    own=(ARCHITECTURE_FILE, PARAMS_DIR),
    marker=ARCHITECTURE_FILE,
    is_ours=_is_saved_architecture,
    what="a saved model",
    error=SavedModelError,
  )


def write_folder(directory: str | os.PathLike, architecture: dict[str, Any], params: dict) -> str:
  """Writes ``architecture`` and ``params`` to ``directory`` as one unit.

  ``params`` is a tree of numpy arrays. Returns the absolute folder path.
  """
  # Imported here for speed only: orbax costs ~0.3 s on top of jax, and only
  # saving and loading need it. It imports nothing of ours: no cycle.
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  directory = check_target(directory)
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
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's 0700 would outlive the rename
    if params:  # orbax refuses an empty tree: a weightless model has no params/ folder
      with _ORBAX_LOCK:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(staging, PARAMS_DIR), params)
        checkpointer.wait_until_finished()
    path = os.path.join(staging, ARCHITECTURE_FILE)
    with open(path, "w", encoding="utf-8") as f:
      f.write(json.dumps(architecture, indent=1))
      f.flush()
      os.fsync(f.fileno())
    if not os.path.exists(directory):
      try:
        os.rename(staging, directory)
        return directory
      except OSError as e:  # another first save got there first: replace it as below
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
          raise
        check_target(directory)
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
  except RecursionError:
    raise _fail(directory, f"cannot read {ARCHITECTURE_FILE}: it is nested too deeply") from None
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


def _nest(flat: dict[str, Any]) -> dict:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    *layers, weight = path.split("/")
    node = tree
    for key in layers:
      node = node.setdefault(key, {})
    node[weight] = value
  return tree


def _manifest_entry(directory: str, path: str, entry) -> tuple[tuple[int, ...], np.dtype]:
  where = f"params_manifest[{path!r}]"
  if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)):
    raise _fail(directory, f"{ARCHITECTURE_FILE}: {where} must be [shape, dtype]")
  shape, dtype = entry
  if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
    raise _fail(directory, f"{ARCHITECTURE_FILE}: {where} has a bad shape {shape!r:.80}")
  try:
    return tuple(shape), np.dtype(dtype)
  except TypeError:
    raise _fail(directory, f"{ARCHITECTURE_FILE}: {where} has a bad dtype {dtype!r:.40}") from None


def declared_params(directory: str, arch: dict[str, Any]) -> dict:
  """``{layer: {weight: ShapeDtypeStruct}}`` as ``params/`` declares them, no array read.

  Checked against the manifest in ``architecture.json`` (folders of format 2
  and later), so that nothing is allocated from a size only the checkpoint
  states; the caller checks the result against the layers before
  :func:`read_params` restores anything.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel  # see write_folder

  path = os.path.join(directory, PARAMS_DIR)
  expected = arch.get("params_manifest")
  if not os.path.isdir(path) and expected == {}:
    return {}  # a model without weights (written without params/)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"saved model {directory}: missing parameter checkpoint {PARAMS_DIR}/")
  try:
    tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
    declared = {
      "/".join(str(k) for k in keys): jax.ShapeDtypeStruct(
        tuple(int(d) for d in meta.shape), np.dtype(meta.dtype)
      )
      for keys, meta in _metadata_leaves(tree)
    }
  except Exception as e:  # orbax raises many types for a damaged checkpoint
    raise _fail(directory, f"cannot read {PARAMS_DIR}/: {type(e).__name__}: {e}") from e
  if expected is not None:
    _expect(directory, "'params_manifest'", expected, dict, "an object")
    for leaf in sorted(set(expected) | set(declared)):
      if leaf not in declared:
        raise _fail(directory, f"{PARAMS_DIR}/ lacks {leaf!r}, which the manifest lists")
      if leaf not in expected:
        raise _fail(directory, f"{PARAMS_DIR}/ holds {leaf!r}, which the manifest does not list")
      want, got = _manifest_entry(directory, leaf, expected[leaf]), declared[leaf]
      if want != (got.shape, got.dtype):
        raise _fail(
          directory,
          f"{PARAMS_DIR}/ declares {leaf!r} as {got.shape} {got.dtype}, but the manifest in "
          f"{ARCHITECTURE_FILE} says {want[0]} {want[1]} (a damaged or edited folder); "
          "nothing was loaded",
        )
  return _nest(declared)


def _metadata_leaves(tree, prefix=()):
  if isinstance(tree, dict):
    for key in sorted(tree):
      yield from _metadata_leaves(tree[key], prefix + (key,))
  else:
    yield prefix, tree


def read_params(directory: str, arch: dict[str, Any]) -> dict:
  """Restores the parameter tree and checks it belongs to ``arch``.

  Call :func:`declared_params` first (and check its sizes): this allocates
  every array the checkpoint declares.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel  # see write_folder

  path = os.path.join(directory, PARAMS_DIR)
  if not os.path.isdir(path) and arch.get("params_manifest") == {}:
    return {}  # a model without weights (written without params/)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"saved model {directory}: missing parameter checkpoint {PARAMS_DIR}/")
  try:
    with _ORBAX_LOCK:
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


def folder_identity(directory: str) -> tuple[int, int] | None:
  """``(device, inode)`` of the folder now at ``directory`` (None if none): a save
  swaps in a new folder, so a reader can tell that it read parts of two saves."""
  try:
    info = os.stat(directory)
  except OSError:
    return None
  return info.st_dev, info.st_ino


def _leftovers(directory: str) -> list[str]:
  parent, name = os.path.split(directory)
  if not os.path.isdir(parent):
    return []
  return sorted(
    os.path.join(parent, entry)
    for entry in os.listdir(parent)
    if entry.startswith(f".{name}.saving-")
  )
