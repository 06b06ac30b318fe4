"""FLOP counts (``bench/flops.py``) against counts done by hand."""

import jax
import numpy as np
import pytest

import jaxnets
from bench import flops
from jaxnets.layers import conv, core, embedding, normalization, pooling, recurrent

# Convention (bench/flops.py): a multiply-add is 2 FLOPs; bias adds, each
# element of a non-linear activation, BatchNorm's multiply and add, pooling
# comparisons/adds/divisions are 1 each; lookups and reshapes are free.


@pytest.mark.parametrize(
  "layer, input_shape, expected",
  [
    # 3 outputs x (2*5 multiply-adds + bias) + 3 relu
    (core.Dense(name="d", units=3, activation="relu"), (5,), 3 * (2 * 5 + 1) + 3),
    (core.Dense(name="d", units=3, use_bias=False), (5,), 2 * 5 * 3),
    # position-wise over 4 time steps
    (core.Dense(name="d", units=3, activation="relu"), (4, 5), 4 * (3 * 11 + 3)),
    # same padding: 6x6x4 outputs, each 3*3*2 multiply-adds + bias, + relu
    (
      conv.Conv2D(name="c", filters=4, kernel_size=(3, 3), padding="same", activation="relu"),
      (6, 6, 2),
      6 * 6 * 4 * (2 * 9 * 2 + 1) + 6 * 6 * 4,
    ),
    # valid, stride 2: 3x3x2 outputs, each 3*3*3 multiply-adds + bias
    (
      conv.Conv2D(name="c", filters=2, kernel_size=(3, 3), strides=(2, 2)),
      (7, 7, 3),
      3 * 3 * 2 * (2 * 27 + 1),
    ),
    # grouped 1-D: 8 steps x 4 filters, each 3 taps x (4 / 2) channels
    (
      conv.Conv1D(name="c", filters=4, kernel_size=(3,), padding="same", groups=2),
      (8, 4),
      8 * 4 * (2 * 3 * 2 + 1),
    ),
    # 2x2 windows: 3 comparisons (max) or 3 adds + 1 division (average) per output
    (pooling.MaxPooling2D(name="p", pool_size=(2, 2)), (4, 4, 3), 2 * 2 * 3 * 3),
    (pooling.AveragePooling2D(name="p", pool_size=(2, 2)), (4, 4, 3), 2 * 2 * 3 * 4),
    (pooling.GlobalMaxPooling2D(name="p"), (4, 4, 3), 3 * 15),
    (pooling.GlobalAveragePooling2D(name="p"), (4, 4, 3), 3 * 16),
    (normalization.BatchNormalization(name="bn"), (4, 4, 3), 2 * 48),
    (embedding.Embedding(name="e", input_dim=10, output_dim=4), (7,), 0),
    (core.Dropout(name="x", rate=0.5), (7, 3), 0),
    (core.Flatten(name="f"), (2, 2, 3), 0),
    (core.Activation(name="a", activation="tanh"), (2, 3), 6),
    (core.Activation(name="a", activation="linear"), (2, 3), 0),
    # per step: x@W 2*3*4 + h@U 2*4*4 + add 4 + bias 4 + tanh 4; 5 steps
    (recurrent.SimpleRNN(name="r", units=4), (5, 3), 5 * (24 + 32 + 4 + 4 + 4)),
    # per step: 2*3*8 + 2*2*8 + add 8 + bias 8 + 5 activations*2 + 4 updates*2
    (recurrent.LSTM(name="r", units=2), (5, 3), 5 * (48 + 32 + 8 + 8 + 10 + 8)),
    # per step: 2*3*6 + 2*2*6 + bias 2*6 (reset_after) + 11*2
    (recurrent.GRU(name="r", units=2), (5, 3), 5 * (36 + 24 + 12 + 22)),
    (recurrent.GRU(name="r", units=2, reset_after=False), (5, 3), 5 * (36 + 24 + 6 + 22)),
  ],
)
def test_layer_flops_match_hand_counts(layer, input_shape, expected):
  assert flops.layer_flops(layer, input_shape) == expected


