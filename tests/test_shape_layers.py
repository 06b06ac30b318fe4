"""Shape layers, inference no-ops and TimeDistributed: parity with Keras.

Permute, RepeatVector, Reshape with -1, Flatten, Identity; every inference
no-op (SpatialDropout, GaussianNoise, GaussianDropout, AlphaDropout,
ActivityRegularization, the Random* augmentation layers) checked against
Keras's own ``predict`` (the identity) and shown in ``summary()``;
TimeDistributed around Dense, Conv2D, pooling, Flatten, BatchNormalization and
a no-op. Whole models also go through a saved ``.keras`` file, ``port.to_keras``
and a ``jaxnets.load`` reload with TensorFlow and Keras blocked.
"""

import inspect

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from jaxnets.layers import shape as jshape
from port import registry
from port.converters import shape as shape_converters
from tests import parity

L = keras.layers


def _data(shape, seed=0, batch=5):
  return (
    np.random.default_rng(seed).normal(0.2, 1.3, size=(batch,) + tuple(shape)).astype(np.float32)
  )


def _check(layers, input_shape, *, seed=0, batch=5, x=None):
  model = keras.Sequential([keras.Input(input_shape)] + list(layers))
  parity.randomize_weights(model, seed=seed)
  x = _data(input_shape, seed, batch) if x is None else x
  return parity.assert_matches_keras(model, x, classifier=False)


# ------------------------------------------------------------ shape layers


@pytest.mark.parametrize(
  "dims,shape", [((2, 1), (3, 5)), ((3, 1, 2), (3, 5, 7)), ((1, 3, 2), (3, 5, 7)), ((1,), (4,))]
)
def test_permute_matches_keras(dims, shape):
  _check([L.Permute(dims), L.Dense(3)], shape)


@pytest.mark.parametrize("n", [1, 3])
def test_repeat_vector_matches_keras(n):
  _check([L.Dense(5), L.RepeatVector(n), L.Dense(2)], (7,))


@pytest.mark.parametrize(
  "target,shape", [((-1, 2), (5, 6)), ((2, -1), (3, 5, 4)), ((-1,), (3, 5)), ((2, 2, -1), (4, 5))]
)
def test_reshape_with_minus_one_matches_keras(target, shape):
  _check([L.Dense(4), L.Reshape(target), L.Dense(3)], shape)


def test_identity_and_flatten_match_keras():
  _check([L.Identity(), L.Flatten(), L.Identity(), L.Dense(3)], (3, 5))


def test_identity_passes_a_mask_and_permute_drops_it_like_keras():
  # Embedding(mask_zero) -> Identity -> LSTM: the mask must still reach the
  # LSTM (Keras's Identity supports masking) for the outputs to match.
  model = keras.Sequential(
    [
      keras.Input((6,), dtype="int32"),
      L.Embedding(9, 4, mask_zero=True),
      L.Identity(),
      L.GaussianNoise(0.3),
      L.SpatialDropout1D(0.2),
      L.LSTM(3),
    ]
  )
  parity.randomize_weights(model, seed=2)
  x = np.array([[3, 1, 4, 0, 0, 0], [2, 6, 5, 3, 5, 8], [7, 0, 0, 0, 0, 0]], np.int32)
  parity.assert_matches_keras(model, x, classifier=False)


# ------------------------------------------------------------ inference no-ops

_REQUIRED = {
  "rate": 0.3,
  "stddev": 0.4,
  "factor": 0.3,
  "height_factor": 0.2,
  "width_factor": 0.2,
  "value_range": (0, 255),
}


def _keras_no_op(name):
  cls = getattr(L, name)
  required = [
    p
    for p, v in inspect.signature(cls.__init__).parameters.items()
    if v.default is inspect.Parameter.empty and p not in ("self", "kwargs")
  ]
  kwargs = {p: _REQUIRED[p] for p in required}
  if name == "RandomPosterization":
    kwargs = {"factor": 4, "value_range": (0, 255)}
  if name == "ActivityRegularization":
    kwargs = {"l1": 0.01, "l2": 0.02}
  return cls(**kwargs)


