"""Depthwise, separable, transposed and 3-D convolutions: parity with Keras.

As in ``tests/test_cnn_layers.py``: small Keras models with seeded random
(asymmetric) weights, ported and compared jitted and un-jitted with Keras's own
forward pass, at odd input sizes (TF's asymmetric ``same`` split). Depthwise
cases run under both formulations (``grouped`` lax conv and multiply-adds over
``taps``) and the rule's choice. Dilated transposed convolutions, which Keras's
TF backend cannot compute on CPU, are checked against Keras on its JAX backend
in a child process.
"""

import json
import subprocess
import sys
import textwrap

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from bench import flops as bench_flops
from jaxnets import layers as jlayers
from jaxnets.layers import conv_extra
from tests import parity
from tests.conftest import REPO_ROOT

L = keras.layers


@pytest.fixture(params=["grouped", "taps"])
def depthwise_algorithm(request, monkeypatch):
  """Runs the test with depthwise convolutions forced to one formulation (the
  rule's choice, ``auto``, is one of them; whole models run under ``auto``)."""
  monkeypatch.setattr(conv_extra, "depthwise_algorithm", request.param)
  return request.param


def _images(shape, seed=0, batch=3):
  return np.random.default_rng(seed).normal(size=(batch,) + tuple(shape)).astype(np.float32)


def _model(layers, input_shape, seed=0):
  model = keras.Sequential([keras.Input(input_shape)] + list(layers))
  parity.randomize_weights(model, seed=seed)
  return model


def _check(layers, input_shape, *, seed=0, classifier=False, batch=3):
  model = _model(layers, input_shape, seed)
  return parity.assert_matches_keras(
    model, _images(input_shape, seed, batch), classifier=classifier
  )


# (kernel, strides, dilation, depth_multiplier, activation, use_bias)
DEPTHWISE2D_CASES = [
  ((3, 3), (1, 1), (1, 1), 1, "relu", True),
  ((3, 3), (2, 2), (1, 1), 2, "linear", False),
  ((2, 5), (2, 2), (1, 1), 3, "tanh", True),  # TF: equal strides only
  ((3, 2), (1, 1), (2, 3), 1, "relu6", True),
  ((3, 3), (2, 1), (2, 1), 2, "swish", True),  # strides and dilation: Keras's TF decomposition
  ((1, 1), (1, 1), (1, 1), 2, "sigmoid", True),
  ((5, 5), (2, 2), (1, 1), 1, "linear", True),
]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
  "kernel,strides,dilation,multiplier,activation,use_bias",
  DEPTHWISE2D_CASES,
  ids=lambda v: str(v).replace(" ", ""),
)
def test_depthwise_conv2d_matches_keras(
  padding, kernel, strides, dilation, multiplier, activation, use_bias, depthwise_algorithm
):
  _check(
    [
      L.DepthwiseConv2D(
        kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        depth_multiplier=multiplier,
        activation=activation,
        use_bias=use_bias,
      )
    ],
    (11, 13, 3),
  )


@pytest.mark.parametrize(
  "padding,strides,dilation,multiplier",
  [("valid", 1, 1, 1), ("same", 2, 1, 2), ("same", 1, 3, 1), ("valid", 3, 1, 3), ("same", 2, 2, 1)],
)
def test_depthwise_conv1d_matches_keras(
  padding, strides, dilation, multiplier, depthwise_algorithm
):
  _check(
    [
      L.DepthwiseConv1D(
        3,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        depth_multiplier=multiplier,
        activation="elu",
      )
    ],
    (17, 4),
  )


