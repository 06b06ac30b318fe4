"""Normalisation, activation and input-scaling layers: parity with Keras.

LayerNormalization, GroupNormalization, UnitNormalization, Rescaling,
Normalization, PReLU, ELU, ReLU/LeakyReLU options, Softmax axes and masks.
Every case builds a small Keras model with seeded random (asymmetric) weights,
odd sizes, and compares jitted ``predict`` and un-jitted ``apply`` with Keras's
forward pass (``tests/parity.py``). Whole models also go through a saved
``.keras`` file, ``port.to_keras`` and a ``jaxnets.load`` reload in a process
where TensorFlow and Keras cannot be imported.
"""

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from port import registry
from tests import parity

L = keras.layers


def _data(shape, seed=0, batch=5, scale=1.5, loc=0.3):
  rng = np.random.default_rng(seed)
  return rng.normal(loc, scale, size=(batch,) + tuple(shape)).astype(np.float32)


def _check(layers, input_shape, *, seed=0, batch=5, x=None):
  model = keras.Sequential([keras.Input(input_shape)] + list(layers))
  parity.randomize_weights(model, seed=seed)
  x = _data(input_shape, seed, batch) if x is None else x
  return parity.assert_matches_keras(model, x, classifier=False)


# ------------------------------------------------------------ LayerNormalization

LAYER_NORM_CASES = [
  ({}, (7,)),
  ({"axis": -1, "epsilon": 1e-5}, (5, 9)),
  ({"axis": 1}, (5, 9)),
  ({"axis": [1, 2]}, (5, 9)),
  ({"axis": [2, 3]}, (3, 5, 7)),
  ({"axis": [1, 3]}, (3, 5, 7)),
  ({"axis": [-1, 1]}, (3, 5, 7)),  # Keras reshapes gamma (7, 3) onto (3, 1, 7): reproduced
  ({"axis": [1, 2, 3]}, (3, 5, 7)),
  ({"center": False}, (5, 9)),
  ({"scale": False}, (5, 9)),
  ({"center": False, "scale": False, "epsilon": 0.1}, (5, 9)),
  ({"rms_scaling": True}, (5, 9)),
  ({"rms_scaling": True, "axis": [1, 2]}, (5, 9)),
  ({"rms_scaling": True, "scale": False}, (5, 9)),
]


# Keras warns that rms_scaling is deprecated (it divides by the standard
# deviation, not the RMS); ported models still carry it, so it is reproduced.
@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize(
  "kwargs,shape", LAYER_NORM_CASES, ids=lambda v: str(v).replace(" ", "").replace("'", "")
)
def test_layer_normalization_matches_keras(kwargs, shape):
  _check([L.LayerNormalization(**kwargs)], shape, seed=1)


# ------------------------------------------------------------ GroupNormalization

GROUP_NORM_CASES = [
  ({"groups": 3}, (5, 7, 6)),
  ({"groups": 1}, (5, 7, 6)),
  ({"groups": -1}, (5, 7, 6)),
  ({"groups": 2, "axis": 1}, (4, 3)),
  ({"groups": 3, "axis": 2}, (5, 9, 2)),
  ({"groups": 3, "axis": -2}, (5, 9, 2)),
  ({"groups": 2, "center": False, "epsilon": 1e-5}, (9, 4)),
  ({"groups": 2, "scale": False}, (9, 4)),
  ({"groups": 5}, (10,)),
]


@pytest.mark.parametrize(
  "kwargs,shape", GROUP_NORM_CASES, ids=lambda v: str(v).replace(" ", "").replace("'", "")
)
def test_group_normalization_matches_keras(kwargs, shape):
  _check([L.GroupNormalization(**kwargs)], shape, seed=2)


@pytest.mark.parametrize("axis,shape", [(-1, (7,)), (1, (5, 9)), ([1, 2], (5, 9)), (2, (3, 5, 7))])
def test_unit_normalization_matches_keras(axis, shape):
  _check([L.UnitNormalization(axis=axis)], shape)


def test_unit_normalization_of_zeros_is_zero_like_keras():
  x = np.zeros((3, 4), np.float32)
  x[1] = 1e-30  # rsqrt overflows to inf; Keras caps it at 1e12
  _check([L.UnitNormalization()], (4,), x=x)


# ------------------------------------------------------------ activations


@pytest.mark.parametrize(
  "shared_axes,shape",
  [(None, (7,)), (None, (5, 9)), ([1], (5, 9)), ([1, 2], (3, 5, 4)), (2, (3, 5, 4))],
)
def test_prelu_matches_keras(shared_axes, shape):
  _check([L.PReLU(shared_axes=shared_axes)], shape, seed=3)


@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5, 0.0])
def test_elu_matches_keras(alpha):
  _check([L.ELU(alpha=alpha)], (5, 9))