_NO_OP_INPUTS = {"SpatialDropout1D": (9, 3), "SpatialDropout3D": (5, 9, 7, 3)}


@pytest.mark.parametrize("name", sorted(jshape.NO_OP_CLASSES))
def test_every_inference_no_op_is_the_identity_in_keras_and_jaxnets(name):
  input_shape = _NO_OP_INPUTS.get(name, (9, 7, 3))
  keras_model = keras.Sequential(
    [keras.Input(input_shape), _keras_no_op(name), L.Rescaling(1.0 / 255)], name="no_op_model"
  )
  # Pixel-range values, some outside [0, 255]: an augmentation that clipped to
  # value_range or rescaled at inference would show.
  x = np.random.default_rng(3).uniform(-20, 280, size=(4,) + input_shape).astype(np.float32)
  head = keras.Sequential([keras.Input(input_shape), keras_model.layers[0]])
  # Keras's own predict returns the input unchanged at inference...
  np.testing.assert_array_equal(head.predict(x, verbose=0), x)
  # ... and so does the port, which keeps the layer (under its Keras name).
  model = parity.assert_matches_keras(keras_model, x, classifier=False)
  assert type(model.layers[0]).__name__ == name
  assert f"({name})" in model.summary()
  # The inverse rebuilds the Keras class with the same options.
  rebuilt = port.to_keras(model)
  assert type(rebuilt.layers[0]).__name__ == name
  original = keras_model.layers[0].get_config()
  again = rebuilt.layers[0].get_config()
  for key in shape_converters.NO_OP_OPTIONS[name]:
    assert np.all(np.asarray(again[key]) == np.asarray(original[key])), key


def test_no_ops_refuse_training_and_integer_images_by_name():
  layer = jshape.NO_OP_CLASSES["GaussianNoise"](name="noise", options='{"stddev": 0.1}')
  x = np.ones((2, 3), np.float32)
  with pytest.raises(NotImplementedError, match="GaussianNoise 'noise': only the inference form"):
    layer.apply({}, x, training=True)
  flip = jshape.NO_OP_CLASSES["RandomFlip"](name="flip")
  with pytest.raises(ValueError, match="RandomFlip 'flip': only a floating-point input"):
    flip.apply({}, np.ones((2, 3, 3, 1), np.int32))


def test_random_crop_is_refused_by_name():
  # Keras 3.15's RandomCrop returns its input unchanged at inference while it
  # declares the cropped shape; the port refuses rather than pick one.
  keras_model = keras.Sequential([keras.Input((9, 7, 3)), L.RandomCrop(5, 5, name="crop")])
  x = _data((9, 7, 3))
  assert keras_model.predict(x, verbose=0).shape == x.shape  # the behaviour refused
  assert keras_model.output_shape == (None, 5, 5, 3)
  problems = port.unsupported(keras_model)
  assert [(p[0], p[1]) for p in problems] == [("crop", "RandomCrop")]
  assert "uncropped" in problems[0][2] and "CenterCrop" in problems[0][2]
  with pytest.raises(port.UnsupportedLayerError, match="'crop'.*RandomCrop"):
    port.load(keras_model)


def test_an_option_unknown_to_a_no_op_is_refused_by_name():
  config = dict(L.GaussianNoise(0.1).get_config(), apply_at_inference=True)
  reader = registry.ConfigReader("noise", "GaussianNoise", config)
  registry.converter_for("GaussianNoise").build(reader)
  with pytest.raises(registry.UnsupportedLayerError, match="'noise'.*apply_at_inference=True"):
    reader.finish()


# ------------------------------------------------------------ TimeDistributed