@pytest.mark.parametrize(
  "kernel,strides,dilation,multiplier,use_bias",
  [
    ((3, 3), (1, 1), (1, 1), 1, True),
    ((3, 2), (2, 2), (1, 1), 2, False),
    ((3, 3), (1, 1), (2, 2), 3, True),
    ((3, 3), (2, 2), (2, 1), 1, True),
  ],
  ids=lambda v: str(v).replace(" ", ""),
)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_separable_conv2d_matches_keras(
  padding, kernel, strides, dilation, multiplier, use_bias, depthwise_algorithm
):
  _check(
    [
      L.SeparableConv2D(
        5,
        kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        depth_multiplier=multiplier,
        use_bias=use_bias,
        activation="relu",
      )
    ],
    (9, 11, 3),
  )


@pytest.mark.parametrize(
  "padding,strides,dilation,multiplier",
  [("valid", 1, 1, 1), ("same", 2, 1, 2), ("same", 1, 2, 1), ("same", 2, 3, 2)],
)
def test_separable_conv1d_matches_keras(padding, strides, dilation, multiplier):
  _check(
    [
      L.SeparableConv1D(
        6, 3, strides=strides, padding=padding, dilation_rate=dilation, depth_multiplier=multiplier
      )
    ],
    (15, 4),
  )


# (kernel, strides, output_padding)
TRANSPOSE2D_CASES = [
  ((3, 3), (1, 1), None),
  ((3, 2), (2, 2), None),
  ((3, 3), (2, 2), (1, 1)),
  ((4, 3), (3, 2), (2, 1)),
  ((2, 2), (2, 2), None),
  ((5, 4), (2, 3), (1, 2)),
  ((1, 1), (2, 2), (1, 0)),
]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
  "kernel,strides,output_padding", TRANSPOSE2D_CASES, ids=lambda v: str(v).replace(" ", "")
)
def test_conv2d_transpose_matches_keras(padding, kernel, strides, output_padding):
  if padding == "same" and output_padding is not None:
    if any(k % 2 == 0 and p == 0 for k, p in zip(kernel, output_padding)):
      pytest.skip("refused (see test_transpose_same_even_kernel_zero_output_padding_is_refused)")
  _check(
    [
      L.Conv2DTranspose(
        4,
        kernel,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        activation="relu",
      )
    ],
    (5, 7, 3),
  )


@pytest.mark.parametrize(
  "padding,kernel,strides,output_padding",
  [("valid", 3, 1, None), ("same", 4, 2, None), ("valid", 3, 3, 2), ("same", 3, 2, 1)],
)
def test_conv1d_transpose_matches_keras(padding, kernel, strides, output_padding):
  _check(
    [
      L.Conv1DTranspose(
        5, kernel, strides=strides, padding=padding, output_padding=output_padding, use_bias=False
      )
    ],
    (9, 3),
  )


