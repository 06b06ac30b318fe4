"""Zero padding, cropping, up-sampling (nearest and bilinear) and 3-D pooling: parity
with Keras, in both data formats where Keras has the option.

Each case is a small Keras model with seeded random weights (a conv in front, so
the padded/cropped/interpolated values are not the input's own), ported and
compared jitted and un-jitted with Keras's forward pass at odd sizes.
"""

import keras
import numpy as np
import pytest

import port
from bench import flops as bench_flops
from jaxnets import layers as jlayers
from jaxnets.layers import spatial
from tests import parity

L = keras.layers


def _images(shape, seed=0, batch=3):
  return np.random.default_rng(seed).normal(size=(batch,) + tuple(shape)).astype(np.float32)


def _model(layers, input_shape, seed=0):
  model = keras.Sequential([keras.Input(input_shape)] + list(layers))
  parity.randomize_weights(model, seed=seed)
  return model


def _check(layers, input_shape, *, seed=0, batch=3):
  model = _model(layers, input_shape, seed)
  return parity.assert_matches_keras(model, _images(input_shape, seed, batch), classifier=False)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 3), (2, 1))], ids=str)
def test_zero_padding2d_matches_keras(padding, data_format):
  shape = (5, 7, 3) if data_format == "channels_last" else (3, 5, 7)
  _check([L.ZeroPadding2D(padding, data_format=data_format)], shape)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cropping", [1, (2, 0), ((0, 3), (2, 1))], ids=str)
def test_cropping2d_matches_keras(cropping, data_format):
  shape = (7, 9, 3) if data_format == "channels_last" else (3, 7, 9)
  _check([L.Cropping2D(cropping, data_format=data_format)], shape)


@pytest.mark.parametrize("padding,cropping", [(1, 1), ((0, 2), (3, 0)), ((3, 1), (1, 2))], ids=str)
def test_zero_padding1d_and_cropping1d_match_keras(padding, cropping):
  _check(
    [L.Conv1D(4, 3, activation="tanh"), L.ZeroPadding1D(padding), L.Cropping1D(cropping)], (9, 3)
  )


def test_zero_padding1d_channels_first_matches_keras():
  _check([L.ZeroPadding1D((2, 1), data_format="channels_first")], (3, 9))


@pytest.mark.parametrize("size", [1, 2, 3])
def test_up_sampling1d_matches_keras(size):
  _check([L.Conv1D(3, 2), L.UpSampling1D(size)], (7, 2))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [(2, 2), (3, 2), (1, 4), (5, 3)], ids=str)
def test_up_sampling2d_matches_keras(size, interpolation):
  _check(
    [L.Conv2D(4, 3, activation="relu"), L.UpSampling2D(size, interpolation=interpolation)],
    (7, 9, 3),
  )


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_up_sampling2d_channels_first_matches_keras(interpolation):
  _check(
    [L.UpSampling2D((3, 2), data_format="channels_first", interpolation=interpolation)], (3, 5, 7)
  )


def test_half_pixel_sources_are_tensorflows():
  """Output cell o of an up-sampling by 2 of 3 cells reads (o + 0.5) / 2 - 0.5."""
  lower, upper, lerp = spatial.half_pixel_sources(3, 6)
  np.testing.assert_array_equal(lower, [0, 0, 0, 1, 1, 2])
  np.testing.assert_array_equal(upper, [0, 1, 1, 2, 2, 2])
  np.testing.assert_allclose(lerp, [0.75, 0.25, 0.75, 0.25, 0.75, 0.25])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_3d_padding_cropping_up_sampling_match_keras(data_format):
  shape = (4, 5, 6, 2) if data_format == "channels_last" else (2, 4, 5, 6)
  _check(
    [
      L.ZeroPadding3D(((1, 0), (0, 2), (1, 1)), data_format=data_format),
      L.Cropping3D(((0, 1), (2, 1), (1, 0)), data_format=data_format),
      L.UpSampling3D((2, 1, 3), data_format=data_format),
    ],
    shape,
  )


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize(
  "pool_size,strides,padding",
  [(2, None, "valid"), ((2, 3, 2), (1, 2, 1), "same"), (3, 2, "same"), ((1, 2, 2), None, "valid")],
  ids=str,
)
def test_pooling3d_matches_keras(kind, pool_size, strides, padding):
  layer_class = L.MaxPooling3D if kind == "max" else L.AveragePooling3D
  _check(
    [L.Conv3D(3, 2, padding="same"), layer_class(pool_size, strides=strides, padding=padding)],
    (5, 7, 6, 2),
  )


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling3d_matches_keras(kind, keepdims):
  layer_class = L.GlobalMaxPooling3D if kind == "max" else L.GlobalAveragePooling3D
  _check([L.Conv3D(3, 2), layer_class(keepdims=keepdims)], (5, 4, 6, 2))


