"""Imports Keras or JAX set up for fair float32 comparisons.

Imported on demand, not at the top of a module: a worker process (``bench/worker.py``)
must load only the framework its own system runs on, or its memory figure would
include the others (``jaxnets.device_policy`` imports JAX, so ``jax()`` imports it, not
``keras()``).
"""

import contextlib
import os

# jaxnets.device_policy.MODE_ENV and PARITY (the entry points' apply() exports the mode).
_MODE_ENV, _PARITY = "JAXNETS_PRECISION", "parity"


def keras():
  """Keras, with TensorFlow set up by the device policy (``jaxnets/device_policy.py``).

  In the policy's ``parity`` mode (the default) TF32 is off on either backend, so that
  float32 means float32: on GPUs TF32 rounds matmul inputs to 10 mantissa bits (~1e-3
  output error), which would both hide real differences and make the ratios compare
  unequal arithmetic. It has no effect on CPUs. TensorFlow takes GPU memory as it needs
  it, since it shares the GPU with JAX in the benchmark's process.
  """
  import keras as keras_module  # pylint: disable=import-outside-toplevel

  if keras_module.backend.backend() == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    # jaxnets.device_policy.configure_tensorflow's rule, kept separate on purpose: that
    # module imports JAX, which would inflate a Keras worker's memory figure.
    # tests/test_device_policy.py checks that the two agree.
    tf.config.experimental.enable_tensor_float_32_execution(
      os.environ.get(_MODE_ENV, _PARITY) != _PARITY
    )
    for gpu in tf.config.list_physical_devices("GPU"):
      with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
        tf.config.experimental.set_memory_growth(gpu, True)
  elif keras_module.backend.backend() == "jax":
    jax()
  return keras_module


def jax():
  """JAX, with the policy's matmul precision (``parity``: ``highest``, no TF32 or bfloat16)."""
  import jax as jax_module  # pylint: disable=import-outside-toplevel

  from jaxnets import device_policy  # pylint: disable=import-outside-toplevel

  device_policy.configure_jax()
  return jax_module