def test_dilated_transposed_convs_match_keras_on_jax():
  """TF's CPU kernel refuses dilation in a transposed conv, so the reference is
  Keras's JAX backend: weights and inputs go to a child process through files."""
  cases = [
    ("Conv2DTranspose", (5, 7, 3), dict(filters=4, kernel_size=(3, 2), dilation_rate=(2, 3))),
    ("Conv2DTranspose", (5, 7, 3), dict(filters=2, kernel_size=3, dilation_rate=2, padding="same")),
    (
      "Conv2DTranspose",
      (6, 5, 2),
      dict(filters=3, kernel_size=(3, 3), dilation_rate=2, padding="same", output_padding=0),
    ),
    ("Conv1DTranspose", (9, 3), dict(filters=4, kernel_size=3, dilation_rate=3, padding="valid")),
  ]
  payload, ours = [], []
  for class_name, shape, options in cases:
    layer_options = {"filters": options.pop("filters"), "kernel_size": options.pop("kernel_size")}
    layer = getattr(L, class_name)(**layer_options, **options)
    model = _model([layer], shape, seed=len(payload))
    x = _images(shape, seed=len(payload))
    ported = port.load(model)
    ours.append(ported.predict(x))
    payload.append(
      {
        "class": class_name,
        "options": {**layer_options, **options},
        "shape": shape,
        "x": x.tolist(),
        "weights": [w.tolist() for w in model.layers[0].get_weights()],
      }
    )
  script = textwrap.dedent("""
      import json, os, sys
      os.environ["KERAS_BACKEND"] = "jax"
      import keras
      import numpy as np
      out = []
      for case in json.load(sys.stdin):
        pair = []
        for dtype in ("float32", "float64"):  # Keras's output and its float64 reference
          layer = getattr(keras.layers, case["class"])(**case["options"], dtype=dtype)
          model = keras.Sequential([keras.Input(tuple(case["shape"]), dtype=dtype), layer])
          layer.set_weights([np.asarray(w, dtype) for w in case["weights"]])
          pair.append(np.asarray(model(np.asarray(case["x"], dtype))).tolist())
        out.append(pair)
      print(json.dumps(out))
  """)
  result = subprocess.run(
    [sys.executable, "-c", script],
    input=json.dumps(payload),
    capture_output=True,
    text=True,
    cwd=REPO_ROOT,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  expected = json.loads(result.stdout.strip().splitlines()[-1])
  for case, (want, reference), got in zip(payload, expected, ours):
    comparison = port.comparison.judge(
      got, np.asarray(want, np.float32), np.asarray(reference, np.float64), classifier=False
    )
    assert comparison.ok, f"{case['options']}: {comparison.verdict()}"


@pytest.mark.parametrize(
  "kernel,strides,padding,groups",
  [
    ((3, 3, 3), (1, 1, 1), "valid", 1),
    ((2, 3, 2), (1, 2, 1), "same", 1),
    ((3, 1, 2), 2, "same", 2),
  ],
  ids=lambda v: str(v).replace(" ", ""),
)
def test_conv3d_matches_keras(kernel, strides, padding, groups):
  _check(
    [L.Conv3D(4, kernel, strides=strides, padding=padding, groups=groups, activation="tanh")],
    (5, 7, 6, 4),
  )


def test_conv3d_dilated_matches_keras():
  _check([L.Conv3D(3, 2, dilation_rate=(2, 1, 2), use_bias=False)], (5, 7, 6, 2))


# ----------------------------------------------------- whole models and I/O
def _mobilenet_block_model(seed=3):
  """MobileNetV2-like: expand 1x1, BN, ReLU6, depthwise stride 2, BN, ReLU6, project,
  separable conv, transposed conv back up, classifier."""
  model = _model(
    [
      L.Conv2D(12, 1, use_bias=False),
      L.BatchNormalization(),
      L.ReLU(6.0),
      L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False),
      L.BatchNormalization(),
      L.ReLU(6.0),
      L.Conv2D(6, 1),
      L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu"),
      L.Conv2DTranspose(4, 3, strides=2, padding="same"),
      L.GlobalAveragePooling2D(),
      L.Dense(5, activation="softmax"),
    ],
    (13, 11, 3),
    seed=seed,
  )
  return model


@pytest.mark.parametrize("algorithm", ["auto", "grouped", "taps"])
def test_mobilenet_like_block_matches_keras(algorithm, monkeypatch):
  monkeypatch.setattr(conv_extra, "depthwise_algorithm", algorithm)
  model = _mobilenet_block_model()
  ported = parity.assert_matches_keras(model, _images((13, 11, 3), 3, 17), classifier=True)
  assert ported.param_count == model.count_params()


def test_keras_file_and_reload_without_tensorflow(tmp_path):
  model = _mobilenet_block_model(seed=4)
  x = _images((13, 11, 3), 4, 9)
  path = tmp_path / "model.keras"
  model.save(path)
  from_file = port.load(str(path))
  expected = np.asarray(model(x, training=False))
  parity.assert_outputs_match(model, from_file.predict(x), x, keras_outputs=expected)
  from_file.save(tmp_path / "saved")
  got = parity.predict_saved_without_tensorflow(tmp_path / "saved", list(x), tmp_path)
  np.testing.assert_array_equal(got, from_file.predict(x))