@pytest.mark.parametrize(
  "kwargs",
  [
    {"max_value": 2.5, "negative_slope": 0.1},
    {"max_value": 6.0, "negative_slope": 0.3, "threshold": 0.5},
    {"max_value": 0.5, "threshold": 1.0},
    {"threshold": 0.7},
  ],
)
def test_relu_option_combinations_match_keras(kwargs):
  _check([L.ReLU(**kwargs)], (5, 9))


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3, 1.5])
def test_leaky_relu_negative_slope_matches_keras(slope):
  _check([L.LeakyReLU(negative_slope=slope)], (5, 9))


@pytest.mark.parametrize("axis", [-1, 1, 2, [1, 2], [1, 3], (-1,)])
def test_softmax_axes_match_keras(axis):
  _check([L.Softmax(axis=axis)], (3, 5, 4))


@pytest.mark.parametrize("axis", [-1, [1, 2]])
def test_softmax_applies_a_mask_like_keras(axis):
  # (batch, time) logits with a (batch, time) mask, one row fully masked: Keras
  # sets masked logits to -1e9 and masked outputs to 0 (not a uniform row).
  from jaxnets.layers import core  # pylint: disable=import-outside-toplevel

  x = _data((7,), seed=5, batch=4)[:, None, :] * np.ones((1, 3, 1), np.float32)
  mask = np.random.default_rng(5).random((4, 3, 7)) > 0.4
  mask[2] = False
  expected = np.asarray(L.Softmax(axis=axis)(x, mask=mask))
  reference = np.asarray(L.Softmax(axis=axis, dtype="float64")(x.astype(np.float64), mask=mask))
  layer = core.Softmax(name="softmax", axis=tuple(axis) if isinstance(axis, list) else axis)
  for run in (layer.apply, jax.jit(layer.apply)):
    got, got_mask = run({}, x, mask)
    comparison = port.comparison.judge(np.asarray(got), expected, reference, classifier=False)
    assert comparison.ok, comparison.verdict()
    np.testing.assert_array_equal(np.asarray(got_mask), mask)
  assert np.all(expected[2] == 0)


# ------------------------------------------------------------ Rescaling


@pytest.mark.parametrize(
  "scale,offset",
  [
    (1.0 / 255, 0.0),
    (1.0 / 127.5, -1.0),
    (np.array([0.5, -2.0, 3.0], np.float32), 0.25),
    ([1.5, 0.1, -0.7], [0.5, 0.1, 0.2]),
    (2.0, np.array([[0.1, 0.2, 0.3]], np.float32)),
  ],
  ids=["scalar", "minus-one", "per-channel-numpy", "per-channel-lists", "offset-2d"],
)
def test_rescaling_matches_keras(scale, offset):
  _check([L.Rescaling(scale, offset=offset)], (5, 7, 3), x=_data((5, 7, 3), scale=100, loc=120))


# ------------------------------------------------------------ Normalization


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize(
  "axis,shape", [(-1, (4,)), (-1, (5, 3)), (None, (5, 3)), ((1, 2), (5, 3)), (1, (5, 3))]
)
def test_adapted_normalization_matches_keras(axis, shape, invert):
  layer = L.Normalization(axis=axis, invert=invert)
  # Asymmetric statistics: each feature its own mean and spread.
  data = _data(shape, seed=7, batch=40) * np.linspace(0.5, 3.0, shape[-1]) + np.arange(shape[-1])
  layer.adapt(data)
  model = keras.Sequential([keras.Input(shape), layer, L.Dense(3)])
  parity.randomize_weights(model, seed=7)
  layer.adapt(data)  # randomize_weights drew over the statistics too
  parity.assert_matches_keras(model, _data(shape, seed=8, batch=6, scale=3), classifier=False)


@pytest.mark.parametrize(
  "axis,mean,variance,shape",
  [
    (-1, [1.0, -2.0, 0.5], [4.0, 0.25, 1e-20], (3,)),  # a tiny variance: epsilon floors sqrt
    (-1, 3.0, 2.0, (5, 3)),
    ((1, 2), [[0.1, 0.2, 0.3]], [[1.0, 2.0, 3.0]], (2, 3)),
    ((1, 2), [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], (2, 3)),
    (None, 0.5, 4.0, (2, 3)),
  ],
)
@pytest.mark.parametrize("invert", [False, True])
def test_configured_normalization_matches_keras(axis, mean, variance, shape, invert):
  _check([L.Normalization(axis=axis, mean=mean, variance=variance, invert=invert)], shape)


# ------------------------------------------------------------ whole models


def _image_model():
  inputs = keras.Input((9, 7, 4))
  return keras.Sequential(
    [
      inputs,
      L.Rescaling(1.0 / 255, offset=-0.5),
      L.Conv2D(6, 3, padding="same"),
      L.GroupNormalization(groups=3),
      L.PReLU(shared_axes=[1, 2]),
      L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-4),
      L.ELU(alpha=0.7),
      L.UnitNormalization(axis=[1, 2]),
      L.Flatten(),
      L.ReLU(max_value=3.0, negative_slope=0.05, threshold=0.01),
      L.Dense(5),
      L.Softmax(),
    ],
    name="norm_act_model",
  )


