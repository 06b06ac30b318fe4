"""What the command-line entry points share: exit codes and an absl runner.

Flag-free on purpose: importing it defines no absl flag, so any command (in
``jaxnets`` or above it) can use it beside its own flags.
"""

import sys
from typing import Callable

from absl import app, flags

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2

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