def test_to_keras_round_trip():
  model = _model(
    [
      L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="relu"),
      L.SeparableConv1D(5, 2, strides=2, use_bias=False),
      L.Conv1DTranspose(3, 3, strides=2, output_padding=1, padding="same"),
      L.Flatten(),
      L.Dense(4),
    ],
    (11, 3),
    seed=6,
  )
  ported = port.load(model)
  rebuilt = port.to_keras(ported)
  x = _images((11, 3), 6, 5)
  parity.assert_outputs_match(rebuilt, ported.predict(x), x, label="to_keras")
  for original, back in zip(model.layers, rebuilt.layers):
    assert type(original) is type(back)
    for a, b in zip(original.get_weights(), back.get_weights()):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
  "layers,shape",
  [
    ([L.Conv2DTranspose(3, (3, 2), strides=2, output_padding=1, dilation_rate=1)], (5, 7, 2)),
    ([L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")], (7, 9, 3)),
    ([L.SeparableConv2D(4, 3, dilation_rate=2)], (9, 9, 3)),
    ([L.Conv3D(2, 3, groups=1)], (5, 5, 5, 2)),
  ],
  ids=lambda v: type(v[0]).__name__ if isinstance(v, list) else "",
)
def test_to_keras_2d_and_3d_round_trip(layers, shape):
  model = _model(layers, shape, seed=8)
  ported = port.load(model)
  rebuilt = port.to_keras(ported)
  x = _images(shape, 8, 2)
  parity.assert_outputs_match(rebuilt, ported.predict(x), x, label="to_keras")
  assert rebuilt.layers[0].get_config()["strides"] == model.layers[0].get_config()["strides"]


# ------------------------------------------------------------- jaxnets side
@pytest.mark.parametrize(
  "layer",
  [
    conv_extra.DepthwiseConv2D(
      name="d", kernel_size=(3, 2), depth_multiplier=2, strides=(2, 1), padding="same"
    ),
    conv_extra.DepthwiseConv1D(name="d1", kernel_size=(3,), dilation_rate=(2,), use_bias=False),
    conv_extra.SeparableConv2D(name="s", filters=4, kernel_size=(3, 3), activation="relu"),
    conv_extra.SeparableConv1D(name="s1", filters=2, kernel_size=(2,), depth_multiplier=3),
    conv_extra.Conv2DTranspose(
      name="t", filters=3, kernel_size=(3, 3), strides=(2, 2), output_padding=(1, 0)
    ),
    conv_extra.Conv1DTranspose(name="t1", filters=3, kernel_size=(4,), padding="same"),
    conv_extra.Conv3D(name="c3", filters=3, kernel_size=(2, 2, 2), strides=(1, 2, 1)),
  ],
  ids=lambda l: type(l).__name__,
)
def test_layer_config_round_trips(layer):
  rebuilt = jlayers.layer_class(type(layer).__name__).from_config(layer.get_config())
  assert rebuilt == layer


def test_init_uses_keras_weight_shapes():
  model = _model(
    [
      L.DepthwiseConv2D(3, depth_multiplier=2),
      L.SeparableConv2D(5, 2, depth_multiplier=3),
      L.Conv2DTranspose(4, (3, 2), strides=2),
    ],
    (9, 8, 3),
  )
  ported = port.load(model)
  fresh = ported.init(jax.random.PRNGKey(0))
  shapes = jax.tree_util.tree_map(lambda a: a.shape, fresh)
  assert shapes == jax.tree_util.tree_map(lambda a: a.shape, ported.params)


def test_depthwise_formulations_agree_on_random_shapes():
  """The taps and the grouped lax conv, un-jitted, over mixed options."""
  rng = np.random.default_rng(9)
  for _ in range(8):
    rank = int(rng.integers(1, 3))
    kernel_size = tuple(int(k) for k in rng.integers(1, 5, size=rank))
    strides = tuple(int(s) for s in rng.integers(1, 4, size=rank))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=rank))
    spatial = tuple(int(n) for n in rng.integers(9, 14, size=rank))
    channels, multiplier = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    x = rng.normal(size=(2,) + spatial + (channels,)).astype(np.float32)
    kernel = rng.normal(size=kernel_size + (channels, multiplier)).astype(np.float32)
    pads = [tuple(int(p) for p in rng.integers(0, 3, size=2)) for _ in range(rank)]
    kwargs = dict(strides=strides, pads=pads, dilation=dilation)
    grouped = conv_extra.depthwise_conv(x, kernel, algorithm="grouped", **kwargs)
    taps = conv_extra.depthwise_conv(x, kernel, algorithm="taps", **kwargs)
    assert grouped.shape == taps.shape
    np.testing.assert_allclose(np.asarray(taps), np.asarray(grouped), atol=1e-5, rtol=0)


