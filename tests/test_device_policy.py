"""The device policy (jaxnets/device_policy.py) is in force before JAX or TensorFlow start.

Each check runs in a fresh interpreter whose environment lacks the policy's variables (this
process has them: tests/conftest.py applied the policy), so what is seen there is what the
policy, or the entry point under test, set.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from jaxnets import device_policy
from tests.conftest import REPO_ROOT

_POLICY_ENV = (
  device_policy.MODE_ENV,
  device_policy.PREALLOCATE_ENV,
  device_policy.TF_GROWTH_ENV,
  device_policy.JAX_PRECISION_ENV,
)


def _fresh_python(code: str, *, prelude: bool = True, **env) -> dict:
  """Runs ``code`` (after ``_REPORT``'s ``report()`` helper, with ``prelude``) in a new
  interpreter without the policy's variables (plus ``env``); returns the JSON object its last
  stdout line holds."""
  code = (textwrap.dedent(_REPORT) if prelude else "") + textwrap.dedent(code)
  clean = {k: v for k, v in os.environ.items() if k not in _POLICY_ENV}
  clean.update(env, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  proc = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    env=clean,
    cwd=REPO_ROOT,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


_REPORT = """
  import json, os, sys
  import jax
  from jax._src import xla_bridge
  from jaxnets import device_policy
  def report(**extra):
    print(json.dumps({
      "env": {k: os.environ.get(k) for k in device_policy_names},
      "jax_precision": jax.config.jax_default_matmul_precision,
      "backend_started": xla_bridge.backends_are_initialized(),
      "tensorflow_loaded": "tensorflow" in sys.modules,
      **extra,
    }))
  device_policy_names = %r
""" % (_POLICY_ENV,)


def test_importing_jaxnets_starts_no_backend_and_loads_no_tensorflow():
  """Else ``from jaxnets import device_policy`` would come too late to set anything."""
  seen = _fresh_python("import jaxnets, jaxnets.layers, jaxnets.model\nreport()\n")
  assert not seen["backend_started"] and not seen["tensorflow_loaded"]


def test_apply_sets_memory_and_parity_precision_before_any_backend():
  seen = _fresh_python(
    """
  policy = device_policy.apply()
  before = xla_bridge.backends_are_initialized()
  import tensorflow as tf
  import jax.numpy as jnp
  jnp.ones(2).block_until_ready()
  device_policy.configure_tensorflow(tf)
  report(before=before, policy=policy, after=device_policy.describe(),
         tf32=tf.config.experimental.tensor_float_32_execution_enabled())
  """
  )
  assert seen["before"] is False
  assert seen["env"] == {
    "JAXNETS_PRECISION": "parity",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "JAX_DEFAULT_MATMUL_PRECISION": "highest",
  }
  assert seen["jax_precision"] == "highest" and seen["tf32"] is False
  assert seen["policy"]["jax_backend"] is None and seen["policy"]["tensorflow_loaded"] is False
  after = seen["after"]
  assert after["jax_backend"] == "cpu" and after["mode"] == "parity"
  assert after["jax_float32_matmuls"] == "float32"
  assert after["tensorflow_float32_matmuls"] == "float32"
  assert "precision parity (JAX float32, TensorFlow float32)" in device_policy.summary(after)


def test_the_users_memory_settings_are_kept():
  seen = _fresh_python(
    "device_policy.apply()\nreport()\n",
    XLA_PYTHON_CLIENT_PREALLOCATE="true",
    TF_FORCE_GPU_ALLOW_GROWTH="false",
  )
  assert seen["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
  assert seen["env"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"


def test_speed_mode_keeps_framework_defaults_and_says_which():
  seen = _fresh_python(
    """
  import tensorflow as tf
  first = device_policy.apply("parity")
  policy = device_policy.apply("speed")  # undoes its own parity settings
  report(policy=policy)
  """
  )
  assert seen["env"]["JAXNETS_PRECISION"] == "speed"
  assert seen["env"]["JAX_DEFAULT_MATMUL_PRECISION"] is None
  assert seen["jax_precision"] is None
  policy = seen["policy"]
  assert policy["jax_default_matmul_precision"] == "default"
  assert policy["tensorflow_tensor_float_32"] is True
  assert policy["tensorflow_float32_matmuls"] == "TF32 on Ampere+ GPUs"

  # The user's own JAX precision stands in speed mode, and the mode comes from the environment.
  seen = _fresh_python(
    "report(policy=device_policy.apply())\n",
    JAXNETS_PRECISION="speed",
    JAX_DEFAULT_MATMUL_PRECISION="tensorfloat32",
  )
  assert seen["jax_precision"] == "tensorfloat32"
  assert seen["policy"]["jax_float32_matmuls"] == "TF32"


def test_an_unknown_mode_is_refused_by_name():
  with pytest.raises(ValueError, match="'fast'"):
    device_policy.apply("fast")


def test_apply_after_the_backend_started_says_it_is_too_late(monkeypatch):
  jax.numpy.ones(1).block_until_ready()
  monkeypatch.delenv(device_policy.PREALLOCATE_ENV)
  with pytest.warns(UserWarning, match="after JAX started its backend"):
    device_policy.apply()


def test_the_test_session_runs_under_the_policy():
  assert os.environ[device_policy.PREALLOCATE_ENV] in ("false", "true")
  assert device_policy.describe()["mode"] == device_policy.resolve_mode()
  if device_policy.resolve_mode() == device_policy.PARITY:
    assert jax.config.jax_default_matmul_precision == "highest"


_ENTRY_POINT = """
  import importlib, json, os, sys
  names = %r
  seen = {}

  class Spy:
    '''Notes the policy's variables at the first import of jax and of tensorflow.'''

    def find_spec(self, name, path=None, target=None):
      if name in ("jax", "tensorflow") and name not in seen:
        seen[name] = {k: os.environ.get(k) for k in names}
      return None

  sys.meta_path.insert(0, Spy())
  module = importlib.import_module(sys.argv[1])
  sys.argv[1:] = ["--help"]
  try:
    if hasattr(module, "run"):
      module.run()
  except SystemExit:
    pass
  import jax
  from jax._src import xla_bridge
  print(json.dumps({
    "seen": seen,
    "env": {k: os.environ.get(k) for k in names},
    "jax_precision": jax.config.jax_default_matmul_precision,
    "backend_started": xla_bridge.backends_are_initialized(),
  }))
"""


@pytest.mark.parametrize(
  "module, applies_at_import",
  [
    ("train.__main__", False),  # python -m train, jaxnets-train: in run()
    ("bench.__main__", True),  # python -m bench, jaxnets-bench: before its imports
    ("port.cli", False),  # jaxnets-port
    ("jaxnets.cli", False),  # jaxnets-predict
    ("tests.conftest", True),  # pytest
  ],
)
def test_every_entry_point_applies_the_policy_before_a_backend_starts(module, applies_at_import):
  """The entry point's module is imported and its ``run()`` called (with ``--help``, so no work
  is done). Nothing may start a JAX backend on the way; the policy must be in force at the end,
  and, for the modules that apply it as they are imported, already when TensorFlow is first
  imported."""
  code = textwrap.dedent(_ENTRY_POINT % (_POLICY_ENV,))
  clean = {k: v for k, v in os.environ.items() if k not in _POLICY_ENV}
  clean.update(TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  proc = subprocess.run(
    [sys.executable, "-c", code, module],
    capture_output=True,
    text=True,
    env=clean,
    cwd=REPO_ROOT,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  seen = json.loads(proc.stdout.strip().splitlines()[-1])
  assert not seen["backend_started"], f"importing {module} started a JAX backend"
  assert seen["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  assert seen["env"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
  assert seen["env"]["JAXNETS_PRECISION"] == "parity"
  assert seen["jax_precision"] == "highest"
  if applies_at_import and "tensorflow" in seen["seen"]:
    assert seen["seen"]["tensorflow"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert seen["seen"]["tensorflow"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_the_benchmarks_keras_setup_follows_the_policy_for_each_mode():
  """bench/frameworks.py keeps its own copy of the TensorFlow rule (so a Keras benchmark worker
  does not load JAX); the copy must agree with configure_tensorflow."""
  seen = _fresh_python(
    """
  import json, os
  import tensorflow as tf
  from bench import frameworks
  from jaxnets import device_policy
  out = {}
  for mode in ("parity", "speed", "parity"):
    os.environ["JAXNETS_PRECISION"] = mode
    frameworks.keras()
    bench = tf.config.experimental.tensor_float_32_execution_enabled()
    device_policy.configure_tensorflow(tf)
    out[mode] = [bench, tf.config.experimental.tensor_float_32_execution_enabled()]
  print(json.dumps(out))
  """,
    prelude=False,
  )
  assert seen == {"parity": [False, False], "speed": [True, True]}


class _Item:
  def __init__(self, *marks):
    self.keywords = dict.fromkeys(marks)
    self.added = []

  def add_marker(self, mark):
    self.added.append(mark)


@pytest.mark.parametrize("backend, skipped", [("cpu", True), ("tpu", True), ("gpu", False)])
def test_gpu_marked_tests_run_only_on_a_gpu_backend(monkeypatch, backend, skipped):
  from tests import conftest  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  gpu, plain = _Item("gpu"), _Item("heavy")
  conftest.pytest_collection_modifyitems(None, [gpu, plain])
  assert not plain.added
  assert bool(gpu.added) is skipped
  if skipped:
    assert gpu.added[0].kwargs["reason"] == f"needs a GPU; JAX's default backend is {backend!r}"
