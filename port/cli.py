"""``jaxnets-port MODEL.keras OUT_DIR``: port a Keras model file, check it, save it.

    jaxnets-port model.keras ported/                       # generated check inputs
    jaxnets-port lstm.keras ported/ --check_inputs=texts.txt
    python -m port.cli cnn.keras ported/ --check_inputs=x.npy

Loads the Keras model (``port.load``), prints the ported model's summary, runs
both models on check inputs and compares them (max abs difference at most
``--atol``, identical argmax), then writes the folder with ``model.save``;
``jaxnets.load`` / ``jaxnets-predict`` read it with JAX alone.

Check inputs: ``--check_inputs`` gives a ``.npy`` array (a batch the Keras model
takes), a ``.npz`` archive with one array per input name (a model with several
inputs), or a text file, one sentence per line, for a model that takes strings.
Without it, inputs are generated: uniform random values of the model's input
shape (free dimensions set to ``--check_length``), token ids below the first
Embedding's ``input_dim``, or sentences drawn from the model's vocabulary.

Exit codes: 0 ported, checked and saved; 1 bad usage, an unreadable file or a
failed parity check (one ``error:`` line naming the culprit); 2 the model
cannot be ported exactly (every refused layer is listed with the reason).
"""

import os
import sys

# Before TensorFlow loads: its C++ start-up chatter would bury the summary.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import jaxnets  # noqa: E402
from jaxnets import cli_support  # noqa: E402
from port import api  # noqa: E402
from port import registry  # noqa: E402

# port may not import the project's flags package (only entry points above
# port read it), so this command defines its own flags.
_CHECK_INPUTS = flags.DEFINE_string(
  "check_inputs",
  None,
  "A .npy batch (a .npz archive with one array per input name for a model with several "
  "inputs; a .txt file with one sentence per line for a model that takes strings) to "
  "compare the port with Keras on; default: generated inputs.",
)
_CHECK_ROWS = flags.DEFINE_integer(
  "check_rows", 16, "Rows of generated check inputs.", lower_bound=1
)
_CHECK_LENGTH = flags.DEFINE_integer(
  "check_length", 12, "Size of free (None) input dimensions in generated inputs.", lower_bound=1
)
_ATOL = flags.DEFINE_float("atol", 1e-5, "Largest absolute difference the check accepts.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated check inputs.")

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = (
  cli_support.EXIT_OK,
  cli_support.EXIT_USAGE,
  cli_support.EXIT_REFUSED,
)


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


def _flat_outputs(outputs) -> list[np.ndarray]:
  """One array, a list or a dict of outputs (Keras's structure) as a list."""
  if isinstance(outputs, dict):
    return [np.asarray(outputs[k]) for k in sorted(outputs)]
  if isinstance(outputs, (list, tuple)):
    return [np.asarray(o) for o in outputs]
  return [np.asarray(outputs)]


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
  try:
    with open(path, encoding="utf-8") as f:
      texts = [line.rstrip("\n") for line in f]
  except UnicodeDecodeError as e:
    raise CheckError(f"--check_inputs: {path!r} is not UTF-8 text ({e.reason})") from None
  if not texts:
    raise CheckError(f"--check_inputs: {path!r} has no lines")
  return np.asarray(texts, dtype=object)


def check_parity(keras_model, model: jaxnets.Model, x, atol: float) -> str:
  """Runs both models on ``x``; returns a one-line verdict or raises ``CheckError``."""
  try:
    got = model.predict(x)
  except jaxnets.InputError as e:
    raise CheckError(f"check inputs: {e}") from None
  got_all = _flat_outputs(got)
  expected_all = _flat_outputs(keras_model.predict(x, verbose=0))
  if len(got_all) != len(expected_all):
    raise CheckError(f"parity: port has {len(got_all)} outputs, Keras {len(expected_all)}")
  diff, classes = 0.0, False
  for got, expected in zip(got_all, expected_all):
    if got.shape != expected.shape:
      raise CheckError(f"parity: port output shape {got.shape} != Keras {expected.shape}")
    diff = max(diff, float(np.max(np.abs(got - expected))) if expected.size else 0.0)
    if not diff <= atol:
      raise CheckError(f"parity: max abs difference {diff:.3g} > --atol={atol:g}")
    if expected.ndim == 2 and expected.shape[-1] > 1:
      agree = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
      if agree < 1.0:
        raise CheckError(f"parity: predicted classes agree on {agree:.1%} of inputs, not all")
      classes = True
  rows = len(x[0]) if isinstance(x, list) else len(x)
  verdict = f"parity: {rows} inputs, max abs difference {diff:.3g} (<= {atol:g})"
  return verdict + (", identical predicted classes" if classes else "")


def port_file(model_path: str, out_dir: str) -> int:
  """The command's work; returns the exit code."""
  try:
    keras_model = api.load_keras(model_path)
    problems = api.unsupported(keras_model)
  except (FileNotFoundError, ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  if problems:
    print(
      f"error: {model_path} cannot be ported exactly; {len(problems)} refused layer(s):",
      file=sys.stderr,
    )
    for name, class_name, reason in problems:
      print(f"  - {name} ({class_name}): {reason}", file=sys.stderr)
    return EXIT_REFUSED
  try:
    model = api.load(keras_model)
  except registry.UnsupportedLayerError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_REFUSED
  print(model.summary())
  try:
    if _CHECK_INPUTS.value:
      x = read_check_inputs(_CHECK_INPUTS.value, model)
    else:
      x = generated_inputs(model, _CHECK_ROWS.value, _CHECK_LENGTH.value, _SEED.value)
    print(check_parity(keras_model, model, x, _ATOL.value))
  except CheckError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  try:
    saved = model.save(out_dir)
  except (OSError, ValueError) as e:
    print(f"error: cannot save to {out_dir!r}: {e}", file=sys.stderr)
    return EXIT_USAGE
  print(f"saved: {saved}")
  return EXIT_OK


def main(argv) -> None:
  if len(argv) != 3:
    raise app.UsageError(
      "usage: jaxnets-port MODEL.keras OUT_DIR [--check_inputs=x.npy|texts.txt]; "
      f"got {len(argv) - 1} positional argument(s)"
    )
  if not flags.FLAGS["verbosity"].present:
    # Libraries' INFO lines (orbax's per-save chatter) would bury the output.
    logging.set_verbosity(logging.WARNING)
  sys.exit(port_file(argv[1], argv[2]))


def run() -> None:
  """Console-script entry point (``jaxnets-port``)."""
  cli_support.run(main)


if __name__ == "__main__":
  run()