# ----------------------------------------------------- whole models and I/O
def _unet_like_model(seed=2):
  """Pad, conv down, bilinear up, crop back, classify: a small U-Net-like chain."""
  return _model(
    [
      L.ZeroPadding2D(((1, 0), (0, 1))),
      L.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
      L.UpSampling2D(2, interpolation="bilinear"),
      L.Cropping2D(((1, 0), (0, 1))),
      L.Conv2D(4, 3, activation="relu"),
      L.UpSampling2D((1, 2)),
      L.GlobalMaxPooling2D(),
      L.Dense(3, activation="softmax"),
    ],
    (9, 11, 3),
    seed=seed,
  )


def test_unet_like_model_matches_keras():
  parity.assert_matches_keras(_unet_like_model(), _images((9, 11, 3), 2, 13), classifier=True)


def test_keras_file_and_reload_without_tensorflow(tmp_path):
  model = _unet_like_model(seed=5)
  x = _images((9, 11, 3), 5, 7)
  path = tmp_path / "model.keras"
  model.save(path)
  from_file = port.load(str(path))
  parity.assert_outputs_match(model, from_file.predict(x), x)
  from_file.save(tmp_path / "saved")
  got = parity.predict_saved_without_tensorflow(tmp_path / "saved", list(x), tmp_path)
  np.testing.assert_array_equal(got, from_file.predict(x))


@pytest.mark.parametrize(
  "layers,shape",
  [
    ([L.ZeroPadding1D((1, 2)), L.Cropping1D((2, 0)), L.UpSampling1D(3)], (6, 2)),
    (
      [
        L.ZeroPadding2D(((1, 2), (0, 1)), data_format="channels_first"),
        L.Cropping2D(((1, 0), (2, 1)), data_format="channels_first"),
        L.UpSampling2D((2, 3), interpolation="bilinear", data_format="channels_first"),
      ],
      (2, 5, 6),
    ),
    (
      [
        L.ZeroPadding3D(1),
        L.Cropping3D(((1, 0), (0, 1), (1, 1))),
        L.UpSampling3D(2),
        L.MaxPooling3D(2, strides=(1, 2, 1), padding="same"),
        L.AveragePooling3D(2),
        L.GlobalAveragePooling3D(keepdims=True),
      ],
      (4, 5, 3, 2),
    ),
  ],
  ids=["1d", "2d-channels-first", "3d"],
)
def test_to_keras_round_trip(layers, shape):
  model = _model(layers, shape, seed=7)
  ported = port.load(model)
  rebuilt = port.to_keras(ported)
  x = _images(shape, 7, 2)
  parity.assert_outputs_match(rebuilt, ported.predict(x), x, label="to_keras")
  for original, back in zip(model.layers, rebuilt.layers):
    original_config, back_config = original.get_config(), back.get_config()
    for config in (original_config, back_config):
      config.pop("name")
    assert back_config == original_config


# ------------------------------------------------------------- jaxnets side
@pytest.mark.parametrize(
  "layer",
  [
    spatial.ZeroPadding2D(name="z", padding=((1, 2), (0, 1)), data_format="channels_first"),
    spatial.Cropping1D(name="c", cropping=((2, 1),)),
    spatial.UpSampling2D(name="u", size=(2, 3), interpolation="bilinear"),
    spatial.UpSampling3D(name="u3", size=(1, 2, 2)),
    spatial.MaxPooling3D(name="p", pool_size=(2, 2, 1), padding="same"),
    spatial.GlobalAveragePooling3D(name="g", keepdims=True),
  ],
  ids=lambda l: type(l).__name__,
)
def test_layer_config_round_trips(layer):
  rebuilt = jlayers.layer_class(type(layer).__name__).from_config(layer.get_config())
  assert rebuilt == layer


