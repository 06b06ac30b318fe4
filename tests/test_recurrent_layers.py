"""Embedding, Masking, SimpleRNN/LSTM/GRU, Bidirectional, 1-D global pooling:
parity with Keras on padded variable-length input, config rejection, errors.

Inputs have variable real lengths with zero padding, including an
all-padding row, length-1 rows, a full-length row and a row with a masked step
in the middle. ``assert_matches_keras`` compares jitted ``predict`` (small
batches, so length sorting and trimming run over several buckets) and
un-jitted ``apply`` against Keras's own forward pass.
"""

import itertools
import json
import re

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from jaxnets.layers import recurrent
from port import api
from tests import parity

L = keras.layers
VOCAB, WIDTH, EMBED, UNITS = 13, 19, 5, 4
CELLS = {
  "SimpleRNN": lambda **kw: L.SimpleRNN(UNITS, **kw),
  "LSTM": lambda **kw: L.LSTM(UNITS, **kw),
  "GRU": lambda **kw: L.GRU(UNITS, **kw),
  "GRU_reset_before": lambda **kw: L.GRU(UNITS, reset_after=False, **kw),
}


def padded_ids(
  rows: int = 12, width: int = WIDTH, seed: int = 0, all_padding: bool = True
) -> np.ndarray:
  """Token ids with trailing zero padding; lengths 0 (optional), 1, 1, full, random."""
  rng = np.random.default_rng(seed)
  x = rng.integers(1, VOCAB, size=(rows, width)).astype(np.int32)
  lengths = [0 if all_padding else 2, 1, 1, width] + list(rng.integers(2, width, rows - 4))
  for row, length in enumerate(lengths):
    x[row, length:] = 0
  x[-1, 1] = 0  # a masked step inside a sequence: its state must be carried over
  return x


def sequence_model(
  *layers,
  embed: bool = True,
  mask_zero: bool = True,
  head: bool = False,
  seed: int = 7,
  width: int = WIDTH,
):
  """Input -> [Embedding] -> layers -> [Dense softmax], random asymmetric weights."""
  stack = [keras.Input((width,), dtype="int32"), L.Embedding(VOCAB, EMBED, mask_zero=mask_zero)]
  if not embed:
    stack = [keras.Input((width, EMBED))]
  stack += list(layers)
  if head:
    stack.append(L.Dense(3, activation="softmax"))
  model = keras.Sequential(stack)
  parity.randomize_weights(model, seed=seed)
  return model


# ------------------------------------------------------------------ recurrent
@pytest.mark.parametrize(
  "cell,return_sequences,go_backwards,mask_zero",
  [
    (c, rs, gb, mz)
    for c, rs, gb, mz in itertools.product(CELLS, [False, True], [False, True], [True, False])
    if mz or not gb
  ],
)  # go_backwards without a mask adds nothing the rest do not cover
def test_recurrent_matches_keras(cell, return_sequences, go_backwards, mask_zero):
  layer = CELLS[cell](return_sequences=return_sequences, go_backwards=go_backwards)
  model = sequence_model(layer, mask_zero=mask_zero)
  parity.assert_matches_keras(model, padded_ids(), classifier=False, batch_size=4)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
  "options",
  [
    {"use_bias": False, "activation": "relu"},
    # unroll gives the same numbers; dropout is the identity at inference
    {"unroll": True, "dropout": 0.3, "recurrent_dropout": 0.2, "return_sequences": True},
    {"zero_output_for_mask": True, "return_sequences": True},
    {"zero_output_for_mask": True},
  ],
  ids=["no_bias_relu", "unroll_dropout", "zero_output_sequences", "zero_output_last"],
)
def test_recurrent_options_match_keras(cell, options):
  model = sequence_model(CELLS[cell](**options))
  parity.assert_matches_keras(model, padded_ids(seed=1), classifier=False, batch_size=4)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "GRU_reset_before"])
