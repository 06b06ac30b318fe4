"""Dataset loaders: MNIST, CIFAR-10 and NusaX-Senti as plain numpy arrays.

Where the data comes from (see :func:`resolve_data_dir`):

1. an explicit ``data_dir`` argument (the ``--data_dir`` flag), else
2. the ``JAXNETS_DATA_DIR`` environment variable, else
3. a download cache (``JAXNETS_CACHE_DIR`` or ``~/.cache/jaxnets``), filled from the
   real sources on first use (needs a network; fails fast and clearly without one).

A data directory (and the cache) has this layout::

    mnist.npz                                   x_train, y_train, x_test, y_test (uint8)
    cifar10.npz                                 x_train, y_train, x_test, y_test (uint8)
    nusax-senti/<language>/{train,valid,test}.csv   columns id,text,label

Nothing here imports TensorFlow at import time; ``tensorflow_datasets`` is imported only
when MNIST/CIFAR-10 actually have to be downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import socket
import tempfile
import urllib.request
import zipfile
from typing import Callable, Sequence

import numpy as np

PathLike = str | os.PathLike

DATA_DIR_ENV = "JAXNETS_DATA_DIR"
CACHE_DIR_ENV = "JAXNETS_CACHE_DIR"
DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/jaxnets")

MNIST_FILE = "mnist.npz"
CIFAR10_FILE = "cifar10.npz"
NUSAX_DIR = "nusax-senti"
NUSAX_SPLITS = ("train", "valid", "test")
NUSAX_LABELS = ("negative", "neutral", "positive")
NUSAX_LANGUAGES = (
  "acehnese",
  "balinese",
  "banjarese",
  "buginese",
  "english",
  "indonesian",
  "javanese",
  "madurese",
  "minangkabau",
  "ngaju",
  "sundanese",
  "toba_batak",
)
NUSAX_URL = (
  "https://raw.githubusercontent.com/IndoNLP/nusax/main/datasets/sentiment/{lang}/{split}.csv"
)

CIFAR10_CLASSES = (
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
)

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
TFDS_HOST = "storage.googleapis.com"
NUSAX_HOST = "raw.githubusercontent.com"
NETWORK_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 60.0

LAYOUT_HELP = (
  "expected layout: <dir>/mnist.npz, <dir>/cifar10.npz (keys x_train, y_train, "
  "x_test, y_test) and <dir>/nusax-senti/<language>/{train,valid,test}.csv "
  "(columns id,text,label)"
)


class DataError(ValueError):
  """A dataset could not be found, read or validated."""


# ----------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MNIST:
  """MNIST: images float32 in [0, 1], (N, 28, 28) or (N, 784) if flattened; labels int32."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  source: pathlib.Path  # the npz file read

  num_classes = 10


@dataclasses.dataclass(frozen=True, eq=False)
class CIFAR10:
  """CIFAR-10: images float32 (N, 32, 32, 3) in [0, 1]; labels int32 in [0, 10).

  ``train_idx`` / ``val_idx`` index the official 50,000-image training set and give
  the rows that became ``x_train`` / ``x_val`` (each sorted ascending).
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  train_idx: np.ndarray
  val_idx: np.ndarray
  source: pathlib.Path

  num_classes = 10
  class_names = CIFAR10_CLASSES


@dataclasses.dataclass(frozen=True, eq=False)
class NusaX:
  """NusaX-Senti for one language: texts (numpy object arrays of str) and int32 labels
  (negative=0, neutral=1, positive=2)."""

  lang: str
  train_texts: np.ndarray
  train_labels: np.ndarray
  valid_texts: np.ndarray
  valid_labels: np.ndarray
  test_texts: np.ndarray
  test_labels: np.ndarray
  source: pathlib.Path  # the language directory read

  num_classes = len(NUSAX_LABELS)
  label_names = NUSAX_LABELS

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(texts, labels) of split ``name`` ('train', 'valid' or 'test')."""
    if name not in NUSAX_SPLITS:
      raise ValueError(f"unknown NusaX split {name!r}; valid: {', '.join(NUSAX_SPLITS)}")
    return getattr(self, f"{name}_texts"), getattr(self, f"{name}_labels")