def test_whole_model_through_a_keras_file_to_keras_and_jaxnets_load(tmp_path):
  keras_model = _image_model()
  parity.randomize_weights(keras_model, seed=11)
  x = _data((9, 7, 4), seed=11, batch=7, scale=80, loc=128)
  expected = np.asarray(keras_model(x, training=False))

  path = tmp_path / "model.keras"
  keras_model.save(path)
  model = parity.assert_matches_keras(keras.saving.load_model(path), x)
  from_file = port.load(path)
  parity.assert_outputs_match(keras_model, from_file.predict(x), x, keras_outputs=expected)

  # jaxnets -> Keras: the inverse rebuilds the same model.
  rebuilt = port.to_keras(model)
  parity.assert_outputs_match(rebuilt, model.predict(x), x, label="to_keras")

  # Saved by jaxnets, reloaded with TensorFlow and Keras blocked: same numbers.
  saved = model.save(tmp_path / "jaxnets_model")
  got = parity.predict_saved_without_tensorflow(saved, list(x), tmp_path)
  np.testing.assert_allclose(got, model.predict(x), atol=0, rtol=0)
  assert "(GroupNormalization)" in jaxnets.load(saved).summary()


def test_normalization_round_trips_through_to_keras_and_jaxnets_load(tmp_path):
  layer = L.Normalization(axis=-1)
  layer.adapt(_data((4,), seed=3, batch=30) * [1.0, 2.0, 3.0, 4.0])
  keras_model = keras.Sequential(
    [keras.Input((4,)), layer, L.Normalization(mean=[1.0, 2, 3, 4], variance=[1.0, 4, 9, 16])]
  )
  x = _data((4,), seed=4, batch=6)
  model = parity.assert_matches_keras(keras_model, x, classifier=False)
  rebuilt = port.to_keras(model)
  parity.assert_outputs_match(rebuilt, model.predict(x), x, label="to_keras", classifier=False)
  reloaded = jaxnets.load(model.save(tmp_path / "m"))
  np.testing.assert_array_equal(reloaded.predict(x), model.predict(x))


def test_jitted_and_unjitted_agree_for_every_new_layer():
  # Both against Keras (parity.assert_matches_keras runs jitted and un-jitted).
  keras_model = _image_model()
  parity.randomize_weights(keras_model, seed=12)
  parity.assert_matches_keras(keras_model, _data((9, 7, 4), seed=12, batch=3))


# ------------------------------------------------------------ refusals


def test_normalizations_over_the_batch_axis_are_refused_by_name():
  config = {"axis": [0, 1], "epsilon": 1e-3, "center": True, "scale": True}
  reader = registry.ConfigReader("ln", "LayerNormalization", config)
  with pytest.raises(registry.UnsupportedLayerError, match=r"'ln'.*axis 0, the batch axis"):
    registry.converter_for("LayerNormalization").build(reader)
  reader = registry.ConfigReader("sm", "Softmax", {"axis": 0})
  with pytest.raises(registry.UnsupportedLayerError, match=r"'sm'.*batch axis"):
    registry.converter_for("Softmax").build(reader)


def test_an_unknown_option_of_a_new_layer_is_refused_by_name():
  config = dict(L.GroupNormalization(groups=2).get_config(), new_option=1)
  reader = registry.ConfigReader("gn", "GroupNormalization", config)
  registry.converter_for("GroupNormalization").build(reader)
  with pytest.raises(registry.UnsupportedLayerError, match="'gn'.*new_option=1"):
    reader.finish()


def test_group_normalization_groups_must_divide_the_channels():
  from jaxnets.layers import norm_extra  # pylint: disable=import-outside-toplevel

  layer = norm_extra.GroupNormalization(name="gn", groups=4)
  with pytest.raises(ValueError, match="'gn': groups=4 does not divide the 6 channels"):
    layer.apply({"gamma": np.ones(6), "beta": np.zeros(6)}, np.zeros((2, 6), np.float32))


@pytest.mark.parametrize("axis,shape", [(1, (4, 5, 3)), (2, (4, 5, 3)), (-2, (4, 5, 3)), (1, (6,))])
def test_batch_normalization_on_other_axes_matches_keras(axis, shape):
  _check([L.BatchNormalization(axis=axis, epsilon=1e-2)], shape, seed=9)


def test_flops_per_element_hand_counts():
  from bench import flops  # pylint: disable=import-outside-toplevel
  from jaxnets.layers import core, norm_extra  # pylint: disable=import-outside-toplevel

  n = 4 * 6
  assert flops.layer_flops(norm_extra.LayerNormalization(name="ln"), (4, 6)) == 5 * n
  assert flops.layer_flops(norm_extra.GroupNormalization(name="gn", groups=2), (4, 6)) == 5 * n
  assert flops.layer_flops(norm_extra.UnitNormalization(name="un"), (4, 6)) == 3 * n
  assert flops.layer_flops(norm_extra.Rescaling(name="r", scale=(0.5,)), (4, 6)) == 2 * n
  assert flops.layer_flops(norm_extra.Normalization(name="z"), (4, 6)) == 2 * n
  assert flops.layer_flops(core.PReLU(name="p"), (4, 6)) == 3 * n
  assert flops.layer_flops(core.ELU(name="e"), (4, 6)) == n