def test_blocked_taps_equal_one_pass():
  """Blocks of images (with a remainder block) give the one-pass taps' numbers."""
  rng = np.random.default_rng(10)
  x = rng.normal(size=(7, 9, 8, 5)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 5, 2)).astype(np.float32)
  kwargs = dict(strides=(2, 1), pads=[(1, 1), (0, 2)], dilation=(1, 2), algorithm="taps")
  whole = conv_extra.depthwise_conv(x, kernel, **kwargs)
  for block in (2, 3):
    blocked = jax.jit(
      lambda x, k, b=block: conv_extra.depthwise_conv(x, k, block_images=b, **kwargs)
    )
    np.testing.assert_allclose(np.asarray(blocked(x, kernel)), np.asarray(whole), atol=1e-6, rtol=0)


def test_taps_are_blocked_only_at_inference_on_a_static_batch():
  assert conv_extra.taps_block_images(32, training=False) == conv_extra.TAPS_BLOCK_IMAGES
  assert conv_extra.taps_block_images(conv_extra.TAPS_BLOCK_IMAGES, training=False) is None
  assert conv_extra.taps_block_images(32, training=True) is None
  assert conv_extra.taps_block_images(jax.export.symbolic_shape("b")[0], training=False) is None


def test_depthwise_rule_uses_taps_for_small_kernels_on_cpu():
  assert conv_extra.choose_depthwise_algorithm((3, 3), (1, 1), 32, 1) == "taps"
  assert conv_extra.choose_depthwise_algorithm((5, 5), (2, 2), 960, 32) == "taps"
  assert conv_extra.choose_depthwise_algorithm((7, 7), (1, 1), 32, 1) == "grouped"


def test_flop_counts_by_hand():
  model = _model(
    [
      L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
      L.SeparableConv2D(5, 3, use_bias=False),
      L.Conv2DTranspose(2, 2, strides=2),
    ],
    (6, 8, 3),
  )
  ported = port.load(model)
  depthwise, separable, transpose = ported.layers
  out1 = 6 * 8 * 6
  assert bench_flops.layer_flops(depthwise, (6, 8, 3)) == out1 * (2 * 9 + 1) + out1
  middle = 4 * 6 * 6
  assert bench_flops.layer_flops(separable, (6, 8, 6)) == 2 * middle * 9 + 4 * 6 * 5 * 2 * 6
  expected = 2 * (4 * 6 * 5) * 4 * 2 + 8 * 12 * 2
  assert bench_flops.layer_flops(transpose, (4, 6, 5)) == expected


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
  "layer,input_shape",
  [
    (L.DepthwiseConv2D(3, data_format="channels_first", name="cf_dw"), (3, 8, 8)),
    (L.SeparableConv2D(2, 3, data_format="channels_first", name="cf_sep"), (3, 8, 8)),
    (L.Conv2DTranspose(2, 3, data_format="channels_first", name="cf_tr"), (3, 8, 8)),
    (L.Conv3D(2, 2, data_format="channels_first", name="cf_3d"), (2, 4, 4, 4)),
  ],
  ids=lambda v: getattr(v, "name", ""),
)
def test_channels_first_is_refused_naming_layer_and_option(layer, input_shape):
  model = keras.Sequential([keras.Input(input_shape), layer])
  with pytest.raises(
    port.UnsupportedLayerError, match=rf"'{layer.name}'.*data_format='channels_first'"
  ):
    port.load(model)