# ----------------------------------------------------------------------------------------
# Where the data is
# ----------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: PathLike | None = None) -> pathlib.Path | None:
  """The local data directory to read, or ``None`` meaning "use the download cache".

  Precedence: ``data_dir`` argument (``--data_dir``) > ``JAXNETS_DATA_DIR`` > ``None``.
  Relative paths are resolved against the current directory. A directory that is given
  but does not exist raises :class:`DataError` naming the path and where it came from.
  Empty strings count as unset.
  """
  if data_dir is not None and str(data_dir) != "":
    value, source = data_dir, "the data_dir argument / --data_dir flag"
  else:
    env = os.environ.get(DATA_DIR_ENV, "")
    if not env:
      return None
    value, source = env, f"the {DATA_DIR_ENV} environment variable"
  path = pathlib.Path(value).expanduser()
  if not path.is_absolute():
    path = pathlib.Path.cwd() / path
  path = pathlib.Path(os.path.normpath(path))
  if not path.exists():
    raise DataError(
      f"data directory {str(value)!r} (resolved to {path}), given by {source}, does not exist"
    )
  if not path.is_dir():
    raise DataError(
      f"data directory {str(value)!r} (resolved to {path}), given by {source}, is not a directory"
    )
  return path


def cache_dir() -> pathlib.Path:
  """The download cache: ``JAXNETS_CACHE_DIR`` or ``~/.cache/jaxnets`` (not created)."""
  env = os.environ.get(CACHE_DIR_ENV, "")
  path = pathlib.Path(env) if env else DEFAULT_CACHE_DIR
  return pathlib.Path(os.path.abspath(path.expanduser()))


