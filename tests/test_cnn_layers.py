"""CNN layers (Conv, pooling, global pooling, BatchNormalization): parity with Keras.

Every case builds a small Keras model with seeded random (asymmetric) weights,
ports it and compares jitted ``predict`` and un-jitted ``apply`` with Keras's
own forward pass (``tests/parity.py``). Odd input sizes (7x9, 11x13) exercise
TF's asymmetric ``same`` padding and windows that do not tile the input.

2-D convolution cases run under every algorithm ``jaxnets.conv_algorithms``'s
rule can choose (the ``conv_algorithm`` fixture forces each one wherever it
applies), plus ``auto`` for whole models.
"""

import itertools

import jax
import keras
import numpy as np
import pytest

import port
from jaxnets import layers as jlayers
from jaxnets import settings
from jaxnets.layers import conv as jconv
from jaxnets.layers import pooling as jpooling
from tests import parity

L = keras.layers
ODD_SIZES = [(7, 9), (11, 13)]


CHOSEN_ALGORITHMS = ("direct", "winograd_f2", "im2col")


@pytest.fixture(params=CHOSEN_ALGORITHMS)
def conv_algorithm(request):
  """Runs the test with 2-D convolutions forced to one algorithm (where it applies)."""
  with settings.override(conv_algorithm=request.param):
    yield request.param


def _images(shape, seed=0, batch=5):
  return np.random.default_rng(seed).normal(size=(batch,) + tuple(shape)).astype(np.float32)


def _check(layers, input_shape, *, seed=0, classifier=False, batch=5):
  model = keras.Sequential([keras.Input(input_shape)] + list(layers))
  parity.randomize_weights(model, seed=seed)
  return parity.assert_matches_keras(
    model, _images(input_shape, seed, batch), classifier=classifier
  )


# (kernel_size, strides, dilation_rate, activation, use_bias, in_channels)
CONV2D_CASES = [
  ((3, 3), (1, 1), (1, 1), "relu", True, 3),
  ((2, 5), (2, 1), (1, 1), "linear", False, 2),
  ((1, 1), (1, 1), (1, 1), "tanh", True, 4),
  ((4, 3), (3, 2), (1, 1), "sigmoid", True, 3),
  ((3, 2), (1, 1), (2, 3), "gelu", True, 5),
  ((5, 5), (2, 2), (1, 1), "elu", False, 1),
]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
  "kernel,strides,dilation,activation,use_bias,channels",
  CONV2D_CASES,
  ids=lambda v: str(v).replace(" ", ""),
)
def test_conv2d_matches_keras(
  padding, size, kernel, strides, dilation, activation, use_bias, channels, conv_algorithm
):
  _check(
    [
      L.Conv2D(
        4,
        kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        activation=activation,
        use_bias=use_bias,
      )
    ],
    size + (channels,),
  )


@pytest.mark.parametrize("activation", ["relu", "softmax", "swish", "leaky_relu", "selu"])
def test_conv2d_activations_then_dense_classifier(activation, conv_algorithm):
  _check(
    [
      L.Conv2D(6, 3, padding="same", activation=activation),
      L.Flatten(),
      L.Dense(4, activation="softmax"),
    ],
    (7, 9, 3),
    seed=2,
    classifier=True,
    batch=9,
  )


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_grouped_conv2d_matches_keras(padding):
  _check([L.Conv2D(6, (3, 2), groups=3, padding=padding, activation="relu")], (7, 9, 6))


@pytest.mark.parametrize(
  "padding,strides,dilation",
  [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2), ("causal", 3, 1), ("same", 1, 3)],
)
def test_conv1d_matches_keras(padding, strides, dilation):
  _check(
    [L.Conv1D(5, 3, strides=strides, padding=padding, dilation_rate=dilation, activation="tanh")],
    (13, 3),
  )


# (pool_size, strides); strides=None means "the pool size", Keras's default.
POOL2D_CASES = [
  ((2, 2), None),
  ((3, 3), (2, 2)),
  ((2, 3), (1, 1)),
  ((3, 2), (2, 1)),
  ((4, 4), None),
]


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool_size,strides", POOL2D_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_pooling2d_matches_keras(kind, padding, pool_size, strides):
  layer_class = L.MaxPooling2D if kind == "max" else L.AveragePooling2D
  # A positive-and-negative input: max pooling must not pick a padded zero.
  for size in ODD_SIZES:
    _check([layer_class(pool_size, strides=strides, padding=padding)], size + (3,))


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize(
  "padding,pool_size,strides", [("valid", 2, None), ("same", 3, 2), ("same", 2, 1), ("valid", 4, 3)]
)
def test_pooling1d_matches_keras(kind, padding, pool_size, strides):
  layer_class = L.MaxPooling1D if kind == "max" else L.AveragePooling1D
  _check([layer_class(pool_size, strides=strides, padding=padding)], (13, 3))


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling2d_matches_keras(kind, keepdims):
  layer_class = L.GlobalMaxPooling2D if kind == "max" else L.GlobalAveragePooling2D
  _check([L.Conv2D(4, 3, activation="relu"), layer_class(keepdims=keepdims)], (11, 13, 3))


