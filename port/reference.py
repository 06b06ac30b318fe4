"""Keras's float64 evaluation of a model, and running Keras in batches: the
reference side of the parity rule (``port/comparison.py``).

``float64_reference`` rebuilds a Keras model from its config with every float
dtype policy set to float64 and its weights cast (lookup vocabularies copied,
as they are not weights); ``run_keras`` calls a model in batches and returns
its outputs as a flat list of numpy arrays.
"""

import weakref
from typing import Any

import numpy as np

__all__ = ["flatten", "float64_reference", "rows_of", "run_keras", "to_float64"]

_FLOAT_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16")
_REFERENCES: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _as_float64_config(config):
  """``config`` with every float dtype and dtype policy set to float64 (ints and
  strings — token ids, TextVectorization — are left as they are)."""
  if isinstance(config, list):
    return [_as_float64_config(item) for item in config]
  if not isinstance(config, dict):
    return config
  out = {}
  for key, value in config.items():
    if key == "dtype" and isinstance(value, str) and value in _FLOAT_POLICIES:
      value = "float64"
    elif (
      key == "dtype"
      and isinstance(value, dict)
      and "Policy" in str(value.get("class_name", ""))
      and value.get("config", {}).get("name") in _FLOAT_POLICIES
    ):
      value = {**value, "class_name": "DTypePolicy", "config": {"name": "float64"}}
    else:
      value = _as_float64_config(value)
    out[key] = value
  return out


def float64_reference(keras_model):
  """The Keras model rebuilt from its config with every float layer in float64
  and its weights cast; cached per model. Raises ``ValueError`` naming why when
  the model cannot be rebuilt (e.g. a subclassed model without a config)."""
  cached = _REFERENCES.get(keras_model)
  if cached is not None:
    return cached
  import keras  # pylint: disable=import-outside-toplevel

  try:
    config = _as_float64_config(keras_model.get_config())
    clone = keras_model.__class__.from_config(config)
    weights = keras_model.get_weights()
    clone.set_weights([np.asarray(w, np.float64) if _is_float(w) else w for w in weights])
    _copy_vocabularies(keras_model, clone)
  except Exception as e:  # noqa: BLE001 - any failure means "no reference", with its reason
    raise ValueError(
      f"model {getattr(keras_model, 'name', '?')!r} cannot be rebuilt in float64: "
      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    ) from e
  del keras
  _REFERENCES[keras_model] = clone
  return clone


def _layers(model) -> list:
  """Every layer of ``model``, nested models' layers in place, in order."""
  out = []
  for layer in getattr(model, "layers", []):
    out.append(layer)
    if getattr(layer, "layers", None):
      out.extend(_layers(layer))
  return out


def _copy_vocabularies(source, clone) -> None:
  """Lookup tables (TextVectorization, StringLookup...) are not weights: a
  clone from config starts with none, so each is set from the original's."""
  for original, copy in zip(_layers(source), _layers(clone)):
    if hasattr(original, "get_vocabulary") and hasattr(copy, "set_vocabulary"):
      idf = getattr(original, "idf_weights", None)
      if getattr(original, "output_mode", None) == "tf_idf" and idf is not None:
        copy.set_vocabulary(original.get_vocabulary(), idf_weights=np.asarray(idf))
      else:
        copy.set_vocabulary(original.get_vocabulary())


def _is_float(array) -> bool:
  return np.asarray(array).dtype.kind == "f"


def to_float64(x):
  """Model inputs with float arrays cast to float64 (same values exactly)."""
  if isinstance(x, dict):
    return {k: to_float64(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return type(x)(to_float64(v) for v in x)
  array = np.asarray(x)
  return array.astype(np.float64) if array.dtype.kind == "f" else x


# --------------------------------------------------------------- the check


def rows_of(x) -> int:
  """Rows of a batch: an array, a list/tuple of per-input arrays, a dict of them,
  or a sequence of sentences."""
  if isinstance(x, dict):
    return rows_of(next(iter(x.values())))
  if isinstance(x, (list, tuple)) and x and _is_input_list(x):
    return len(x[0])
  return len(x)


def _is_input_list(x) -> bool:
  """A list of equal-length arrays, one per model input (not a list of rows)."""
  return all(isinstance(v, np.ndarray) for v in x)


def _slice(x, start: int, stop: int):
  if isinstance(x, dict):
    return {k: _slice(v, start, stop) for k, v in x.items()}
  if isinstance(x, (list, tuple)) and _is_input_list(x):
    return [v[start:stop] for v in x]
  return x[start:stop]


def run_keras(keras_model, x, batch_size: int = 256) -> list[np.ndarray]:
  """``keras_model(x, training=False)`` in batches of ``batch_size`` rows, as a
  list of numpy arrays (one per output; a dict output in key order)."""
  rows = rows_of(x)
  chunks = [
    keras_model(_slice(x, start, start + batch_size), training=False)
    for start in range(0, max(rows, 1), batch_size)
  ]
  flat = [flatten(chunk) for chunk in chunks]
  return [np.concatenate([f[i] for f in flat]) for i in range(len(flat[0]))]


def flatten(outputs) -> list[np.ndarray]:
  """One array, a list or a dict of outputs as a list (dicts in key order)."""
  if isinstance(outputs, dict):
    return [np.asarray(outputs[k]) for k in sorted(outputs)]
  if isinstance(outputs, (list, tuple)):
    return [np.asarray(o) for o in outputs]
  return [np.asarray(outputs)]
