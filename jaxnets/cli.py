"""``jaxnets-predict MODEL_DIR``: run a saved jaxnets model on a file or stdin.

    jaxnets-predict ported/ --input=x.npy --output=y.npy
    jaxnets-predict ported_lstm/ --input=texts.txt            # probabilities to stdout
    echo "saya suka makanan ini" | jaxnets-predict ported_lstm/ --input=-
    python -m jaxnets.cli ported/ --input=x.npy --device=gpu --batch_size=512

``MODEL_DIR`` is a folder written by ``Model.save`` (``jaxnets-port`` writes
one). Needs JAX alone: this module imports nothing but JAX, numpy, absl and
jaxnets.

Input (``--input``): a ``.npy`` array of shape ``(rows, *input_shape)``; for a
model that takes strings, a UTF-8 text file with one sentence per line (rows
split on ``\\n`` alone, so row i is line i; a leading BOM is dropped); ``-``
reads stdin (lines of text for a string model, a ``.npy`` stream otherwise).
Output (``--output``): a ``.npy`` file of shape ``(rows, *output_shape)``
(float32), a ``.npz`` archive with one array per output name (a model with
several outputs), or ``-`` to print one row per line to stdout. Output files
are never written through a symbolic link.

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


def _stdin_bytes() -> bytes:
  if sys.stdin is None:
    raise UsageProblem("--input=-: stdin is closed")
  try:
    return sys.stdin.buffer.read()
  except (OSError, ValueError) as e:
    raise UsageProblem(f"--input=-: cannot read stdin: {e}") from None


def read_input(source: str, takes_strings: bool):
  """The rows to predict: an array, or a list of sentences for a string model."""
  if source == "-":
    data = _stdin_bytes()
    if takes_strings:
      return cli_support.text_rows(data, "--input=-: stdin")
    if not data.startswith(np.lib.format.MAGIC_PREFIX):
      raise UsageProblem(
        "--input=-: stdin is not a .npy array (numeric models read .npy from stdin)"
      )
    return cli_support.load_npy(io.BytesIO(data), len(data), "--input=-: stdin")
  if not os.path.isfile(source):
    raise UsageProblem(f"--input: no file at {source!r}")
  if source.endswith(".npy"):
    try:
      with open(source, "rb") as f:
        return cli_support.load_npy(f, os.fstat(f.fileno()).st_size, f"--input: {source!r}")
    except OSError as e:
      raise UsageProblem(f"--input: cannot read {source!r}: {e.strerror or e}") from None
  if not takes_strings:
    raise UsageProblem(
      f"--input: {source!r} is not a .npy file, and this model takes numeric arrays, not text"
    )
  try:
    with open(source, "rb") as f:
      return cli_support.text_rows(f.read(), f"--input: {source!r}")
  except OSError as e:
    raise UsageProblem(f"--input: cannot read {source!r}: {e.strerror or e}") from None


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


def output_arrays(model, y) -> dict[str, np.ndarray]:
  """The model's outputs by name (one entry for a single output)."""
  if isinstance(y, dict):
    return {str(name): np.asarray(v) for name, v in y.items()}
  if not isinstance(y, (list, tuple)):
    return {"output": np.asarray(y)}
  producers = list(model.input_names) + [node.layers[-1] for node in model.graph.nodes]
  names = {}
  for tensor, value in zip(model.graph.outputs, y):
    name = producers[tensor]
    while name in names:
      name += "_"
    names[name] = np.asarray(value)
  return names


def _open_for_writing(destination: str):
  """``destination`` opened for writing, never through a symbolic link."""
  flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
  try:
    return os.fdopen(os.open(destination, flags, 0o666), "wb")
  except OSError as e:
    if os.path.islink(destination):
      raise UsageProblem(
        f"--output: {destination!r} is a symbolic link; jaxnets writes no file through one"
      ) from None
    raise UsageProblem(f"--output: cannot write {destination!r}: {e.strerror or e}") from None


def check_destination(count: int, destination: str) -> None:
  """Refuses, before any work, an ``--output`` that cannot hold ``count`` outputs."""
  if destination.endswith(".npz"):
    return
  if destination != "-" and not destination.endswith(".npy"):
    raise UsageProblem(f"--output: {destination!r} must end in .npy or .npz (or be - for stdout)")
  if count > 1:
    raise UsageProblem(
      f"--output={destination}: the model has {count} outputs; give --output=FILE.npz "
      "(one array per output name)"
    )


def write_output(outputs: dict[str, np.ndarray], destination: str) -> None:
  """One output: ``.npy`` or rows on stdout; several: ``.npz`` keyed by output name."""
  check_destination(len(outputs), destination)
  if destination == "-":
    [y] = outputs.values()
    if sys.stdout is None:
      raise UsageProblem("--output=-: stdout is closed")
    try:
      np.savetxt(sys.stdout, y.reshape(len(y), -1), fmt="%.7g")
      sys.stdout.flush()
    except (OSError, ValueError) as e:
      _silence_stdout()
      raise UsageProblem(f"--output=-: cannot write to stdout: {e}") from None
    return
  try:
    with _open_for_writing(destination) as f:
      if destination.endswith(".npz"):
        np.savez(f, **outputs)
      else:
        np.save(f, next(iter(outputs.values())))
  except OSError as e:
    raise UsageProblem(f"--output: cannot write {destination!r}: {e.strerror or e}") from None


def _silence_stdout() -> None:
  """Points fd 1 at /dev/null: a closed pipe must not raise again at exit."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
  except OSError:
    pass


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
    check_destination(len(model.graph.outputs), _OUTPUT.value)
    x = read_input(_INPUT.value, model.preprocessor is not None)
    if len(x) == 0:
      raise UsageProblem(f"--input: {_INPUT.value!r} holds no rows")
    try:
      y = predict_with_progress(model, x, _BATCH_SIZE.value, _PROGRESS_ROWS.value)
    except jaxnets.InputError as e:
      raise UsageProblem(f"--input {_INPUT.value!r}: {e}") from None
    except (MemoryError, OverflowError, RuntimeError) as e:
      if isinstance(e, RuntimeError) and "RESOURCE_EXHAUSTED" not in str(e):
        raise
      print(
        f"error: model {model_dir}: running it on {_INPUT.value!r} needs more memory than "
        f"there is ({type(e).__name__}: {str(e)[:200]}); check its layer sizes or --batch_size",
        file=sys.stderr,
      )
      return EXIT_REFUSED
    write_output(output_arrays(model, y), _OUTPUT.value)
  except (UsageProblem, cli_support.BadInput) as e:
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