def network_available(host: str, port: int = 443, timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """Whether a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


def _require_network(what: str, host: str, cache: pathlib.Path, missing: str) -> None:
  if not network_available(host):
    raise DataError(
      f"no local copy of {what} found: neither --data_dir nor {DATA_DIR_ENV} is set, "
      f"the download cache {cache} does not hold {missing}, and {host} cannot be "
      f"reached (offline?). Set {DATA_DIR_ENV} or pass --data_dir pointing at a "
      f"directory with the local copies ({LAYOUT_HELP})."
    )


def _atomic_write(path: pathlib.Path, write: Callable) -> None:
  """Write via ``write(binary_file)`` to a temp file next to ``path``, then rename."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise


def _download_tfds_npz(name: str, path: pathlib.Path, cache: pathlib.Path) -> None:
  """Fetch tfds ``name`` and store it at ``path`` in the npz layout (uint8 arrays)."""
  import tensorflow_datasets as tfds  # lazy: heavy, and only needed when downloading

  arrays = {}
  for split in ("train", "test"):
    x, y = tfds.as_numpy(
      tfds.load(name, split=split, batch_size=-1, as_supervised=True, data_dir=str(cache / "tfds"))
    )
    x = np.asarray(x, dtype=np.uint8)
    if name == "mnist" and x.ndim == 4 and x.shape[-1] == 1:
      x = x[..., 0]
    arrays[f"x_{split}"] = x
    arrays[f"y_{split}"] = np.asarray(y, dtype=np.uint8)
  _atomic_write(path, lambda f: np.savez(f, **arrays))


def _npz_path(data_dir: PathLike | None, filename: str, tfds_name: str, what: str) -> pathlib.Path:
  root = resolve_data_dir(data_dir)
  if root is not None:
    return root / filename
  cache = cache_dir()
  path = cache / filename
  if not path.is_file():
    _require_network(what, TFDS_HOST, cache, filename)
    _download_tfds_npz(tfds_name, path, cache)
  return path


def _nusax_dir(data_dir: PathLike | None, lang: str) -> pathlib.Path:
  root = resolve_data_dir(data_dir)
  if root is not None:
    return root / NUSAX_DIR / lang
  cache = cache_dir()
  lang_dir = cache / NUSAX_DIR / lang
  missing = [s for s in NUSAX_SPLITS if not (lang_dir / f"{s}.csv").is_file()]
  if missing:
    _require_network(
      f"NusaX-Senti ({lang})", NUSAX_HOST, cache, f"{NUSAX_DIR}/{lang}/{{{','.join(missing)}}}.csv"
    )
    for split in missing:
      url = NUSAX_URL.format(lang=lang, split=split)
      try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
          body = resp.read()
      except OSError as e:
        raise DataError(f"downloading {url} failed: {e}") from e
      _atomic_write(lang_dir / f"{split}.csv", lambda f, b=body: f.write(b))
  return lang_dir


# ----------------------------------------------------------------------------------------
# Reading and validating
# ----------------------------------------------------------------------------------------


def _read_npz(
  path: pathlib.Path, image_shape: Sequence[int], num_classes: int, what: str
) -> dict[str, np.ndarray]:
  """Read and validate an image npz; returns x_* as stored (validated) and y_* int32."""
  if not path.is_file():
    raise DataError(f"{what} file not found: {path} ({LAYOUT_HELP})")
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [k for k in _NPZ_KEYS if k not in npz.files]
      if missing:
        raise DataError(
          f"{path}: missing key(s) {', '.join(missing)} "
          f"(has {', '.join(npz.files) or 'none'}; expected "
          f"{', '.join(_NPZ_KEYS)})"
        )
      raw = {k: npz[k] for k in _NPZ_KEYS}
  except DataError:
    raise
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(f"{path}: cannot read as a .npz file: {e}") from e

  out = {}
  image_shape = tuple(image_shape)
  for split in ("train", "test"):
    x, y = raw[f"x_{split}"], raw[f"y_{split}"]
    if x.ndim != 1 + len(image_shape) or x.shape[1:] != image_shape:
      raise DataError(
        f"{path}: x_{split} has shape {x.shape}, expected (N, {', '.join(map(str, image_shape))})"
      )
    if y.ndim != 1:
      raise DataError(f"{path}: y_{split} has shape {y.shape}, expected (N,)")
    if len(x) != len(y):
      raise DataError(f"{path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    if len(x) == 0:
      raise DataError(f"{path}: x_{split} is empty")
    if not np.issubdtype(y.dtype, np.integer):
      raise DataError(f"{path}: y_{split} has dtype {y.dtype}, expected integers")
    if y.min() < 0 or y.max() >= num_classes:
      raise DataError(
        f"{path}: y_{split} has labels in [{y.min()}, {y.max()}], expected [0, {num_classes - 1}]"
      )
    if np.issubdtype(x.dtype, np.integer):
      if x.min() < 0 or x.max() > 255:
        raise DataError(
          f"{path}: x_{split} has pixel values in [{x.min()}, {x.max()}], expected [0, 255]"
        )
    elif np.issubdtype(x.dtype, np.floating):
      if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise DataError(f"{path}: x_{split} is floating point but not in [0, 1]")
    else:
      raise DataError(f"{path}: x_{split} has dtype {x.dtype}, expected uint8")
    out[f"x_{split}"] = x
    out[f"y_{split}"] = y.astype(np.int32)
  return out


def _to_unit_float(x: np.ndarray) -> np.ndarray:
  """Validated images (uint8 in [0, 255] or float in [0, 1]) as float32 in [0, 1]."""
  if np.issubdtype(x.dtype, np.integer):
    out = x.astype(np.float32)
    out /= np.float32(255.0)
    return out
  return x.astype(np.float32)


def _read_nusax_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  if not path.is_file():
    raise DataError(f"NusaX-Senti file not found: {path} ({LAYOUT_HELP})")
  label_ids = {name: i for i, name in enumerate(NUSAX_LABELS)}
  texts, labels = [], []
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.DictReader(f)
      if not reader.fieldnames:
        raise DataError(f"{path}: file is empty (expected a header id,text,label)")
      cols = [c.strip() for c in reader.fieldnames]
      missing = [c for c in ("text", "label") if c not in cols]
      if missing:
        raise DataError(
          f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(cols)})"
        )
      reader.fieldnames = cols
      for rownum, row in enumerate(reader, start=1):
        # rownum counts data rows (header excluded); texts may span several lines.
        where = f"data row {rownum} (ending on line {reader.line_num})"
        text, label = row.get("text"), row.get("label")
        if text is None or label is None:
          raise DataError(f"{path}: {where} has too few fields")
        key = label.strip().lower()
        if key not in label_ids:
          raise DataError(
            f"{path}: {where} has unknown label {label!r} "
            f"(expected one of {', '.join(NUSAX_LABELS)})"
          )
        texts.append(text)
        labels.append(label_ids[key])
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not valid UTF-8: {e}") from e
  except csv.Error as e:
    raise DataError(f"{path}: malformed CSV: {e}") from e
  if not texts:
    raise DataError(f"{path}: no data rows")
  return np.array(texts, dtype=object), np.array(labels, dtype=np.int32)


# ----------------------------------------------------------------------------------------
# Public loaders
# ----------------------------------------------------------------------------------------