TIME_DISTRIBUTED_CASES = [
  ("dense", lambda: L.Dense(4, activation="tanh"), (5, 3)),
  ("dense-on-4d", lambda: L.Dense(4, use_bias=False), (5, 3, 2)),
  ("conv2d", lambda: L.Conv2D(3, (2, 3), padding="same", activation="relu"), (4, 7, 5, 2)),
  ("maxpool", lambda: L.MaxPooling2D(2), (3, 7, 5, 2)),
  ("flatten", lambda: L.Flatten(), (3, 4, 5)),
  ("batchnorm", lambda: L.BatchNormalization(), (5, 3)),
  ("layernorm", lambda: L.LayerNormalization(), (5, 6)),
  ("no-op", lambda: L.GaussianDropout(0.3), (5, 3)),
]


@pytest.mark.parametrize(
  "inner,shape", [c[1:] for c in TIME_DISTRIBUTED_CASES], ids=[c[0] for c in TIME_DISTRIBUTED_CASES]
)
def test_time_distributed_matches_keras(inner, shape):
  model = _check([L.TimeDistributed(inner(), name="td")], shape, seed=4)
  assert type(model.layers[0].layer).__name__ in {
    "Dense",
    "Conv2D",
    "MaxPooling2D",
    "Flatten",
    "BatchNormalization",
    "LayerNormalization",
    "GaussianDropout",
  }


def test_time_distributed_with_a_masked_sequence_matches_keras():
  model = keras.Sequential(
    [
      keras.Input((6,), dtype="int32"),
      L.Embedding(9, 4, mask_zero=True),
      L.TimeDistributed(L.Dense(5, activation="relu")),
      L.GRU(3),
    ]
  )
  parity.randomize_weights(model, seed=5)
  x = np.array([[3, 1, 4, 1, 0, 0], [2, 6, 5, 3, 5, 8], [7, 0, 0, 0, 0, 0]], np.int32)
  parity.assert_matches_keras(model, x, classifier=False)


def test_time_distributed_refuses_an_unsupported_inner_option_by_name():
  model = keras.Sequential(
    [keras.Input((5, 3)), L.TimeDistributed(L.Dense(4, dtype="float64"), name="td")]
  )
  problems = port.unsupported(model)
  assert len(problems) == 1 and problems[0][:2] == ("td", "TimeDistributed")
  assert "float64" in problems[0][2]


# ------------------------------------------------------------ whole models


def _sequence_model():
  return keras.Sequential(
    [
      keras.Input((6, 5)),
      L.TimeDistributed(L.Dense(8, activation="relu")),
      L.SpatialDropout1D(0.3),
      L.Permute((2, 1)),
      L.Reshape((4, -1)),
      L.GaussianNoise(0.5),
      L.Flatten(),
      L.Dense(7),
      L.RepeatVector(3),
      L.Identity(),
      L.TimeDistributed(L.Dense(4)),
      L.ActivityRegularization(l1=0.01),
      L.Flatten(),
      L.Dense(5, activation="softmax"),
    ],
    name="shape_model",
  )


def test_whole_model_through_a_keras_file_to_keras_and_jaxnets_load(tmp_path):
  keras_model = _sequence_model()
  parity.randomize_weights(keras_model, seed=6)
  x = _data((6, 5), seed=6, batch=9)
  expected = np.asarray(keras_model(x, training=False))

  path = tmp_path / "model.keras"
  keras_model.save(path)
  model = parity.assert_matches_keras(keras.saving.load_model(path), x)
  parity.assert_outputs_match(keras_model, port.load(path).predict(x), x, keras_outputs=expected)

  rebuilt = port.to_keras(model)
  parity.assert_outputs_match(rebuilt, model.predict(x), x, label="to_keras")
  assert [type(l).__name__ for l in rebuilt.layers] == [
    type(l).__name__ for l in keras_model.layers
  ]

  saved = model.save(tmp_path / "jaxnets_model")
  got = parity.predict_saved_without_tensorflow(saved, list(x), tmp_path)
  np.testing.assert_array_equal(got, model.predict(x))
  summary = jaxnets.load(saved).summary()
  for name in ("SpatialDropout1D", "GaussianNoise", "ActivityRegularization", "TimeDistributed"):
    assert f"({name})" in summary

  with jax.disable_jit():
    unjitted = np.asarray(model.apply(model.params, x))
  parity.assert_outputs_match(keras_model, unjitted, x, keras_outputs=expected)


