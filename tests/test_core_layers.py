"""Dense/activation/shape layers: parity with Keras, config rejection."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import port
from jaxnets import activations
from tests import parity

ACTIVATIONS = [
  "linear",
  "relu",
  "sigmoid",
  "tanh",
  "softmax",
  "gelu",
  "elu",
  "selu",
  "softplus",
  "swish",
  "silu",
  "leaky_relu",
  "hard_sigmoid",
  "relu6",
  "softsign",
  "mish",
  "exponential",
  "hard_silu",
  "log_softmax",
]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_matches_keras(activation, use_bias):
  model = keras.Sequential(
    [
      keras.Input((7,)),
      keras.layers.Dense(5, activation=activation, use_bias=use_bias),
      keras.layers.Dense(4, activation="softmax"),
    ]
  )
  parity.randomize_weights(model, seed=3)
  x = np.random.default_rng(1).normal(size=(19, 7)).astype(np.float32)
  parity.assert_matches_keras(model, x)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_layer_matches_keras(name):
  model = keras.Sequential([keras.Input((3, 6)), keras.layers.Activation(name)])
  x = np.random.default_rng(2).normal(scale=1.5, size=(5, 3, 6)).astype(np.float32)
  parity.assert_matches_keras(model, x, classifier=False)


@pytest.mark.parametrize(
  "kwargs",
  [
    {},
    {"max_value": 1.5},
    {"negative_slope": 0.1},
    {"threshold": 0.4, "negative_slope": 0.2},
    {"threshold": 0.3, "max_value": 6.0},
    {"max_value": 6.0},
  ],
)
def test_relu_layer_matches_keras(kwargs):
  model = keras.Sequential([keras.Input((10,)), keras.layers.ReLU(**kwargs)])
  x = np.random.default_rng(4).normal(scale=2.0, size=(8, 10)).astype(np.float32)
  parity.assert_matches_keras(model, x, classifier=False)


def test_dense_on_sequences_and_reshape_flatten():
  model = keras.Sequential(
    [
      keras.Input((4, 3)),
      keras.layers.Dense(6, activation="tanh"),
      keras.layers.Reshape((6, 4)),
      keras.layers.Flatten(),
      keras.layers.LeakyReLU(negative_slope=0.05),
      keras.layers.Dropout(0.5),
      keras.layers.Softmax(),
    ]
  )
  parity.randomize_weights(model, seed=5)
  x = np.random.default_rng(5).normal(size=(9, 4, 3)).astype(np.float32)
  parity.assert_matches_keras(model, x)


def test_every_activation_name_is_known_to_keras():
  for name in activations.NAMES:
    keras.activations.get(name)


def test_unsupported_options_are_listed_all_at_once():
  model = keras.Sequential(
    [
      keras.Input((6,)),
      keras.layers.Dense(3),
      keras.layers.Dense(4, dtype="float64", name="wide"),
      keras.layers.Dense(2, activation=lambda t: t * 2, name="custom"),
    ]
  )
  problems = port.unsupported(model)
  assert [p[0] for p in problems] == ["wide", "custom"]
  assert "float64" in problems[0][2]
  with pytest.raises(port.UnsupportedLayerError, match=r"(?s)'wide'.*float64.*'custom'"):
    port.load(model)


def test_dropout_noise_shape_ports_and_drops_whole_broadcast_units():
  """EfficientNet's stochastic depth: Dropout(noise_shape=(None, 1, 1, 1))."""
  model = keras.Sequential(
    [keras.Input((3, 4, 5)), keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), name="drop")]
  )
  ported = port.load(model)
  x = np.random.default_rng(0).normal(size=(64, 3, 4, 5)).astype(np.float32)
  np.testing.assert_array_equal(ported.predict(x), x)  # identity at inference, as Keras
  layer = ported.layers[0]
  y, _ = layer.apply({}, jnp.asarray(x), training=True, rng=jax.random.key(1))
  kept = np.asarray(y).reshape(64, -1) != 0
  assert np.all(kept.all(axis=1) | ~kept.any(axis=1))  # each example kept or dropped whole
  assert 10 < kept.all(axis=1).sum() < 54
  np.testing.assert_allclose(np.asarray(y)[kept.all(axis=1)], 2 * x[kept.all(axis=1)], rtol=1e-6)
  assert port.to_keras(ported).layers[0].noise_shape == (None, 1, 1, 1)


def test_nested_sequential_is_flattened():
  inner = keras.Sequential(
    [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(4)],
    name="inner",
  )
  outer = keras.Sequential([keras.Input((6,)), inner, keras.layers.Dense(3, activation="softmax")])
  parity.randomize_weights(outer, seed=6)
  x = np.random.default_rng(6).normal(size=(7, 6)).astype(np.float32)
  model = parity.assert_matches_keras(outer, x)
  assert len(model.layers) == 3
