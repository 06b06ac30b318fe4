"""Shared helpers for parity tests against Keras itself.

Weights are random and asymmetric (seeded normal draws, different per weight)
so a transposed kernel or a swapped gate cannot go unnoticed; Keras's own
numerics tests use constant weights and would miss both.
"""

import jax
import numpy as np

import port

ATOL = 1e-5


def randomize_weights(keras_model, seed: int = 0, scale: float = 0.5) -> None:
  """Assigns every weight a seeded random value (variances kept positive)."""
  rng = np.random.default_rng(seed)
  for variable in keras_model.weights:
    shape = tuple(variable.shape)
    value = rng.normal(0.0, scale, shape).astype(np.float32)
    if "variance" in variable.path:
      value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    variable.assign(value)


def assert_matches_keras(keras_model, x, *, atol: float = ATOL, classifier: bool = True,
                         batch_size: int = 64):
  """Ports ``keras_model`` and checks jitted and un-jitted outputs against Keras.

  Returns the ported model. ``x`` is what the Keras model takes.
  """
  expected = np.asarray(keras_model(x, training=False))
  model = port.load(keras_model)
  jitted = model.predict(x, batch_size=batch_size)
  with jax.disable_jit():
    unjitted = np.asarray(model.apply(model.params, model._prepare(x)))  # pylint: disable=protected-access
  for label, got in (("jitted predict", jitted), ("un-jitted apply", unjitted)):
    assert got.shape == expected.shape, f"{label}: shape {got.shape} != Keras {expected.shape}"
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    assert diff <= atol, f"{label}: max abs diff {diff:.3g} > {atol}"
    if classifier and expected.ndim == 2 and expected.shape[-1] > 1:
      np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1), err_msg=label)
  return model