def _bidirectional(merge_mode, sequences):
  def lstm(name, backwards):
    return recurrent.LSTM(
      name=name,
      units=2,
      return_sequences=sequences,
      go_backwards=backwards,
      zero_output_for_mask=sequences,
    )

  return recurrent.Bidirectional(
    name="bi", forward_layer=lstm("f", False), backward_layer=lstm("b", True), merge_mode=merge_mode
  )


@pytest.mark.parametrize(
  "merge_mode, sequences, merge_flops",
  [("concat", False, 0), ("sum", False, 2), ("mul", True, 5 * 2), ("ave", True, 2 * 5 * 2)],
)
def test_bidirectional_counts_both_directions_and_the_merge(merge_mode, sequences, merge_flops):
  one_direction = 5 * (48 + 32 + 8 + 8 + 10 + 8)  # the LSTM case above
  layer = _bidirectional(merge_mode, sequences)
  assert flops.layer_flops(layer, (5, 3)) == 2 * one_direction + merge_flops


def test_unknown_layer_is_an_error():
  class Foreign(jaxnets.layers.Layer):
    pass

  with pytest.raises(flops.UnknownLayerError, match="Foreign"):
    flops.counter_for(Foreign(name="f"))

  # A subclass of a known layer keeps its formula.
  class Custom(core.Dense):
    pass

  assert flops.layer_flops(Custom(name="c", units=3), (5,)) == 3 * (2 * 5 + 1)


def _model(layers, shapes, **kwargs):
  params = {
    layer.name: layer.init(jax.random.key(i), shape)
    for i, (layer, shape) in enumerate(zip(layers, shapes))
  }
  return jaxnets.Model(layers, params, **kwargs)


def test_cnn_model_flops_per_example_and_per_batch():
  model = _model(
    [
      conv.Conv2D(name="conv", filters=4, kernel_size=(3, 3), padding="same", activation="relu"),
      pooling.MaxPooling2D(name="pool", pool_size=(2, 2)),
      core.Flatten(name="flatten"),
      core.Dense(name="out", units=3, activation="softmax"),
    ],
    [(8, 8, 2), (8, 8, 4), (4, 4, 4), (64,)],
    input_shape=(8, 8, 2),
  )
  conv_flops = 8 * 8 * 4 * (2 * 9 * 2 + 1) + 8 * 8 * 4
  pool_flops = 4 * 4 * 4 * 3
  dense_flops = 3 * (2 * 64 + 1) + 3
  assert flops.per_layer(model, (8, 8, 2)) == [
    ("conv", "Conv2D", conv_flops),
    ("pool", "MaxPooling2D", pool_flops),
    ("flatten", "Flatten", 0),
    ("out", "Dense", dense_flops),
  ]
  x = np.zeros((5, 8, 8, 2), np.float32)
  assert flops.model_flops(model, x) == 5 * (conv_flops + pool_flops + dense_flops)
  assert not flops.is_text(model)


def test_text_model_counts_each_row_at_its_real_length():
  model = _model(
    [
      embedding.Embedding(name="embedding", input_dim=20, output_dim=3, mask_zero=True),
      recurrent.SimpleRNN(name="rnn", units=4),
      core.Dense(name="out", units=2),
    ],
    [(6,), (6, 3), (4,)],
    input_shape=(6,),
    input_dtype="int32",
  )
  tokens = np.array(
    [
      [5, 6, 0, 0, 0, 0],  # real length 2
      [1, 2, 3, 4, 5, 0],  # 5
      [0, 0, 0, 0, 0, 0],
    ],  # 0: only the head runs
    np.int32,
  )
  assert flops.is_text(model)
  np.testing.assert_array_equal(flops.real_lengths(tokens), [2, 5, 0])
  per_step = 2 * 3 * 4 + 2 * 4 * 4 + 4 + 4 + 4
  head = 2 * (2 * 4 + 1)
  assert flops.model_flops(model, tokens) == per_step * (2 + 5 + 0) + 3 * head
  assert flops.per_layer_total(model, tokens) == [
    ("embedding", "Embedding", 0),
    ("rnn", "SimpleRNN", per_step * 7),
    ("out", "Dense", 3 * head),
  ]
