"""``jaxnets-predict MODEL_DIR``: run a saved jaxnets model on a file or stdin.

    jaxnets-predict ported/ --input=x.npy --output=y.npy
    jaxnets-predict ported_lstm/ --input=texts.txt            # probabilities to stdout
    echo "saya suka makanan ini" | jaxnets-predict ported_lstm/ --input=-
    python -m jaxnets.cli ported/ --input=x.npy --device=gpu --batch_size=512

``MODEL_DIR`` is a folder written by ``Model.save`` (``jaxnets-port`` writes
one). Needs JAX alone: this module imports nothing but JAX, numpy, absl and
jaxnets.

Input (``--input``): a ``.npy`` array of shape ``(rows, *input_shape)``; for a
model that takes strings, a UTF-8 text file with one sentence per line; ``-``
reads stdin (lines of text for a string model, a ``.npy`` stream otherwise).
Output (``--output``): a ``.npy`` file of shape ``(rows, *output_shape)``
(float32), or ``-`` to print one row per line to stdout.

Exit codes: 0 done; 1 bad usage or input (one ``error:`` line naming the
culprit); 2 the folder is not a model jaxnets can load (``SavedModelError``).
"""

import io
import os
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from jaxnets import cli_support
from jaxnets import device_policy

# jaxnets must not read the project's shared ``flags`` package (only entry
# points above port may), so this command defines its own absl flags.
_INPUT = flags.DEFINE_string(
  "input", None, "A .npy array, a text file (one sentence per line), or - for stdin."
)
_OUTPUT = flags.DEFINE_string(
  "output", "-", "Where the outputs go: a .npy file, or - for stdout (one row per line)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Rows per compiled batch.", lower_bound=1)
_DEVICE = flags.DEFINE_enum(
  "device", None, ["cpu", "gpu"], "Run on this platform (default: JAX's choice, a GPU if any)."
)
_PROGRESS_ROWS = flags.DEFINE_integer(
  "progress_rows",
  4096,
  "Inputs longer than this many rows run in chunks of it, with a progress line on stderr.",
  lower_bound=1,
)

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = (
  cli_support.EXIT_OK,
  cli_support.EXIT_USAGE,
  cli_support.EXIT_REFUSED,
)


class UsageProblem(ValueError):
  """Bad usage or input; the message names the culprit."""


def _select_device(device: str | None) -> None:
  """Pins JAX to one platform before anything is compiled."""
  if device is None:
    return
  import jax  # pylint: disable=import-outside-toplevel  (after flag parsing: no backend yet)

  jax.config.update("jax_platforms", "cuda,cpu" if device == "gpu" else "cpu")
  try:
    found = jax.devices("gpu" if device == "gpu" else "cpu")
  except RuntimeError:
    found = []
  if not found:
    raise UsageProblem(f"--device={device}: no {device.upper()} visible to JAX")


def read_input(source: str, takes_strings: bool):
  """The rows to predict: an array, or a list of sentences for a string model."""
  if source == "-":
    if takes_strings:
      return [line.rstrip("\r\n") for line in sys.stdin.read().splitlines()]
    data = sys.stdin.buffer.read()
    try:
      return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
      raise UsageProblem(
        "--input=-: stdin is not a .npy array (numeric models read .npy from stdin)"
      ) from None
  if not os.path.isfile(source):
    raise UsageProblem(f"--input: no file at {source!r}")
  if source.endswith(".npy"):
    try:
      return np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise UsageProblem(f"--input: {source!r} is not a readable .npy array: {e}") from None
  if not takes_strings:
    raise UsageProblem(
      f"--input: {source!r} is not a .npy file, and this model takes numeric arrays, not text"
    )
  try:
    with open(source, encoding="utf-8") as f:
      return f.read().splitlines()
  except UnicodeDecodeError as e:
    raise UsageProblem(f"--input: {source!r} is not UTF-8 text ({e.reason})") from None


def predict_with_progress(model, x, batch_size: int, chunk_rows: int) -> np.ndarray:
  """``model.predict`` over ``x``; long inputs go in chunks with a progress line on stderr."""
  rows = len(x)
  if rows <= chunk_rows:
    return model.predict(x, batch_size=batch_size)
  outputs, start = [], time.perf_counter()
  for begin in range(0, rows, chunk_rows):
    outputs.append(model.predict(x[begin : begin + chunk_rows], batch_size=batch_size))
    done = min(begin + chunk_rows, rows)
    rate = done / max(time.perf_counter() - start, 1e-9)
    print(
      f"\rpredict: {done}/{rows} rows ({done / rows:.0%}, {rate:,.0f} rows/s)",
      end="\n" if done == rows else "",
      file=sys.stderr,
      flush=True,
    )
  return np.concatenate(outputs)


def write_output(y: np.ndarray, destination: str) -> None:
  if destination == "-":
    np.savetxt(sys.stdout, y.reshape(len(y), -1), fmt="%.7g")
    return
  if not destination.endswith(".npy"):
    raise UsageProblem(f"--output: {destination!r} must end in .npy (or be - for stdout)")
  try:
    np.save(destination, y)
  except OSError as e:
    raise UsageProblem(f"--output: cannot write {destination!r}: {e.strerror or e}") from None


def predict_folder(model_dir: str) -> int:
  """The command's work; returns the exit code."""
  # Imported here so that a bad flag fails before JAX starts (and --device can
  # still choose the platform).
  import jaxnets  # pylint: disable=import-outside-toplevel
  from jaxnets import saving  # pylint: disable=import-outside-toplevel

  try:
    if _INPUT.value is None:
      raise UsageProblem("--input is required (a .npy file, a text file, or - for stdin)")
    if not os.path.isdir(model_dir):
      raise UsageProblem(f"MODEL_DIR: no folder at {model_dir!r}")
    _select_device(_DEVICE.value)
    try:
      model = jaxnets.load(model_dir)
    except FileNotFoundError as e:
      raise UsageProblem(f"MODEL_DIR: {e}") from None
    except saving.SavedModelError as e:
      print(f"error: {e}", file=sys.stderr)
      return EXIT_REFUSED
    x = read_input(_INPUT.value, model.preprocessor is not None)
    if len(x) == 0:
      raise UsageProblem(f"--input: {_INPUT.value!r} holds no rows")
    try:
      y = predict_with_progress(model, x, _BATCH_SIZE.value, _PROGRESS_ROWS.value)
    except jaxnets.InputError as e:
      raise UsageProblem(f"--input {_INPUT.value!r}: {e}") from None
    write_output(y, _OUTPUT.value)
  except UsageProblem as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE
  return EXIT_OK


def main(argv) -> None:
  if len(argv) != 2:
    raise app.UsageError(
      "usage: jaxnets-predict MODEL_DIR --input=x.npy|texts.txt|- [--output=y.npy|-]; "
      f"got {len(argv) - 1} positional argument(s)"
    )
  if not flags.FLAGS["verbosity"].present:
    # Libraries' INFO lines (orbax's per-save chatter) would bury the output.
    logging.set_verbosity(logging.WARNING)
  sys.exit(predict_folder(argv[1]))


def run() -> None:
  """Console-script entry point (``jaxnets-predict``)."""
  device_policy.apply()  # before JAX starts a GPU backend
  cli_support.run(main)


if __name__ == "__main__":
  run()