def split_indices(
  labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0, stratified: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded (optionally stratified) split of ``range(len(labels))`` into
  ``(train_idx, val_idx)``, each sorted ascending, int64, disjoint and together covering
  every index. Uses ``sklearn.model_selection.train_test_split`` with
  ``test_size=val_fraction``, ``random_state=seed`` and ``stratify=labels`` when
  ``stratified``; the same arguments always give the same split.
  """
  if not 0.0 < float(val_fraction) < 1.0:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
  from sklearn.model_selection import train_test_split  # lazy: keeps import cheap

  labels = np.asarray(labels)
  train_idx, val_idx = train_test_split(
    np.arange(len(labels)),
    test_size=val_fraction,
    random_state=seed,
    shuffle=True,
    stratify=labels if stratified else None,
  )
  return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def load_mnist(data_dir: PathLike | None = None, flatten: bool = False) -> MNIST:
  """MNIST from ``<data_dir>/mnist.npz`` (or env / download cache).

  Returns :class:`MNIST` with ``x_train`` (60000, 28, 28) float32 in [0, 1] — or
  (60000, 784) when ``flatten`` — ``y_train`` int32 (60000,), and the same for the
  10,000 test images.
  """
  path = _npz_path(data_dir, MNIST_FILE, "mnist", "MNIST")
  d = _read_npz(path, (28, 28), 10, "MNIST")
  for k in ("x_train", "x_test"):
    d[k] = _to_unit_float(d[k])
    if flatten:
      d[k] = d[k].reshape(len(d[k]), -1)
  return MNIST(source=path, **d)


def load_cifar10(
  data_dir: PathLike | None = None,
  val_fraction: float = 0.2,
  seed: int = 0,
  stratified: bool = True,
) -> CIFAR10:
  """CIFAR-10 from ``<data_dir>/cifar10.npz`` (or env / download cache), with a
  validation split carved out of the official 50,000-image training set.

  The split is **seeded and stratified** (:func:`split_indices`):
  ``sklearn.model_selection.train_test_split`` with ``test_size=val_fraction``, ``random_state=seed`` and (when ``stratified``, the
  default) ``stratify=y_train``, so the same seed always gives the same split and each
  class keeps its share (the default 0.2 gives 4,000 train / 1,000 val per class, i.e.
  40,000 / 10,000). ``train_idx`` / ``val_idx`` (sorted, disjoint, together covering
  ``range(50000)``) say which official training images went where; the rows of
  ``x_train`` / ``x_val`` are in that ascending order (shuffle per epoch yourself).

  Images are float32 (N, 32, 32, 3) in [0, 1]; labels int32 in [0, 10). The official
  10,000 test images are returned unchanged as ``x_test`` / ``y_test``.
  """
  if not 0.0 < float(val_fraction) < 1.0:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
  path = _npz_path(data_dir, CIFAR10_FILE, "cifar10", "CIFAR-10")
  d = _read_npz(path, (32, 32, 3), 10, "CIFAR-10")
  x_all, y_all = d.pop("x_train"), d.pop("y_train")
  try:
    train_idx, val_idx = split_indices(y_all, val_fraction, seed, stratified)
  except ValueError as e:
    raise DataError(
      f"{path}: cannot split {len(y_all)} training images with val_fraction={val_fraction}: {e}"
    ) from e
  return CIFAR10(
    x_train=_to_unit_float(x_all[train_idx]),
    y_train=y_all[train_idx],
    x_val=_to_unit_float(x_all[val_idx]),
    y_val=y_all[val_idx],
    x_test=_to_unit_float(d["x_test"]),
    y_test=d["y_test"],
    train_idx=train_idx,
    val_idx=val_idx,
    source=path,
  )


def load_nusax(lang: str = "indonesian", data_dir: PathLike | None = None) -> NusaX:
  """NusaX-Senti for ``lang`` from ``<data_dir>/nusax-senti/<lang>/{train,valid,test}.csv``
  (or env / download cache).

  Returns :class:`NusaX`: texts as numpy object arrays of str (empty texts are kept),
  labels int32 with negative=0, neutral=1, positive=2 (:data:`NUSAX_LABELS`).
  500 / 100 / 400 rows for each of the 12 :data:`NUSAX_LANGUAGES`.
  """
  if lang not in NUSAX_LANGUAGES:
    raise DataError(
      f"unknown NusaX language {lang!r}; valid languages: {', '.join(NUSAX_LANGUAGES)}"
    )
  lang_dir = _nusax_dir(data_dir, lang)
  fields = {}
  for split in NUSAX_SPLITS:
    texts, labels = _read_nusax_csv(lang_dir / f"{split}.csv")
    fields[f"{split}_texts"], fields[f"{split}_labels"] = texts, labels
  return NusaX(lang=lang, source=lang_dir, **fields)


__all__ = [
  "CIFAR10",
  "CIFAR10_CLASSES",
  "DataError",
  "MNIST",
  "NUSAX_LABELS",
  "NUSAX_LANGUAGES",
  "NusaX",
  "cache_dir",
  "load_cifar10",
  "load_mnist",
  "load_nusax",
  "network_available",
  "resolve_data_dir",
  "split_indices",
]
