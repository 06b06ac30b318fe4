"""Merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)
against Keras: every option, inputs of different ranks, and masks.

A masked case feeds two token inputs through ``Embedding(mask_zero=True)``
(different padding per row) and an unmasked branch; the model returns the
merged tensor itself and a mask-aware ``GlobalAveragePooling1D`` of it, so both
the values (Multiply/Maximum/Minimum rewrite masked steps) and the mask Keras
propagates are compared.
"""

import jax
import keras
import numpy as np
import pytest

import port
from tests import parity
from tests.test_graphs import _compare, _keras_output

L = keras.layers
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def _check(keras_model, x, seed=0):
  parity.randomize_weights(keras_model, seed=seed)
  want = _keras_output(keras_model, x)
  model = port.load(keras_model)
  _compare("jitted predict", model.predict(x), want, keras_model, x)
  with jax.disable_jit():
    unjitted = model.apply(model.params, model.prepare_inputs(x))
  _compare("un-jitted apply", unjitted, want, keras_model, x)
  return model


def _floats(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _token_inputs(length=9, batch=6):
  rng = np.random.default_rng(1)
  a = rng.integers(1, 20, (batch, length))
  b = rng.integers(1, 20, (batch, length))
  a[:, 6:] = 0
  a[1, 2:] = 0
  b[:, 4:] = 0
  b[3, 7:] = 0
  b[3, :7] = rng.integers(1, 20, 7)
  return a, b


@pytest.mark.parametrize(
  "name,count",
  [(n, 2) for n in ELEMENTWISE] + [(n, 3) for n in ELEMENTWISE if n != "Subtract"],
)
def test_elementwise(name, count):
  inputs = [keras.Input((5, 4)) for _ in range(count)]
  branches = [L.Dense(4)(x) for x in inputs]
  merged = getattr(L, name)()(branches)
  model = keras.Model(inputs, L.Dense(3)(L.Flatten()(merged)))
  _check(model, [_floats(5, 5, 4, seed=i) for i in range(count)])


@pytest.mark.parametrize("name", ["Add", "Multiply", "Maximum", "Average"])
def test_elementwise_broadcasts_lower_rank(name):
  """Keras inserts size-1 axes at axis 1 into the lower-rank input."""
  a_in, b_in = keras.Input((6, 4)), keras.Input((4,))
  merged = getattr(L, name)()([L.Dense(4)(a_in), L.Dense(4)(b_in)])
  _check(keras.Model([a_in, b_in], merged), [_floats(3, 6, 4), _floats(3, 4, seed=1)])


@pytest.mark.parametrize("name", ELEMENTWISE + ["Concatenate"])
@pytest.mark.parametrize("masks", ["both", "first"])
def test_masks(name, masks):
  a_in = keras.Input((None,), dtype="int32")
  b_in = keras.Input((None,), dtype="int32")
  a = L.Embedding(20, 4, mask_zero=True)(a_in)
  b = L.Embedding(20, 4, mask_zero=masks == "both")(b_in)
  merged = getattr(L, name)()([a, b])
  pooled = L.GlobalAveragePooling1D()(merged)  # averages the steps the mask keeps
  _check(keras.Model([a_in, b_in], [merged, pooled]), list(_token_inputs()))


@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
def test_concatenate_axes(axis):
  a_in, b_in = keras.Input((5, 3)), keras.Input((5, 3))
  merged = L.Concatenate(axis=axis)([L.Dense(3)(a_in), b_in])
  _check(keras.Model([a_in, b_in], merged), [_floats(4, 5, 3), _floats(4, 5, 3, seed=1)])


@pytest.mark.parametrize("axis", [1, -1])
def test_concatenate_masks_along_time(axis):
  a_in = keras.Input((None,), dtype="int32")
  b_in = keras.Input((None,), dtype="int32")
  a = L.Embedding(20, 4, mask_zero=True)(a_in)
  b = L.Embedding(20, 4, mask_zero=True)(b_in)
  merged = L.Concatenate(axis=axis)([a, b])
  pooled = L.GlobalAveragePooling1D()(merged)
  _check(keras.Model([a_in, b_in], [merged, pooled]), list(_token_inputs()))


# (shape a, shape b, axes, normalize)
DOT_CASES = [
  ((5, 4), (7, 4), (2, 2), False),
  ((5, 4), (7, 4), (2, 2), True),
  ((4, 5), (4, 7), 1, False),
  ((5, 4), (4, 7), (2, 1), True),
  ((6,), (6,), 1, False),
  ((6,), (6,), -1, True),
  ((6,), (3, 6), (1, 2), False),
  ((3, 6), (6,), (2, 1), False),
  ((2, 3, 4), (4, 5), (3, 1), False),
]


@pytest.mark.parametrize("shape_a,shape_b,axes,normalize", DOT_CASES, ids=str)
def test_dot(shape_a, shape_b, axes, normalize):
  a_in, b_in = keras.Input(shape_a), keras.Input(shape_b)
  merged = L.Dot(axes=axes, normalize=normalize)([a_in, b_in])
  model = _check(
    keras.Model([a_in, b_in], merged), [_floats(3, *shape_a), _floats(3, *shape_b, seed=1)]
  )
  assert type(model.layers[-1]).__name__ == "Dot"


def test_merge_layers_round_trip_through_save(tmp_path):
  a_in, b_in = keras.Input((5, 4)), keras.Input((5, 4))
  x = L.Concatenate()([L.Add()([a_in, b_in]), L.Multiply()([a_in, b_in])])
  x = L.Dot(axes=2, normalize=True)([x, x])
  keras_model = keras.Model([a_in, b_in], L.Maximum()([x, L.Minimum()([x, x])]))
  x_in = [_floats(3, 5, 4), _floats(3, 5, 4, seed=1)]
  model = _check(keras_model, x_in)
  import jaxnets  # pylint: disable=import-outside-toplevel

  loaded = jaxnets.load(model.save(tmp_path / "merge"))
  np.testing.assert_array_equal(loaded.predict(x_in), model.predict(x_in))