def test_image_model_with_augmentation_layers_ports_exactly(tmp_path):
  keras_model = keras.Sequential(
    [
      keras.Input((11, 9, 3)),
      L.RandomFlip(),
      L.RandomRotation(0.2),
      L.RandomZoom(0.1),
      L.RandomTranslation(0.1, 0.1),
      L.RandomContrast(0.2),
      L.RandomBrightness(0.2),
      L.Rescaling(1.0 / 255),
      L.Conv2D(4, 3, activation="relu"),
      L.SpatialDropout2D(0.2),
      L.GlobalAveragePooling2D(),
      L.GaussianDropout(0.1),
      L.Dense(3, activation="softmax"),
    ]
  )
  parity.randomize_weights(keras_model, seed=7)
  x = np.random.default_rng(7).uniform(0, 255, size=(6, 11, 9, 3)).astype(np.float32)
  parity.assert_outputs_match(
    keras_model,
    port.load(keras_model).predict(x),
    x,
    keras_outputs=keras_model.predict(x, verbose=0),
  )
  model = parity.assert_matches_keras(keras_model, x)
  reloaded = jaxnets.load(model.save(tmp_path / "augmented"))
  np.testing.assert_array_equal(reloaded.predict(x), model.predict(x))
  assert [type(l).__name__ for l in reloaded.layers[:6]] == [
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
  ]
  factor = keras_model.layers[1].get_config()["factor"]
  assert reloaded.layers[1].keras_options()["factor"] == list(factor)


# ------------------------------------------------------------ FLOPs


def test_flops_time_distributed_counts_the_inner_layer_per_step_and_no_ops_are_free():
  from bench import flops  # pylint: disable=import-outside-toplevel
  from jaxnets.layers import core, wrappers  # pylint: disable=import-outside-toplevel

  dense = core.Dense(name="d", units=3, activation="relu")
  td = wrappers.TimeDistributed(name="td", layer=dense)
  assert flops.layer_flops(td, (4, 5)) == 4 * flops.layer_flops(dense, (5,)) == 4 * (3 * 11 + 3)
  noise = jshape.NO_OP_CLASSES["GaussianNoise"](name="n", options='{"stddev": 0.1}')
  assert flops.layer_flops(noise, (4, 5)) == 0
  assert flops.layer_flops(jshape.Permute(name="p", dims=(2, 1)), (4, 5)) == 0
  assert flops.layer_flops(jshape.RepeatVector(name="r", n=3), (5,)) == 0


# ------------------------------------------------------------ masks


@pytest.mark.filterwarnings("ignore:Layer .* does not support masking")
@pytest.mark.parametrize(
  "make",
  [
    lambda: L.LayerNormalization(),
    lambda: L.GroupNormalization(groups=2),
    lambda: L.UnitNormalization(),
    lambda: L.PReLU(),
    lambda: L.ELU(),
    lambda: L.Rescaling(0.5),
    lambda: L.Normalization(mean=0.5, variance=2.0),
    lambda: L.Identity(),
    lambda: L.GaussianNoise(0.1),
    lambda: L.ActivityRegularization(),
    lambda: L.TimeDistributed(L.Dense(3)),
    lambda: L.Permute((2, 1)),
    lambda: L.RandomFlip(),
  ],
  ids=lambda make: type(make()).__name__,
)
def test_mask_passes_or_stops_as_in_keras(make):
  """A (batch, time) mask from Embedding(mask_zero) reaches the next layer
  exactly when Keras's layer hands it on."""
  keras_layer = make()
  tokens = keras.Input((6,), dtype="int32")
  out = keras_layer(L.Embedding(9, 4, mask_zero=True)(tokens))
  keras_passes = getattr(out, "_keras_mask", None) is not None  # as port.api reads it
  cfg = registry.ConfigReader(
    keras_layer.name, type(keras_layer).__name__, keras_layer.get_config()
  )
  (layer,) = registry.converter_for(type(keras_layer).__name__).build(cfg)
  params = jax.eval_shape(lambda: layer.init(jax.random.key(0), (6, 4)))
  mask = jax.ShapeDtypeStruct((2, 6), np.bool_)
  x = jax.ShapeDtypeStruct((2, 6, 4), np.float32)
  _, out_mask = jax.eval_shape(lambda p, v, m: layer.apply(p, v, m), params, x, mask)
  assert (out_mask is not None) == keras_passes