def test_flop_counts():
  model = _model([L.ZeroPadding2D(1), L.UpSampling2D(2, interpolation="bilinear")], (3, 4, 2))
  padding, up = port.load(model).layers
  assert bench_flops.layer_flops(padding, (3, 4, 2)) == 0
  # width pass: 5 rows x 12 columns x 2 channels; height pass: 10 x 12 x 2; 3 FLOPs each.
  assert bench_flops.layer_flops(up, (5, 6, 2)) == 3 * (5 * 12 * 2 + 10 * 12 * 2)


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("interpolation", ["bicubic", "lanczos3", "area"])
def test_other_interpolations_are_refused_by_name(interpolation):
  layer = L.UpSampling2D(2, interpolation=interpolation, name="smooth_up")
  model = keras.Sequential([keras.Input((4, 4, 2)), layer])
  with pytest.raises(
    port.UnsupportedLayerError, match=rf"'smooth_up'.*interpolation='{interpolation}'"
  ):
    port.load(model)


def test_channels_first_3d_pooling_is_refused_by_name():
  layer = L.MaxPooling3D(2, data_format="channels_first", name="cf_pool3d")
  model = keras.Sequential([keras.Input((2, 4, 4, 4)), layer])
  with pytest.raises(
    port.UnsupportedLayerError, match=r"'cf_pool3d'.*data_format='channels_first'"
  ):
    port.load(model)


def test_jaxnets_layers_validate_options():
  with pytest.raises(ValueError, match="padding"):
    spatial.ZeroPadding2D(name="z", padding=((1, 2),))
  with pytest.raises(ValueError, match="interpolation"):
    spatial.UpSampling1D(name="u", size=(2,), interpolation="bilinear")
  with pytest.raises(ValueError, match="data_format"):
    spatial.Cropping2D(name="c", cropping=((1, 1), (1, 1)), data_format="nchw")


# ------------------------------------------------------- Resizing, CenterCrop
RESIZE_SIZES = [(5, 7), (14, 3), (9, 9), (4, 13)]


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", RESIZE_SIZES, ids=str)
@pytest.mark.parametrize("aspect", ["none", "crop", "pad"])
def test_resizing_matches_keras(size, interpolation, aspect):
  _check(
    [
      L.Conv2D(3, 2),
      L.Resizing(
        *size,
        interpolation=interpolation,
        crop_to_aspect_ratio=aspect == "crop",
        pad_to_aspect_ratio=aspect == "pad",
        fill_value=0.5,
      ),
    ],
    (8, 11, 2),
  )


def test_resizing_channels_first_matches_keras():
  _check([L.Resizing(7, 4, data_format="channels_first", crop_to_aspect_ratio=True)], (3, 9, 6))


@pytest.mark.parametrize("size", [(5, 7), (7, 10), (9, 4), (12, 13), (3, 15)], ids=str)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_center_crop_matches_keras(size, data_format):
  """Crops when the image is large enough, crops-to-aspect and resizes when not."""
  shape = (8, 11, 2) if data_format == "channels_last" else (2, 8, 11)
  _check([L.CenterCrop(*size, data_format=data_format)], shape)


@pytest.mark.parametrize(
  "options,message",
  [
    (dict(interpolation="bicubic"), "interpolation='bicubic'"),
    (dict(interpolation="area"), "interpolation='area'"),
    (dict(antialias=True), "antialias=True"),
  ],
)
def test_inexact_resizing_options_are_refused_by_name(options, message):
  model = keras.Sequential([keras.Input((6, 6, 2)), L.Resizing(3, 4, name="resize", **options)])
  with pytest.raises(port.UnsupportedLayerError, match=rf"'resize'.*{message}"):
    port.load(model)


def test_resizing_and_center_crop_round_trip_to_keras():
  model = _model(
    [
      L.Resizing(9, 6, interpolation="nearest", pad_to_aspect_ratio=True, fill_value=-1.0),
      L.CenterCrop(5, 7),
    ],
    (8, 11, 2),
  )
  ported = port.load(model)
  rebuilt = port.to_keras(ported)
  x = _images((8, 11, 2), 3, 2)
  parity.assert_outputs_match(rebuilt, ported.predict(x), x, label="to_keras")
  assert [l.get_config()["height"] for l in rebuilt.layers] == [9, 5]


@pytest.mark.parametrize(
  "layer",
  [L.ZeroPadding1D(2), L.Cropping1D((1, 2)), L.UpSampling1D(2)],
  ids=lambda l: type(l).__name__,
)
def test_time_mask_stops_as_in_keras(layer):
  """Keras drops the Embedding's mask at these layers (they do not support masking):
  the LSTM after them then runs over the padding too."""
  model = _model([L.Embedding(20, 4, mask_zero=True), layer, L.LSTM(3), L.Dense(2)], (9,), seed=1)
  tokens = np.random.default_rng(0).integers(1, 20, size=(6, 9)).astype(np.int32)
  tokens[:, 6:] = 0
  parity.assert_matches_keras(model, tokens, classifier=False)
