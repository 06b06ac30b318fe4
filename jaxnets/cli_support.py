"""What the command-line entry points share: exit codes, an absl runner, the
filter of TensorFlow's C++ start-up notices, and the readers of input rows
(text split on ``\\n`` alone, ``.npy`` with its header checked first).

Flag-free on purpose: importing it defines no absl flag, so any command (in
``jaxnets`` or above it) and the tests can use it beside their own flags.
"""

import contextlib
import os
import re
import sys
import tempfile
from typing import Callable, Iterator

import numpy as np
from absl import app, flags

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2


class BadInput(ValueError):
  """An input file or stream that cannot be read as rows; the message names it."""


# What TensorFlow's (and XLA's) C++ code prints when it starts, on every run
# and whatever the machine: notices no user can act on, printed before
# TF_CPP_MIN_LOG_LEVEL is read (absl's pre-init logging ignores it).
STARTUP_NOISE = re.compile(
  "|".join(
    (
      r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
      r"oneDNN custom operations are on",
      r"cudart_stub\.cc.*Could not find cuda drivers",
      r"failed call to cuInit",
      r"This TensorFlow binary is optimized to use available CPU instructions",
      r"To enable the following instructions: .* rebuild TensorFlow",
      r"Unable to register cu(DNN|FFT|BLAS) factory",
      r"computation placer already registered",
    )
  )
)

_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def run(main: Callable[[list[str]], None]) -> None:
  """``absl.app.run(main)``, except that asked-for help exits 0.

  absl exits 1 after printing ``--help``; to a script, help that was asked
  for is a success.
  """
  _show_module_help_as_main(main.__module__)
  try:
    app.run(main)
  except SystemExit as e:
    if e.code == 1 and any(arg in _HELP_FLAGS for arg in sys.argv[1:]):
      sys.exit(EXIT_OK)
    raise


def _show_module_help_as_main(module_name: str) -> None:
  """Makes ``--help`` of an installed console script as full as ``python -m``'s.

  absl's help shows the ``__main__`` module's docstring and the key flags of
  the module named by ``sys.argv[0]``; a console script's ``__main__`` is a
  generated stub, so without this ``jaxnets-predict --help`` printed a bare
  usage line.
  """
  if module_name == "__main__":
    return  # ``python -m``: absl already finds the docstring and the flags.
  module = sys.modules[module_name]
  main = sys.modules["__main__"]
  if not getattr(main, "__doc__", None):
    main.__doc__ = module.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


@contextlib.contextmanager
def filtered_native_stderr(noise: re.Pattern = STARTUP_NOISE) -> Iterator[None]:
  """Runs the block with file descriptor 2 captured, then replays every line of
  it except ``noise`` (by default TensorFlow's C++ start-up notices).

  For the block that imports TensorFlow and starts its devices: C++ code
  writes to the descriptor, not to ``sys.stderr``, so only a descriptor-level
  capture can sort its lines. Real warnings and errors (and Python's own
  output in the block) come out unchanged, just after the block.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = [
        line
        for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
        if not noise.search(line)
      ]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()


# ------------------------------------------------------------ reading inputs


def text_rows(data: bytes, where: str) -> list[str]:
  """One row per line: UTF-8 (one leading BOM dropped), split on ``\\n`` only.

  A trailing ``\\r`` (a Windows line end) is dropped from each line, and a
  final line end ends the last row rather than starting an empty one; no other
  character (U+2028, U+0085, form feed...) splits a row, so rows match lines.
  """
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise BadInput(f"{where} is not UTF-8 text ({e.reason} at byte {e.start})") from None
  text = text.removeprefix("\ufeff")
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line.removesuffix("\r") for line in lines]


def load_npy(f, size: int, where: str) -> np.ndarray:
  """A ``.npy`` array from ``f`` (``size`` bytes), its header checked before any allocation."""
  try:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  except Exception as e:  # numpy raises ValueError, SyntaxError, TokenError... on bad headers
    raise BadInput(f"{where} is not a readable .npy array: {e}") from None
  if not shape:
    raise BadInput(f"{where} holds a single value (a 0-d array); give an array of rows")
  if dtype.hasobject:
    raise BadInput(f"{where} holds Python objects; give a numeric array")
  declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
  held = size - f.tell()
  if declared != held:
    raise BadInput(
      f"{where}: its header declares {dtype} {tuple(shape)} ({declared:,} bytes) but the "
      f"file holds {held:,} bytes after it (truncated or damaged)"
    )
  f.seek(0)
  try:
    return np.load(f, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise BadInput(f"{where} is not a readable .npy array: {e}") from None
