"""Checks a port against its Keras model on given or generated inputs.

The library half of ``jaxnets-port`` (``port.cli``): no absl flags are defined
here, so tests and other tools can import it beside any command's flags.
Inputs follow the Keras model's layout: ``(batch, *input_shape)`` arrays, a list
of them for a model with several inputs, or a 1-D object array of sentences for
a model that takes strings.
"""

import os

import numpy as np

import jaxnets
from jaxnets import cli_support
from port import comparison as comparison_lib


class CheckError(ValueError):
  """A check-input file that cannot be used, or a port that disagrees with Keras."""


def generated_inputs(model: jaxnets.Model, rows: int, length: int, seed: int):
  """Random inputs of the model's input spec, in the form the Keras model takes.

  Returns a 1-D object array of sentences for a string model (words from the
  vocabulary, some out of it, varied lengths), token ids for an int model,
  uniform [0, 1) floats otherwise.
  """
  rng = np.random.default_rng(seed)
  if model.preprocessor is not None:
    words = list(model.preprocessor.vocabulary[2:]) or ["word"]
    words.append("zzunknownzz")  # an out-of-vocabulary token
    texts = [
      " ".join(rng.choice(words, size=int(rng.integers(1, length + 1)))) for _ in range(rows)
    ]
    return np.asarray(texts, dtype=object)
  arrays = []
  for index, (input_shape, dtype) in enumerate(zip(model.input_shapes, model.input_dtypes)):
    shape = (rows,) + tuple(length if d is None else d for d in input_shape)
    if dtype == "int32":
      high = min(_vocabulary_sizes(model, index), default=10)
      arrays.append(rng.integers(1, max(int(high), 2), size=shape).astype(np.int32))
    else:
      arrays.append(rng.random(shape, dtype=np.float32))
  return arrays[0] if model.num_inputs == 1 else arrays


def _vocabulary_sizes(model: jaxnets.Model, index: int) -> list[int]:
  """``input_dim`` of every layer that reads input ``index`` directly (Embeddings)."""
  by_name = {layer.name: layer for layer in model.layers}
  return [
    int(by_name[node.layers[0]].input_dim)
    for node in model.graph.nodes
    if index in node.inputs and hasattr(by_name[node.layers[0]], "input_dim")
  ]


def read_check_inputs(path: str, model: jaxnets.Model):
  """The ``--check_inputs`` file: a ``.npy`` array, a ``.npz`` archive with one
  array per input name (a model with several inputs), or sentences for a
  string model."""
  if not os.path.isfile(path):
    raise CheckError(f"--check_inputs: no file at {path!r}")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as e:
      raise CheckError(f"--check_inputs: {path!r} is not a readable .npz archive: {e}") from None
    missing = sorted(set(model.input_names) - set(arrays))
    if missing:
      raise CheckError(
        f"--check_inputs: {path!r} lacks array(s) {missing}; model {model.name!r} takes "
        f"inputs {list(model.input_names)}"
      )
    chosen = [arrays[name] for name in model.input_names]
    return chosen[0] if len(chosen) == 1 else chosen
  if path.endswith(".npy"):
    if model.num_inputs != 1:
      raise CheckError(
        f"--check_inputs: model {model.name!r} takes {model.num_inputs} inputs "
        f"{list(model.input_names)}: give a .npz archive with one array per input name"
      )
    try:
      return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
      raise CheckError(f"--check_inputs: {path!r} is not a readable .npy array: {e}") from None
  if model.preprocessor is None:
    raise CheckError(
      f"--check_inputs: {path!r} is not a .npy file, and model {model.name!r} takes "
      f"{model.input_dtype} arrays, not text"
    )
  # The rows jaxnets-predict reads from the same file: split on "\n" only.
  with open(path, "rb") as f:
    data = f.read()
  try:
    texts = cli_support.text_rows(data, f"--check_inputs: {path!r}")
  except cli_support.BadInput as e:
    raise CheckError(str(e)) from None
  if not texts:
    raise CheckError(f"--check_inputs: {path!r} has no lines")
  return np.asarray(texts, dtype=object)


def check_parity(keras_model, model: jaxnets.Model, x) -> str:
  """Runs both models on ``x`` and applies the parity rule (``port.compare``).

  Returns the comparison's one-line verdict, or raises ``CheckError`` with it
  when the port fails the rule, and when the check inputs leave nothing to
  compare (every output NaN or infinite, or no rows).
  """
  try:
    model.prepare_inputs(x)
  except jaxnets.InputError as e:
    raise CheckError(f"check inputs: {e}") from None
  if comparison_lib.rows_of(x) == 0:
    raise CheckError("check inputs: no rows to compare the port with Keras on")
  keras_outputs = keras_model.predict(x, verbose=0)
  comparison = comparison_lib.compare(keras_model, model, x, keras_outputs=keras_outputs)
  if not comparison.ok:
    raise CheckError(comparison.verdict())
  if comparison.positions and comparison.nonfinite_positions == comparison.positions:
    raise CheckError(
      f"check inputs: every one of the {comparison.positions} output values is NaN or "
      "infinite, so the check verifies nothing; give inputs with finite values"
    )
  return comparison.verdict()
