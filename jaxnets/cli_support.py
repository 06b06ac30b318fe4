"""What the command-line entry points share: exit codes and an absl runner.

Flag-free on purpose: importing it defines no absl flag, so any command (in
``jaxnets`` or above it) can use it beside its own flags.
"""

import sys
from typing import Callable

from absl import app

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2

_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def run(main: Callable[[list[str]], None]) -> None:
  """``absl.app.run(main)``, except that asked-for help exits 0.

  absl exits 1 after printing ``--help``; to a script, help that was asked
  for is a success.
  """
  try:
    app.run(main)
  except SystemExit as e:
    if e.code == 1 and any(arg in _HELP_FLAGS for arg in sys.argv[1:]):
      sys.exit(EXIT_OK)
    raise