@pytest.mark.parametrize("recurrent_activation", ["hard_sigmoid", "tanh", "softsign"])
def test_recurrent_activations_match_keras(cell, recurrent_activation):
  layer = CELLS[cell](activation="softsign", recurrent_activation=recurrent_activation)
  model = sequence_model(layer, head=True)
  parity.assert_matches_keras(model, padded_ids(seed=2), batch_size=4)


def test_stacked_recurrent_layers_with_classifier_head():
  model = sequence_model(
    L.LSTM(6, return_sequences=True),
    L.GRU(5, return_sequences=True),
    L.SimpleRNN(4),
    L.Dropout(0.5),
    head=True,
  )
  ported = parity.assert_matches_keras(model, padded_ids(seed=3), batch_size=4)
  assert ported.trims_padding


# -------------------------------------------------------------- bidirectional
@pytest.mark.parametrize(
  "merge_mode,cell",
  [("concat", "LSTM"), ("sum", "LSTM"), ("mul", "LSTM"), ("ave", "LSTM"), ("concat", "GRU")],
)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_matches_keras(merge_mode, return_sequences, cell):
  layer = L.Bidirectional(CELLS[cell](return_sequences=return_sequences), merge_mode=merge_mode)
  model = sequence_model(layer)
  parity.assert_matches_keras(model, padded_ids(seed=4), classifier=False, batch_size=4)


@pytest.mark.parametrize("cell", ["SimpleRNN", "GRU_reset_before"])
@pytest.mark.parametrize("mask_zero", [True, False])
def test_bidirectional_other_cells_match_keras(cell, mask_zero):
  layer = L.Bidirectional(CELLS[cell](return_sequences=True, use_bias=False))
  model = sequence_model(layer, mask_zero=mask_zero)
  parity.assert_matches_keras(model, padded_ids(seed=5), classifier=False, batch_size=4)


def test_stacked_bidirectional_lstm_classifier():
  """The spec's model shape: Embedding -> BiLSTM (sequences) -> BiLSTM -> Dropout -> Dense."""
  model = sequence_model(
    L.Bidirectional(L.LSTM(5, return_sequences=True)),
    L.Bidirectional(L.LSTM(4)),
    L.Dropout(0.3),
    head=True,
  )
  ported = parity.assert_matches_keras(model, padded_ids(rows=20, seed=6), batch_size=4)
  assert ported.trims_padding


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_with_distinct_backward_layer(return_sequences):
  """A user-given backward layer with other options runs unfused, same numbers."""
  forward = L.LSTM(4, return_sequences=return_sequences)
  backward = L.GRU(3, activation="relu", go_backwards=True, return_sequences=return_sequences)
  model = sequence_model(L.Bidirectional(forward, backward_layer=backward))
  ported = parity.assert_matches_keras(model, padded_ids(seed=8), classifier=False, batch_size=4)
  assert not ported.layers[1]._fusable()  # pylint: disable=protected-access  (an internal choice under test)


def test_bidirectional_forward_layer_going_backwards():
  """go_backwards on the 'forward' layer: Keras keeps its output reversed."""
  forward = L.SimpleRNN(3, go_backwards=True, return_sequences=True)
  backward = L.SimpleRNN(3, return_sequences=True)
  model = sequence_model(L.Bidirectional(forward, backward_layer=backward, merge_mode="sum"))
  ported = parity.assert_matches_keras(model, padded_ids(seed=9), classifier=False, batch_size=4)
  assert not ported.layers[1].trailing_padding_safe


# ------------------------------------------------------- masking and pooling
def test_masking_layer_feeds_recurrent_layers():
  x = np.random.default_rng(10).normal(size=(9, WIDTH, EMBED)).astype(np.float32)
  for row, length in enumerate([0, 1, 1, WIDTH, 3, 7, 12, 5, 9]):
    x[row, length:] = 0.0
  x[4, 1] = 0.0  # a masked step inside a sequence
  x[5, 2, 0] = 0.0  # one feature at mask_value: the step stays real
  model = sequence_model(
    L.Masking(), L.Bidirectional(L.GRU(3, return_sequences=True)), L.LSTM(4), embed=False
  )
  parity.assert_matches_keras(model, x, classifier=False, batch_size=4)
  masking = sequence_model(L.Masking(mask_value=0.5), embed=False)
  x[2, 3] = 0.5
  parity.assert_matches_keras(masking, x, classifier=False)