@pytest.mark.parametrize("center,scale", itertools.product([True, False], repeat=2))
def test_batch_normalization_matches_keras(center, scale):
  _check(
    [L.Conv2D(4, 3), L.BatchNormalization(center=center, scale=scale, epsilon=0.01), L.ReLU()],
    (7, 9, 3),
  )


@pytest.mark.parametrize("axis", [1, 2, -2])
def test_batch_normalization_other_axes_matches_keras(axis):
  _check([L.BatchNormalization(axis=axis)], (7, 9, 3))


def test_batch_normalization_after_dense_matches_keras():
  _check(
    [L.Dense(6), L.BatchNormalization(epsilon=1e-5), L.Dense(3, activation="softmax")],
    (10,),
    classifier=True,
    batch=11,
  )


def _spec_cnn(pooling="max"):
  pool = L.MaxPooling2D if pooling == "max" else L.AveragePooling2D
  stack = [keras.Input((32, 32, 3))]
  for filters in (32, 64, 128):
    stack += [L.Conv2D(filters, 3, padding="same", activation="relu"), pool(2)]
  stack += [
    L.Flatten(),
    L.Dense(128, activation="relu"),
    L.Dropout(0.5),
    L.Dense(10, activation="softmax"),
  ]
  return keras.Sequential(stack)


@pytest.mark.parametrize("algorithm", ("auto",) + CHOSEN_ALGORITHMS)
@pytest.mark.parametrize("pooling", ["max", "average"])
def test_spec_cnn_matches_keras(pooling, algorithm):
  """The spec's CIFAR-10 CNN: values within 1e-5 and identical argmax."""
  with settings.override(conv_algorithm=algorithm):
    _check_spec_cnn(pooling)


def _check_spec_cnn(pooling):
  model = _spec_cnn(pooling)
  parity.randomize_weights(model, seed=11, scale=0.1)
  x = np.random.default_rng(11).uniform(size=(70, 32, 32, 3)).astype(np.float32)
  ported = parity.assert_matches_keras(model, x, classifier=True)
  assert ported.param_count == model.count_params()


def test_functional_cnn_with_batch_norm_matches_keras(conv_algorithm):
  inputs = keras.Input((11, 13, 3))
  h = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
  h = L.BatchNormalization()(h)
  h = L.Activation("relu")(h)
  h = L.AveragePooling2D(2, padding="same")(h)
  h = L.GlobalAveragePooling2D()(h)
  outputs = L.Dense(5, activation="softmax")(h)
  model = keras.Model(inputs, outputs)
  parity.randomize_weights(model, seed=4)
  parity.assert_matches_keras(model, _images((11, 13, 3), seed=4, batch=12))


# ------------------------------------------------------------- jaxnets side
def test_init_uses_keras_shapes_and_defaults():
  model = keras.Sequential(
    [
      keras.Input((7, 9, 3)),
      L.Conv2D(4, (2, 3)),
      L.BatchNormalization(),
      L.Conv2D(6, 3, groups=2, use_bias=False),
      L.GlobalMaxPooling2D(),
    ]
  )
  ported = port.load(model)
  fresh = ported.init(jax.random.PRNGKey(0))
  ported_shapes = jax.tree_util.tree_map(lambda a: a.shape, ported.params)
  assert jax.tree_util.tree_map(lambda a: a.shape, fresh) == ported_shapes
  bn = fresh[model.layers[1].name]
  np.testing.assert_array_equal(bn["gamma"], 1.0)
  np.testing.assert_array_equal(bn["moving_variance"], 1.0)
  np.testing.assert_array_equal(bn["beta"], 0.0)
  np.testing.assert_array_equal(bn["moving_mean"], 0.0)
  conv = fresh[model.layers[0].name]
  np.testing.assert_array_equal(conv["bias"], 0.0)
  limit = np.sqrt(6.0 / (2 * 3 * 3 + 2 * 3 * 4))  # glorot: fans times receptive field
  assert 0.5 * limit < np.abs(conv["kernel"]).max() <= limit


