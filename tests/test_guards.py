"""Guarded fast paths (``jaxnets.guards``): max pooling without its NaN rule.

At inference ``Model.predict`` runs max pooling without TensorFlow's NaN /
-inf rule (``Model.apply_fast``) and reruns a batch through the exact pass
(``Model.apply``) when the fast pass flags it. These tests pin down that (a)
the rerun happens whenever it must, so guarded and unguarded predictions agree
bit for bit, and with Keras, on inputs holding NaN, +inf and -inf at every
cell position, at batch sizes where XLA:CPU does and does not use its
YNNPACK fusions; (b) finite inputs really take the fast path and match Keras;
(c) a layer applied on its own, outside a fast pass, is always exact.
"""

import itertools

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import port
from jaxnets import guards
from jaxnets import settings
from jaxnets.layers import pooling
from tests import parity

L = keras.layers
INPUT = (7, 9, 3)


@pytest.fixture(autouse=True)
def fast_forms_at_any_size():
  """These inputs are small: let pooling take its fast form anyway."""
  with settings.override(fast_pool_min_floats=0):
    yield


def _pool_model(pool_size, strides, padding, depth):
  layers = [
    L.Conv2D(4, 3, padding="same", activation="relu"),
    L.MaxPooling2D(pool_size, strides=strides, padding=padding),
    L.Conv2D(5, 2, activation="linear"),
    L.MaxPooling2D(2, padding="same"),
  ]
  model = keras.Sequential([keras.Input(INPUT)] + layers[:depth])
  parity.randomize_weights(model, seed=3)
  return model


def _nonfinite_images(value, seed=0):
  """One image per cell position with ``value`` at that cell, plus clean rows."""
  rng = np.random.default_rng(seed)
  cells = list(itertools.product(range(INPUT[0]), range(INPUT[1])))
  x = rng.normal(size=(len(cells) + 2,) + INPUT).astype(np.float32)
  for row, (i, j) in enumerate(cells):
    x[row, i, j, row % 3] = value
  x[-2, :, :, 0] = value  # a whole channel
  return x


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
  "pool_size,strides,padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same")]
)
@pytest.mark.parametrize("batch_size", [8, 256])
def test_guarded_predictions_equal_exact_ones_on_nonfinite_inputs(
  value, pool_size, strides, padding, batch_size
):
  x = _nonfinite_images(value)
  for depth in (2, 4):
    model = _pool_model(pool_size, strides, padding, depth)
    jm = port.load(model)
    guarded = jm.predict(x, batch_size=batch_size)
    with settings.override(guard_fast_paths=False):
      exact = port.load(model).predict(x, batch_size=batch_size)
    np.testing.assert_array_equal(guarded, exact)
  # Against Keras with one convolution and one pooling: past a pooling that
  # gave the lowest float (an all-NaN or all -inf window), a further
  # convolution's overflow to +-inf depends on its summation order.
  model = _pool_model(pool_size, strides, padding, 2)
  guarded = port.load(model).predict(x, batch_size=batch_size)
  # (port.compare also holds the port to the float64 reference's NaN/±inf kinds.)
  parity.assert_outputs_match(model, guarded, x)


def test_finite_inputs_take_the_fast_path_and_match_keras():
  model = _pool_model((2, 2), None, "valid", 4)
  jm = port.load(model)
  x = np.random.default_rng(1).normal(size=(6,) + INPUT).astype(np.float32)
  out, needs_exact = jax.jit(jm.apply_fast)(jm.params, x)
  assert not bool(needs_exact)
  np.testing.assert_allclose(out, jm.apply(jm.params, x), atol=1e-6, rtol=0)
  parity.assert_matches_keras(model, x)
  x[2, 4, 4, 1] = np.inf
  assert bool(jax.jit(jm.apply_fast)(jm.params, x)[1])  # a non-finite input flags


def test_a_model_without_fast_forms_never_flags():
  model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
  jm = port.load(model)
  x = np.full((2, 4), np.nan, np.float32)
  assert not bool(jm.apply_fast(jm.params, x)[1])
  assert not guards.has_fast_paths(lambda v: jm.apply(jm.params, v), x)


def _flags(layer, x):
  flags = []
  token = guards._MODE.set(flags)  # what fast_pass does, without its input check
  try:
    layer.apply({}, jnp.asarray(x))
  finally:
    guards._MODE.reset(token)
  return [bool(f) for f in flags]


def test_pooling_flags_nan_and_all_minus_inf_windows_only():
  layer = pooling.MaxPooling2D(name="pool", pool_size=(2, 2))
  x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
  for value, fires in [(np.inf, False), (-np.inf, False)]:
    poisoned = x.copy()
    poisoned[0, 0, 0, 0] = value
    assert _flags(layer, poisoned) == [fires], value
  all_minus_inf = x.copy()
  all_minus_inf[1, 2:4, 0:2, 0] = -np.inf
  assert _flags(layer, all_minus_inf) == [True]
  all_nan = x.copy()
  all_nan[1, 2:4, 0:2, 0] = np.nan  # NaN or -inf out, whichever max XLA uses
  assert _flags(layer, all_nan) == [True]


def test_a_layer_on_its_own_is_exact():
  layer = pooling.MaxPooling2D(name="pool", pool_size=(2, 2))
  x = np.full((1, 2, 2, 1), -np.inf, np.float32)
  x_nan = np.array([np.nan, 1.0, 2.0, np.nan], np.float32).reshape(1, 2, 2, 1)
  assert not guards.fast_path_allowed()
  assert float(layer.apply({}, x)[0].ravel()[0]) == np.finfo(np.float32).min
  assert float(layer.apply({}, x_nan)[0].ravel()[0]) == 2.0
  with pytest.raises(RuntimeError, match="outside a guarded"):
    guards.use_exact_path_if(jnp.asarray(True))


def test_small_inputs_keep_the_exact_pass():
  model = _pool_model((2, 2), None, "valid", 4)
  jm = port.load(model)
  x = np.random.default_rng(1).normal(size=(2,) + INPUT).astype(np.float32)
  assert jm.has_fast_paths(x)
  with settings.override(fast_pool_min_floats=2 * 7 * 9 * 4 + 1):
    small = port.load(model)
    assert not small.has_fast_paths(x)
    np.testing.assert_array_equal(small.predict(x), jm.apply(jm.params, x))