@pytest.mark.parametrize(
  "pool,mask_zero,keepdims",
  [
    ("GlobalAveragePooling1D", True, False),
    ("GlobalAveragePooling1D", False, False),
    ("GlobalAveragePooling1D", True, True),
    ("GlobalMaxPooling1D", True, False),
    ("GlobalMaxPooling1D", False, True),
  ],
)
def test_global_pooling_1d_matches_keras(pool, mask_zero, keepdims):
  model = sequence_model(
    L.GRU(3, return_sequences=True), getattr(L, pool)(keepdims=keepdims), mask_zero=mask_zero
  )
  x = padded_ids(seed=11, all_padding=False)
  ported = parity.assert_matches_keras(model, x, classifier=False, batch_size=4)
  expect_trim = mask_zero and pool == "GlobalAveragePooling1D" and not keepdims
  assert ported.trims_padding == expect_trim


def test_global_average_pooling_of_all_padding_row_is_nan_like_keras():
  model = sequence_model(L.GlobalAveragePooling1D())
  x = padded_ids(seed=12)
  expected = np.asarray(model(x))
  got = port.load(model).predict(x, batch_size=4)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
  assert np.isnan(got[0]).all()
  parity.assert_outputs_match(model, got, x, classifier=False)


# ------------------------------------------------- length trimming is exact
def test_trimmed_predict_equals_untrimmed_apply():
  model = port.load(
    sequence_model(
      L.Bidirectional(L.LSTM(4, return_sequences=True)),
      L.SimpleRNN(3, go_backwards=True),
      head=True,
      width=64,
    )
  )
  assert model.trims_padding
  x = np.zeros((30, 64), np.int32)
  x[:, :WIDTH] = np.tile(padded_ids(seed=13), (3, 1))[:30]
  full = np.asarray(model.apply(model.params, x))
  np.testing.assert_allclose(model.predict(x, batch_size=16), full, atol=1e-6, rtol=0)


def test_row_blocks_give_the_same_numbers():
  """CPU runs rows in cache-sized blocks; force small ones (and a ragged last one)."""
  x = np.concatenate([padded_ids(seed=s) for s in range(4)])[:41]
  for mask_zero in (True, False):
    keras_model = sequence_model(
      L.Bidirectional(L.LSTM(4, return_sequences=True)),
      L.LSTM(3, go_backwards=True, return_sequences=True),
      L.Bidirectional(L.GRU(3), merge_mode="mul"),
      mask_zero=mask_zero,
      head=True,
    )
    with jaxnets.settings.override(rnn_row_block_floats=16):
      got = port.load(keras_model).predict(x, batch_size=64)  # 41 rows: blocks of 16
    parity.assert_outputs_match(keras_model, got, x)


@pytest.mark.parametrize(
  "layer,safe",
  [
    (L.LSTM(3, return_sequences=True), True),
    (L.LSTM(3, go_backwards=True), True),
    (L.LSTM(3, go_backwards=True, return_sequences=True), False),
    (L.LSTM(3, zero_output_for_mask=True), False),
    (L.LSTM(3, zero_output_for_mask=True, go_backwards=True), True),
    (L.Bidirectional(L.GRU(3, return_sequences=True)), True),
    (L.Bidirectional(L.GRU(3)), True),
    (L.Masking(), False),
    (L.GlobalMaxPooling1D(), False),
  ],
)
def test_trailing_padding_safety_per_layer(layer, safe):
  built, problems = api.check_layers([layer])
  assert not problems
  assert built[0][2][0].trailing_padding_safe is safe


# ----------------------------------------------------------- round trips
def test_save_and_load_round_trip(tmp_path):
  model = port.load(
    sequence_model(
      L.Bidirectional(L.GRU(3, return_sequences=True, reset_after=False)),
      L.Bidirectional(L.LSTM(4), merge_mode="ave"),
      L.Dropout(0.1),
      head=True,
    )
  )
  x = padded_ids(seed=14)
  loaded = jaxnets.load(model.save(tmp_path / "m"))
  assert loaded.layers == model.layers
  np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
  json.dumps([layer.get_config() for layer in model.layers])
  assert "Bidirectional" in model.summary()


