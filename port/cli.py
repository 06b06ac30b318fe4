"""``jaxnets-port MODEL.keras OUT_DIR``: port a Keras model file, check it, save it.

    jaxnets-port model.keras ported/                       # generated check inputs
    jaxnets-port lstm.keras ported/ --check_inputs=texts.txt
    python -m port.cli cnn.keras ported/ --check_inputs=x.npy

Loads the Keras model (``port.load``), prints the ported model's summary, runs
both models on check inputs and compares them with the parity rule
(``port.compare``: as close to Keras's float64 evaluation as Keras's own float32
output, identical argmax where not a tie), then writes the folder with ``model.save``;
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

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from jaxnets import cli_support  # noqa: E402
from jaxnets import device_policy  # noqa: E402
from jaxnets import saving  # noqa: E402
from port import api  # noqa: E402
from port import parity_check  # noqa: E402
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
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated check inputs.")

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = (
  cli_support.EXIT_OK,
  cli_support.EXIT_USAGE,
  cli_support.EXIT_REFUSED,
)


def port_file(model_path: str, out_dir: str) -> int:
  """The command's work; returns the exit code."""
  try:
    saving.check_target(out_dir)  # before any work: a folder we may not replace
  except ValueError as e:
    print(f"error: OUT_DIR: {e}", file=sys.stderr)
    return EXIT_USAGE
  try:
    # TensorFlow starts here: its C++ start-up notices are dropped, anything else kept.
    with cli_support.filtered_native_stderr():
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
      x = parity_check.read_check_inputs(_CHECK_INPUTS.value, model)
    else:
      x = parity_check.generated_inputs(model, _CHECK_ROWS.value, _CHECK_LENGTH.value, _SEED.value)
    print(parity_check.check_parity(keras_model, model, x))
  except parity_check.CheckError as e:
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
  device_policy.apply()  # before JAX or TensorFlow start a GPU backend
  cli_support.run(main)


if __name__ == "__main__":
  run()
