"""The tree's shape: imports run one way, and every layer is registered whole.

- Import direction: ``jaxnets`` <- ``port`` <- ``train`` <- ``bench``; ``flags``
  imports nothing of the project. Checked twice: statically over every
  ``import`` statement in the tree (function-local ones included, since a local
  import that dodges a cycle is still a cycle), and by importing each package in
  a fresh interpreter and looking at what got loaded.
- One record per layer: every jaxnets layer class that ``jaxnets.load`` can
  rebuild has a port record with its converter, its inverse and its FLOP count;
  registering a name twice raises.
"""

import ast
import dataclasses
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Lower rank = lower layer: a module may import its own package or lower ones.
RANKS = {"jaxnets": 0, "port": 1, "train": 2, "bench": 3}
PROJECT = (*RANKS, "flags")


def _modules() -> dict[str, pathlib.Path]:
  modules = {}
  for package in PROJECT:
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
      parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
      if parts[-1] == "__init__":
        parts.pop()
      modules[".".join(parts)] = path
  return modules


def _imports(path: pathlib.Path, module: str, is_package: bool) -> set[str]:
  """Project modules ``path`` imports anywhere in its body, resolved to module names."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
      else:
        prefix = node.module
      found.add(prefix)
      found.update(f"{prefix}.{alias.name}" for alias in node.names)
  return {name for name in found if name.split(".")[0] in PROJECT}


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  graph = {}
  for module, path in modules.items():
    is_package = path.name == "__init__.py"
    graph[module] = {m for m in _imports(path, module, is_package) if m in modules}
  return graph


def test_imports_run_one_way():
  wrong = []
  for module, targets in _graph().items():
    top = module.split(".")[0]
    for target in targets:
      target_top = target.split(".")[0]
      if top == "flags" and target_top != "flags":
        wrong.append(f"{module} -> {target} (flags imports nothing of the project)")
      elif target_top == "flags" and top in ("jaxnets", "port"):
        wrong.append(f"{module} -> {target} (only entry points read flags)")
      elif target_top in RANKS and top in RANKS and RANKS[target_top] > RANKS[top]:
        wrong.append(f"{module} -> {target} (imports must run jaxnets <- port <- train <- bench)")
  assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
  """No cycle between modules, counting function-local imports.

  A package's ``__init__`` importing its own submodules is how a package
  re-exports, not a cycle, so edges into a package's own ``__init__`` from
  inside it are left out.
  """
  graph = _graph()
  edges = {
    m: {t for t in targets if t != m and not m.startswith(t + ".")} for m, targets in graph.items()
  }
  state, stack, cycles = {}, [], []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges[node]):
      if state.get(nxt) == "open":
        cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
      elif nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = "done"

  for node in sorted(edges):
    if node not in state:
      visit(node)
  assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(
  "package, forbidden",
  [
    ("jaxnets", {"port", "train", "bench", "flags", "tensorflow", "keras"}),
    ("port", {"train", "bench", "flags"}),
    ("train", {"bench"}),
    ("flags.common, flags.train", {"jaxnets", "port", "train", "bench"}),
  ],
)
def test_importing_a_package_loads_nothing_above_it(package, forbidden):
  code = f"import sys, {package}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  loaded = set(result.stdout.split())
  assert not loaded & forbidden, f"import {package} loaded {sorted(loaded & forbidden)}"


def test_only_command_modules_define_flags():
  """Library modules define no absl flags: a test or tool that imports them
  beside a command's flags (``flags.common``'s ``--seed``, say) must not hit
  ``DuplicateFlagError``. Commands (``cli.py``) are the only exception."""
  modules = sorted(
    ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("jaxnets", "port")
    for path in (REPO_ROOT / package).rglob("*.py")
    if path.name != "cli.py"
  )
  code = (
    "import importlib, sys\n"
    "from absl import app, flags, logging  # absl's own flags are the baseline\n"
    "before = set(flags.FLAGS)\n"
    "for name in sys.argv[1:]:\n"
    "  importlib.import_module(name)\n"
    "  added = sorted(set(flags.FLAGS) - before)\n"
    "  if added: print(name, added)\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", code, *modules],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  assert "port.parity_check" in modules
  assert not result.stdout.strip(), f"library modules define flags:\n{result.stdout}"


# ------------------------------------------------------------ layer records


def test_every_jaxnets_layer_has_a_complete_record():
  import jaxnets.layers  # pylint: disable=import-outside-toplevel
  from port import registry  # pylint: disable=import-outside-toplevel

  missing = []
  for cls in jaxnets.layers.base.registered_classes():
    if cls not in registry.layer_classes():
      missing.append(f"{cls.__name__}: no port record")
      continue
    record = registry.record_for(cls)
    for part in ("build", "weights", "to_keras", "flops"):
      if not callable(getattr(record, part, None)):
        missing.append(f"{cls.__name__}: no {part}")
    if registry.converter_for(record.keras_class) is None:
      missing.append(f"{cls.__name__}: Keras class {record.keras_class} has no converter")
  assert not missing, "\n".join(missing)
  # ... and every record is of a layer that a saved architecture can name.
  assert registry.layer_classes() <= set(jaxnets.layers.base.registered_classes())


def test_registering_a_layer_twice_raises():
  from port import registry  # pylint: disable=import-outside-toplevel
  from jaxnets.layers import base, core  # pylint: disable=import-outside-toplevel

  dense = registry.record_for(core.Dense)
  with pytest.raises(ValueError, match="Dense already has a record"):
    registry.register(dense)

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Other(base.Layer):
    pass

  with pytest.raises(ValueError, match="Keras class.*Dense.*already have a converter"):
    registry.register(dataclasses.replace(dense, layer=Other))
  Other.__name__ = "Dense"
  with pytest.raises(ValueError, match="'Dense' is already registered"):
    base.register(Other)
