"""Hostile but realistic inputs: non-finite values match Keras, the rest is named clearly."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import jaxnets  # noqa: E402
import port  # noqa: E402
from tests import parity  # noqa: E402

NAN, INF = np.nan, np.inf


def _nonfinite(shape, seed=0):
  """Unit normal values with NaN, +inf and -inf sprinkled in, and one all-NaN row."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32)
  flat = x.reshape(len(x), -1)
  cells = rng.choice(flat.shape[1], size=min(3, flat.shape[1]), replace=False)
  flat[0, cells] = [NAN, INF, -INF][: len(cells)]
  flat[1, :] = NAN
  if len(x) > 2:
    flat[2, cells[:1]] = -INF
  return flat.reshape(shape)


def _same_as_keras(model, x):
  """The parity rule on non-finite inputs (``port/comparison.py``): the port has
  the float64 reference's kind (finite / NaN / ±inf) wherever Keras's float32
  output has it, and its finite values pass the rule. Keras's own float32
  softmax returns finite values for a row holding +inf (NaN in float64 and in
  the port); that accident is Keras's, is not asserted, and may differ by CPU."""
  comparison = port.compare(model, port.load(model), x, batch_size=4)
  assert comparison.ok, comparison.verdict()
  assert comparison.nonfinite_positions > 0  # the inputs did reach the outputs


FAMILIES = {
  "max_pooling2d": lambda: [
    keras.layers.MaxPooling2D(2),
    keras.layers.MaxPooling2D(1),
    keras.layers.MaxPooling2D(3, strides=1, padding="same"),
  ],
  "max_pooling1d": lambda: [keras.layers.Reshape((-1, 2)), keras.layers.MaxPooling1D(3, 2, "same")],
  "average_pooling": lambda: [keras.layers.AveragePooling2D(2, padding="same")],
  "global_max": lambda: [keras.layers.GlobalMaxPooling2D()],
  "global_average": lambda: [keras.layers.GlobalAveragePooling2D()],
  "conv": lambda: [keras.layers.Conv2D(3, 3, padding="same", activation="relu")],
  "batch_norm": lambda: [keras.layers.BatchNormalization()],
  "relu_options": lambda: [keras.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5)],
  "activations": lambda: [
    keras.layers.Activation(a)
    for a in ("elu", "selu", "gelu", "swish", "softplus", "hard_sigmoid", "tanh")
  ],
  "dense": lambda: [keras.layers.Flatten(), keras.layers.Dense(5, activation="sigmoid")],
  "softmax": lambda: [keras.layers.Flatten(), keras.layers.Softmax()],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_nonfinite_image_inputs_match_keras(family):
  model = keras.Sequential([keras.Input((5, 4, 2)), *FAMILIES[family]()])
  parity.randomize_weights(model, seed=1)
  _same_as_keras(model, _nonfinite((4, 5, 4, 2)))


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("wrap", [False, True])
def test_nonfinite_sequences_match_keras(cell, wrap):
  rnn = getattr(keras.layers, cell)(3, return_sequences=True)
  layer = keras.layers.Bidirectional(rnn) if wrap else rnn
  model = keras.Sequential([keras.Input((6, 2)), layer, keras.layers.GlobalMaxPooling1D()])
  parity.randomize_weights(model, seed=2)
  _same_as_keras(model, _nonfinite((4, 6, 2), seed=3))


# ------------------------------------------------------------ named refusals


@pytest.fixture(scope="module")
def token_model():
  model = keras.Sequential(
    [
      keras.Input((4,), dtype="int32"),
      keras.layers.Embedding(10, 2),
      keras.layers.Flatten(),
      keras.layers.Dense(2),
    ]
  )
  return port.load(model)


def test_int64_ids_past_int32_are_refused_before_they_wrap(token_model):
  ids = np.array([[1, 2, 3, 2**32 + 1]], np.int64)  # would wrap to id 1
  with pytest.raises(jaxnets.InputError, match=r"token id 4294967297 at position \(0, 3\)"):
    token_model.predict(ids)


def test_a_ragged_list_names_the_row(token_model):
  with pytest.raises(jaxnets.InputError, match="ragged: row 2 has length 3, row 0 has 4"):
    token_model.predict([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]])


@pytest.mark.parametrize("batch_size", [None, 2.7, "8", True, 0, -1])
def test_batch_size_must_be_a_positive_int(token_model, batch_size):
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    token_model.predict(np.ones((2, 4), np.int32), batch_size=batch_size)


def test_numpy_int_batch_size_is_fine(token_model):
  assert token_model.predict(np.ones((2, 4), np.int32), batch_size=np.int64(2)).shape == (2, 2)


def test_invalid_utf8_names_the_row():
  vectorize = keras.layers.TextVectorization(output_sequence_length=4)
  vectorize.adapt(["saya suka", "makanan ini"])
  model = keras.Sequential(
    [
      keras.Input((), dtype="string"),
      vectorize,
      keras.layers.Embedding(10, 2),
      keras.layers.Flatten(),
      keras.layers.Dense(2),
    ]
  )
  ported = port.load(model)
  with pytest.raises(jaxnets.InputError, match=r"item 1 is not valid UTF-8"):
    ported.predict([b"saya", b"\xff\xfe bad", b"ini"])


@pytest.mark.parametrize(
  "layer, minimum",
  [
    (lambda: keras.layers.Conv1D(2, 5), 5),
    (lambda: keras.layers.Conv1D(2, 3, dilation_rate=3), 7),
    (lambda: keras.layers.MaxPooling1D(4), 4),
    (lambda: keras.layers.AveragePooling1D(3), 3),
  ],
)
def test_inputs_shorter_than_a_window_name_the_layer_and_the_minimum(layer, minimum):
  keras_layer = layer()
  model = keras.Sequential([keras.Input((None, 2)), keras_layer, keras.layers.GlobalMaxPooling1D()])
  ported = port.load(model)
  assert ported.predict(np.ones((1, minimum, 2), np.float32)).shape[0] == 1
  with pytest.raises(
    jaxnets.InputError, match=rf"layer '{keras_layer.name}'.*inputs need at least {minimum}"
  ):
    ported.predict(np.ones((1, minimum - 1, 2), np.float32))
