"""One device policy for every entry point: GPU memory shared by two frameworks, and precision.

TensorFlow and JAX share one GPU in one process (Keras trains, then the port predicts). Left
alone, JAX pre-allocates 75 % of the GPU's memory at its first use and TensorFlow takes nearly
all the rest; and on Ampere and newer GPUs both round float32 matmuls and convolutions to TF32
(10 mantissa bits, about 1e-3 in the outputs), so a port-vs-Keras check would compare two
different roundings. :func:`apply` settles both, and must run before either framework starts a
GPU backend (importing JAX starts none; its first computation or ``jax.devices()`` does):

- memory: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX allocates as it goes) and
  ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (TensorFlow's memory growth), each unless the user set it;
  :func:`configure_tensorflow` also turns memory growth on through ``tf.config``;
- precision, by mode (the argument, else ``$JAXNETS_PRECISION``, else ``parity``):

  ``parity``: full float32 on both sides, for port checks: JAX's default matmul precision
    ``highest``, TensorFlow's TF32 off (:func:`configure_tensorflow`);
  ``speed``: each framework's own default (TF32 where the GPU has it; JAX's default precision,
    or ``$JAX_DEFAULT_MATMUL_PRECISION`` if the user set it): :func:`describe` records which
    precision each side used, for a timing's report.

The settings also go into the environment, so subprocesses (benchmark workers, the notebook's
benchmark cell) start with the same policy. Imports JAX only; TensorFlow is configured once the
caller has loaded it (:func:`configure_tensorflow`). On a CPU none of this changes a number.
"""

import os
import sys
import warnings

import jax

PARITY, SPEED = "parity", "speed"
MODES = (PARITY, SPEED)
MODE_ENV = "JAXNETS_PRECISION"
PREALLOCATE_ENV = "XLA_PYTHON_CLIENT_PREALLOCATE"
TF_GROWTH_ENV = "TF_FORCE_GPU_ALLOW_GROWTH"
JAX_PRECISION_ENV = "JAX_DEFAULT_MATMUL_PRECISION"
PARITY_JAX_PRECISION = "highest"

# What this process's apply() changed, so that a later apply("speed") can undo its own
# parity setting without overriding the user's.
_set_here: set[str] = set()

# What a float32 matmul computes under each value of jax_default_matmul_precision.
_JAX_ARITHMETIC = {
  "highest": "float32",
  "float32": "float32",
  "high": "bfloat16_3x",
  "bfloat16_3x": "bfloat16_3x",
  "tensorfloat32": "TF32",
  "bfloat16": "bfloat16",
}


def _backend_started() -> bool:
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel

  return xla_bridge.backends_are_initialized()


def resolve_mode(mode: str | None = None) -> str:
  """``mode``, else ``$JAXNETS_PRECISION``, else ``parity``; ``ValueError`` for another name."""
  mode = mode or os.environ.get(MODE_ENV) or PARITY
  if mode not in MODES:
    raise ValueError(f"precision mode must be one of {', '.join(MODES)}, got {mode!r}")
  return mode


def apply(mode: str | None = None) -> dict:
  """Puts the policy in force for this process and its children; returns :func:`describe`.

  Call it before anything computes with JAX or TensorFlow (entry points call it first). Called
  later, the memory settings no longer reach a backend that has started (a warning says so);
  the precision settings still hold for everything compiled afterwards.
  """
  mode = resolve_mode(mode)
  os.environ[MODE_ENV] = mode
  for name, value in ((PREALLOCATE_ENV, "false"), (TF_GROWTH_ENV, "true")):
    if name not in os.environ:
      os.environ[name] = value
      if name == PREALLOCATE_ENV and _backend_started():
        warnings.warn(
          f"jaxnets.device_policy.apply() ran after JAX started its backend: {name}=false "
          "reaches only new processes; call it before the first JAX computation",
          stacklevel=2,
        )
  if mode == PARITY:
    if os.environ.get(JAX_PRECISION_ENV) != PARITY_JAX_PRECISION:
      os.environ[JAX_PRECISION_ENV] = PARITY_JAX_PRECISION  # for child processes
      _set_here.add(JAX_PRECISION_ENV)
  elif JAX_PRECISION_ENV in _set_here:
    del os.environ[JAX_PRECISION_ENV]
    _set_here.discard(JAX_PRECISION_ENV)
  configure_jax()
  configure_tensorflow()
  return describe()


def configure_jax() -> None:
  """JAX's default matmul precision for the mode in force: ``highest`` in ``parity``; in
  ``speed``, ``$JAX_DEFAULT_MATMUL_PRECISION`` if the user set it, else JAX's default."""
  if resolve_mode() == PARITY:
    jax.config.update("jax_default_matmul_precision", PARITY_JAX_PRECISION)
  else:
    jax.config.update("jax_default_matmul_precision", os.environ.get(JAX_PRECISION_ENV))


def configure_tensorflow(tf=None) -> bool:
  """Applies the policy to TensorFlow: TF32 (off in ``parity``, TF's default in ``speed``) and
  memory growth on every GPU it sees.

  ``tf`` is the ``tensorflow`` module; by default the one already imported. Call it where
  Keras/TensorFlow is set up (``apply`` calls it too). Returns False, changing nothing, when
  TensorFlow is not loaded: this module never imports it (``jaxnets`` runs without it).
  """
  tf = tf if tf is not None else sys.modules.get("tensorflow")
  if tf is None or not hasattr(tf, "config"):
    return False
  mode = resolve_mode()
  tf.config.experimental.enable_tensor_float_32_execution(mode == SPEED)
  for gpu in tf.config.list_physical_devices("GPU"):
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # GPUs already initialised: TF_FORCE_GPU_ALLOW_GROWTH decided
      pass
  return True


def describe() -> dict:
  """The policy in force, for reports: mode, each side's float32 matmul precision, memory.

  Starts no backend: ``jax_backend`` is ``None`` until JAX has started one; the TensorFlow
  entries are ``None`` while TensorFlow is not loaded.
  """
  jax_precision = jax.config.jax_default_matmul_precision
  tf = sys.modules.get("tensorflow")
  tf_loaded = tf is not None and hasattr(tf, "config")
  tf32 = tf.config.experimental.tensor_float_32_execution_enabled() if tf_loaded else None
  backend = jax.default_backend() if _backend_started() else None
  return {
    "mode": resolve_mode(),
    "jax_backend": backend,
    "jax_default_matmul_precision": jax_precision or "default",
    "jax_float32_matmuls": _JAX_ARITHMETIC.get(
      jax_precision, "float32" if backend == "cpu" else "backend default (TF32 on Ampere+ GPUs)"
    ),
    "jax_preallocate": os.environ.get(PREALLOCATE_ENV),
    "tensorflow_loaded": tf_loaded,
    "tensorflow_tensor_float_32": tf32,
    "tensorflow_float32_matmuls": (
      None if tf32 is None else ("TF32 on Ampere+ GPUs" if tf32 else "float32")
    ),
    "tensorflow_gpu_memory_growth": os.environ.get(TF_GROWTH_ENV),
  }


def summary(policy: dict | None = None) -> str:
  """One line for a report: ``precision parity (JAX float32, TensorFlow float32); ...``."""
  p = policy if policy is not None else describe()
  tf_side = p["tensorflow_float32_matmuls"] or "not loaded"
  return (
    f"precision {p['mode']} (JAX {p['jax_float32_matmuls']}, TensorFlow {tf_side}); "
    f"JAX preallocation {p['jax_preallocate']}, TensorFlow memory growth "
    f"{p['tensorflow_gpu_memory_growth']}"
  )