def test_transpose_same_even_kernel_zero_output_padding_is_refused():
  layer = L.Conv2DTranspose(
    2, (2, 3), strides=2, padding="same", output_padding=(0, 1), name="short_tr"
  )
  model = keras.Sequential([keras.Input((5, 5, 2)), layer])
  with pytest.raises(port.UnsupportedLayerError, match=r"'short_tr'.*output_padding"):
    port.load(model)


def test_unknown_and_bad_options_are_refused_naming_them():
  layer = L.DepthwiseConv2D(3, name="odd_dw")
  config = {**layer.get_config(), "padding": "full"}
  layer.get_config = lambda: config
  model = keras.Sequential([keras.Input((8, 8, 3)), layer])
  with pytest.raises(port.UnsupportedLayerError, match=r"'odd_dw'.*padding='full'"):
    port.load(model)
  layer2 = L.SeparableConv2D(2, 3, name="new_option")
  config2 = {**layer2.get_config(), "some_future_option": 1}
  layer2.get_config = lambda: config2
  model2 = keras.Sequential([keras.Input((8, 8, 3)), layer2])
  with pytest.raises(port.UnsupportedLayerError, match=r"'new_option'.*some_future_option"):
    port.load(model2)


def test_jaxnets_layer_validates_options():
  with pytest.raises(ValueError, match="output_padding"):
    conv_extra.Conv2DTranspose(name="t", filters=2, kernel_size=(3, 3), output_padding=(1, 1))
  with pytest.raises(ValueError, match="padding"):
    conv_extra.DepthwiseConv2D(name="d", kernel_size=(3, 3), padding="causal")
  with pytest.raises(ValueError, match="kernel_size"):
    conv_extra.SeparableConv1D(name="s", filters=2, kernel_size=(3, 3))
  assert isinstance(
    jaxnets.layers.layer_class("Conv3D")(name="c", filters=1, kernel_size=(1, 1, 1)),
    conv_extra.Conv3D,
  )


def test_mobilenet_v2_matches_keras():
  """keras.applications' MobileNetV2 (random weights and BN statistics, small input):
  its ZeroPadding2D, strided and unstrided DepthwiseConv2D, ReLU(6) and residual Adds,
  under the rule's depthwise formulation."""
  model = keras.applications.MobileNetV2(
    weights=None, input_shape=(35, 33, 3), alpha=0.35, classes=7
  )
  parity.randomize_weights(model, seed=12, scale=0.2)
  x = np.random.default_rng(12).uniform(size=(3, 35, 33, 3)).astype(np.float32)
  parity.assert_matches_keras(model, x, classifier=True)


@pytest.mark.parametrize(
  "layer",
  [
    L.DepthwiseConv1D(3, padding="same"),
    L.SeparableConv1D(4, 3, padding="same"),
    L.Conv1DTranspose(4, 3, padding="same"),
  ],
  ids=lambda l: type(l).__name__,
)
def test_time_mask_stops_as_in_keras(layer):
  """Keras's convolutions drop the Embedding's mask; the LSTM then runs over padding too."""
  model = _model([L.Embedding(20, 4, mask_zero=True), layer, L.LSTM(3), L.Dense(2)], (9,), seed=1)
  tokens = np.random.default_rng(0).integers(1, 20, size=(6, 9)).astype(np.int32)
  tokens[:, 6:] = 0
  parity.assert_matches_keras(model, tokens, classifier=False)
