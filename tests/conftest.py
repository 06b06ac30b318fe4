"""Shared pytest fixtures.

Run the tests from the repository root (``python -m pytest``). The real dataset copies are
found through ``JAXNETS_DATA_DIR``; a relative value (CI uses ``../shared/data``) is taken
relative to the repository root, so tests work from any working directory.
"""

import os
import pathlib
import sys

import pytest
from hypothesis import settings as hypothesis_settings

# Generated tests (tests/test_generated_parity.py): a bounded run in CI, a long
# one on request: python -m pytest tests/test_generated_parity.py --hypothesis-profile=long
hypothesis_settings.register_profile("ci", max_examples=50, deadline=None, print_blob=True)
hypothesis_settings.register_profile("long", max_examples=1000, deadline=None, print_blob=True)
hypothesis_settings.load_profile("ci")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Make top-level packages (jaxnets, train, flags, ...) importable under plain `pytest`.
if str(REPO_ROOT) not in (os.path.abspath(p or os.curdir) for p in sys.path):
  sys.path.insert(0, str(REPO_ROOT))

# The device policy, before any test module imports TensorFlow or computes with JAX: no JAX
# preallocation (``pytest -n 2`` on a GPU would start two processes taking 75 % each), TF
# memory growth, float32 on both sides for the parity tests (jaxnets/device_policy.py).
from jaxnets import device_policy  # noqa: E402

device_policy.apply()


def pytest_collection_modifyitems(config, items):
  """Tests marked ``gpu`` run only when JAX's default backend is a GPU; elsewhere skipped."""
  del config
  gpu_tests = [item for item in items if "gpu" in item.keywords]
  if not gpu_tests:
    return  # no backend started just to decide
  import jax  # pylint: disable=import-outside-toplevel

  backend = jax.default_backend()
  if backend == "gpu":
    return
  skip = pytest.mark.skip(reason=f"needs a GPU; JAX's default backend is {backend!r}")
  for item in gpu_tests:
    item.add_marker(skip)


def resolve_real_data_dir():
  """(path, None) for the real data copies, or (None, reason) when they are unavailable."""
  value = os.environ.get("JAXNETS_DATA_DIR", "")
  if not value:
    return None, (
      "JAXNETS_DATA_DIR is not set; point it at the local dataset copies "
      "(e.g. JAXNETS_DATA_DIR=../shared/data, relative to the repo root)"
    )
  path = pathlib.Path(value).expanduser()
  if not path.is_absolute():
    path = REPO_ROOT / path
  path = path.resolve()
  if not path.is_dir():
    return None, f"JAXNETS_DATA_DIR={value!r} -> {path} does not exist"
  return path, None


@pytest.fixture(scope="session")
def real_data_dir():
  """Absolute path of the real dataset copies; skips the test when unavailable."""
  path, reason = resolve_real_data_dir()
  if path is None:
    pytest.skip(reason)
  return path
