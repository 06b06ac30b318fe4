"""Imports Keras or JAX set up for fair float32 comparisons.

Imported on demand, not at the top of a module: a worker process (``bench/worker.py``)
must load only the framework its own system runs on, or its memory figure would
include the others.
"""

import contextlib


def keras():
  """Keras, with TF32 off on either backend so that float32 means float32.

  On GPUs TF32 rounds matmul inputs to 10 mantissa bits (~1e-3 output error),
  which would both hide real differences and make the ratios compare unequal
  arithmetic. It has no effect on CPUs. TensorFlow is told to take GPU memory
  as it needs it, since it shares the GPU with JAX in the benchmark's process.
  """
  import keras as keras_module  # pylint: disable=import-outside-toplevel

  if keras_module.backend.backend() == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in tf.config.list_physical_devices("GPU"):
      with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
        tf.config.experimental.set_memory_growth(gpu, True)
  elif keras_module.backend.backend() == "jax":
    jax()
  return keras_module


def jax():
  """JAX, with float32 matmuls at full precision (no TF32, no bfloat16 passes)."""
  import jax as jax_module  # pylint: disable=import-outside-toplevel

  jax_module.config.update("jax_default_matmul_precision", "highest")
  return jax_module
