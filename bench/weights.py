"""Seeded random weights for Keras models: the one randomiser of the project.

The parity tests (``tests/parity.py``) and the benchmark both use it. Weights are
drawn per variable, in ``model.weights`` order, from one seeded generator, so a
seed always gives the same model; every draw differs (asymmetric), so a
transposed kernel or a swapped gate cannot go unnoticed.
"""

import numpy as np


def randomize_weights(keras_model, seed: int = 0, scale: float | None = 0.5) -> None:
  """Assigns every weight of ``keras_model`` a seeded normal draw.

  Args:
    keras_model: a built Keras model; its variables are overwritten in place.
    seed: seed of the generator.
    scale: standard deviation of the draws. ``None``: ``1 / sqrt(fan_in)`` per
      variable, with ``fan_in`` the product of all but the last axis (1 for a
      vector), which keeps activations realistic and unsaturated through a deep
      model (what the benchmark uses).

  A BatchNormalization moving variance is drawn from ``uniform(0.5, 1.5)``
  instead (after its normal draw, which is discarded), so it stays positive.
  """
  rng = np.random.default_rng(seed)
  for variable in keras_model.weights:
    shape = tuple(variable.shape)
    if scale is None:
      fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
      std = 1.0 / np.sqrt(fan_in)
    else:
      std = scale
    value = rng.normal(0.0, std, shape).astype(np.float32)
    if "variance" in variable.path:
      value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    variable.assign(value)