def test_init_gives_keras_default_shapes_and_forget_bias():
  model = port.load(
    sequence_model(
      L.Bidirectional(L.LSTM(4, return_sequences=True)),
      L.GRU(3, return_sequences=True),
      L.SimpleRNN(2),
      head=True,
    )
  )
  fresh = model.init(jax.random.PRNGKey(0))
  assert jax.tree_util.tree_map(np.shape, fresh) == jax.tree_util.tree_map(np.shape, model.params)
  bias = np.asarray(fresh[model.layers[1].name]["forward_layer"]["bias"])
  np.testing.assert_array_equal(bias, np.repeat([0.0, 1.0, 0.0, 0.0], 4))
  embeddings = np.asarray(fresh[model.layers[0].name]["embeddings"])
  assert np.abs(embeddings).max() <= 0.05
  kernel = np.asarray(fresh[model.layers[2].name]["recurrent_kernel"])  # GRU (3, 9)
  np.testing.assert_allclose(kernel @ kernel.T, np.eye(3), atol=1e-5)


# ---------------------------------------------------------------- errors
def test_out_of_range_token_ids_are_rejected():
  model = port.load(sequence_model(L.LSTM(3), head=True))
  for bad in (VOCAB, -1):
    x = padded_ids(seed=15)
    x[3, 0] = bad
    with pytest.raises(
      jaxnets.InputError,
      match=rf"Embedding layer 'embedding.*'.*token id {bad} at position "
      rf"\(3, 0\).*\[0, {VOCAB}\)",
    ):
      model.predict(x)
    with pytest.raises(jaxnets.InputError, match="outside the valid range"):
      model(x)


@pytest.mark.parametrize(
  "layer,culprit",
  [
    (L.LSTM(3, stateful=True, name="st"), r"'st' \(LSTM\).*stateful=True"),
    (L.GRU(3, return_state=True, name="rs"), r"'rs' \(GRU\).*return_state=True"),
    (L.Bidirectional(L.LSTM(3), merge_mode=None, name="bi"), r"'bi'.*merge_mode=None"),
    (
      L.Bidirectional(L.SimpleRNN(3, stateful=True, name="inner"), name="bi2"),
      r"'bi2' \(Bidirectional\).*'forward_inner' \(SimpleRNN\).*stateful=True",
    ),
    (L.LSTM(3, activation=lambda t: t, name="fn"), r"'fn'.*activation"),
    (
      L.GlobalAveragePooling1D(data_format="channels_first", name="cf"),
      r"'cf'.*data_format='channels_first'",
    ),
    (L.Bidirectional(L.ConvLSTM1D(2, 3), name="conv"), r"'conv'.*ConvLSTM1D"),
  ],
)
def test_unsupported_options_name_the_culprit(layer, culprit):
  problems = api.check_layers([layer])[1]
  assert problems
  message = str(port.UnsupportedModelError(problems))
  assert re.search(culprit, message, flags=re.S), message


def test_return_state_model_is_rejected_by_port_load():
  inputs = keras.Input((WIDTH,), dtype="int32")
  x = L.Embedding(VOCAB, EMBED, mask_zero=True)(inputs)
  x, _, _ = L.LSTM(3, return_state=True, name="with_state")(x)
  model = keras.Model(inputs, L.Dense(2)(x))
  with pytest.raises(port.UnsupportedLayerError, match=r"'with_state'.*return_state"):
    port.load(model)


def test_training_with_recurrent_dropout_is_refused():
  layer = recurrent.LSTM(name="l", units=2, dropout=0.5)
  params = layer.init(jax.random.PRNGKey(0), (3,))
  x = np.ones((1, 4, 3), np.float32)
  layer.apply(params, x)
  with pytest.raises(NotImplementedError, match="'l'.*dropout"):
    layer.apply(params, x, training=True, rng=jax.random.PRNGKey(1))