@pytest.mark.parametrize(
  "layer",
  [
    jlayers.conv.Conv2D(
      name="c",
      filters=4,
      kernel_size=(2, 3),
      strides=(2, 1),
      padding="same",
      dilation_rate=(1, 1),
      activation="relu",
    ),
    jlayers.conv.Conv1D(name="c1", filters=2, kernel_size=(3,), padding="causal"),
    jlayers.pooling.AveragePooling2D(name="p", pool_size=(3, 2), padding="same"),
    jlayers.pooling.MaxPooling1D(name="p1", pool_size=(2,)),
    jlayers.pooling.GlobalMaxPooling2D(name="g", keepdims=True),
    jlayers.normalization.BatchNormalization(name="bn", epsilon=0.01, center=False),
  ],
  ids=lambda l: type(l).__name__,
)
def test_layer_config_round_trips(layer):
  rebuilt = jlayers.layer_class(type(layer).__name__).from_config(layer.get_config())
  assert rebuilt == layer


def test_same_padding_puts_the_extra_cell_after():
  assert jconv.same_padding(7, 2, 1) == (0, 1)
  assert jconv.same_padding(8, 3, 2) == (0, 1)
  assert jconv.same_padding(7, 3, 2) == (1, 1)
  assert jconv.same_padding(9, 3, 1, dilation=2) == (2, 2)
  assert jconv.same_padding(9, 4, 1) == (1, 2)


def test_layer_hyper_parameters_are_validated():
  with pytest.raises(ValueError, match="causal"):
    jconv.Conv2D(name="c", filters=2, kernel_size=(3, 3), padding="causal")
  with pytest.raises(ValueError, match="groups"):
    jconv.Conv2D(name="c", filters=3, kernel_size=(3, 3), groups=2)
  with pytest.raises(ValueError, match="pool_size"):
    jpooling.MaxPooling2D(name="p", pool_size=(2,))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
  "layer,input_shape",
  [
    (L.Conv2D(4, 3, data_format="channels_first", name="cf_conv"), (3, 8, 8)),
    (L.MaxPooling2D(2, data_format="channels_first", name="cf_pool"), (3, 8, 8)),
    (L.GlobalAveragePooling2D(data_format="channels_first", name="cf_gap"), (3, 8, 8)),
    (L.Conv1D(4, 3, data_format="channels_first", name="cf_conv1d"), (3, 8)),
  ],
)
def test_channels_first_is_rejected_naming_layer_and_option(layer, input_shape):
  model = keras.Sequential([keras.Input(input_shape), layer])
  with pytest.raises(
    port.UnsupportedLayerError, match=rf"'{layer.name}'.*data_format='channels_first'"
  ):
    port.load(model)


def test_unsupported_cnn_layer_class_is_named():
  model = keras.Sequential(
    [
      keras.Input((8, 8, 3)),
      L.AdaptiveMaxPooling2D((4, 4), name="adaptive"),
      L.Conv2D(2, 3, activation=lambda t: t * 2, name="custom_act"),
      L.GlobalAveragePooling2D(),
    ]
  )
  problems = port.unsupported(model)
  assert [(name, cls) for name, cls, _ in problems] == [
    ("adaptive", "AdaptiveMaxPooling2D"),
    ("custom_act", "Conv2D"),
  ]
  assert "no jaxnets converter" in problems[0][2]
  assert "activation" in problems[1][2]
  with pytest.raises(port.UnsupportedLayerError, match=r"(?s)'adaptive'.*'custom_act'"):
    port.load(model)


def test_unknown_conv_option_is_rejected_naming_it():
  layer = L.Conv2D(2, 3, name="odd_conv")
  layer.get_config = lambda: {**L.Conv2D(2, 3).get_config(), "name": "odd_conv", "padding": "full"}
  model = keras.Sequential([keras.Input((8, 8, 3)), layer])
  with pytest.raises(port.UnsupportedLayerError, match=r"'odd_conv'.*padding='full'"):
    port.load(model)


@pytest.mark.parametrize(
  "shape,pool,padding",
  [
    ((2, 8, 6, 3), (2, 2), "valid"),
    ((2, 9, 7, 3), (2, 2), "valid"),
    ((2, 9, 9, 2), (3, 3), "valid"),
    ((2, 8, 8, 1), (2, 4), "same"),
  ],
)
def test_training_max_pool_equals_inference_max_pool(shape, pool, padding):
  """The tiled reshape-max used in training (cheap gradient) = reduce_window."""
  layer = jpooling.MaxPooling2D(name="pool", pool_size=pool, padding=padding)
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  inference, _ = layer.apply({}, x)
  training, _ = layer.apply({}, x, training=True, rng=None)
  np.testing.assert_array_equal(np.asarray(training), np.asarray(inference))