# ------------------------------------------------------------ in a functional graph


def test_new_layers_in_a_functional_graph_match_keras():
  # Residual TimeDistributed + LayerNormalization, then Permute -> Flatten ->
  # no-op -> Reshape(-1) -> Dense on one branch, GroupNormalization on the other.
  inputs = keras.Input((6, 5))
  mixed = L.LayerNormalization()(L.Add()([inputs, L.TimeDistributed(L.Dense(5))(inputs)]))
  head = L.Flatten()(L.Permute((2, 1))(L.PReLU(shared_axes=[1])(mixed)))
  head = L.Reshape((-1,))(L.GaussianNoise(0.2)(head))
  branch = L.Flatten()(L.GroupNormalization(groups=5)(mixed))
  outputs = L.Dense(4, activation="softmax")(L.Concatenate()([head, branch]))
  keras_model = keras.Model(inputs, outputs)
  parity.randomize_weights(keras_model, seed=8)
  model = parity.assert_matches_keras(keras_model, _data((6, 5), seed=8, batch=7))
  assert "(TimeDistributed)" in model.summary()


@pytest.mark.filterwarnings("ignore:Layer .* does not support masking")
@pytest.mark.parametrize("inner", ["lstm", "gap"])
def test_time_distributed_folds_a_per_step_mask_like_keras(inner):
  # Sentences of words: ids (batch, 4 sentences, 5 words), Embedding(mask_zero)
  # gives a (batch, 4, 5) mask; Keras hands each sentence its own word mask.
  inputs = keras.Input((4, 5), dtype="int32")
  words = L.Embedding(9, 3, mask_zero=True)(inputs)
  encoder = L.LSTM(6) if inner == "lstm" else L.GlobalAveragePooling1D()
  outputs = L.Dense(2)(L.Flatten()(L.TimeDistributed(encoder)(words)))
  keras_model = keras.Model(inputs, outputs)
  parity.randomize_weights(keras_model, seed=9)
  x = np.random.default_rng(9).integers(1, 9, size=(3, 4, 5)).astype(np.int32)
  x[:, :, 3:] = 0  # padded words
  x[1, 1, 1:] = 0
  if inner == "lstm":
    x[0, 2] = 0  # a fully padded sentence (average pooling would give 0/0 there)
  parity.assert_matches_keras(keras_model, x, classifier=False)


def test_time_distributed_refuses_a_plain_time_mask_for_a_mask_reading_inner_layer():
  from jaxnets.layers import recurrent, wrappers  # pylint: disable=import-outside-toplevel

  layer = wrappers.TimeDistributed(name="td", layer=recurrent.LSTM(name="lstm", units=2))
  params = layer.init(jax.random.key(0), (4, 5, 3))
  x, mask = np.zeros((2, 4, 5, 3), np.float32), np.ones((2, 4), bool)
  with pytest.raises(ValueError, match="TimeDistributed 'td': a \\(2, 4\\) mask .* LSTM"):
    layer.apply(params, x, mask)
