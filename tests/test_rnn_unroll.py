"""``jaxnets.settings.rnn_scan_unroll``: the recurrent scan's unroll changes how the loop is
compiled, never the numbers."""

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from tests import parity

L = keras.layers


def _text_model():
  model = keras.Sequential(
    [
      keras.Input((11,), dtype="int32"),
      L.Embedding(25, 4, mask_zero=True),
      L.Bidirectional(L.LSTM(5, return_sequences=True)),
      L.SimpleRNN(3),
      L.Dense(3, activation="softmax"),
    ]
  )
  parity.randomize_weights(model, seed=5)
  return model


def _ids():
  rng = np.random.default_rng(5)
  ids = rng.integers(1, 25, size=(9, 11)).astype(np.int32)
  ids[np.arange(11)[None, :] >= rng.integers(1, 12, size=9)[:, None]] = 0
  return ids


@pytest.mark.parametrize("unroll", [2, 3, 11, 16])
def test_unroll_changes_the_loop_not_the_numbers(unroll):
  keras_model, ids = _text_model(), _ids()
  ported = port.load(keras_model)
  plain = jax.jit(ported.apply)(ported.params, ids)
  with jaxnets.settings.override(rnn_scan_unroll=unroll):
    jaxpr = str(jax.make_jaxpr(ported.apply)(ported.params, ids))
    unrolled = jax.jit(ported.apply)(ported.params, ids)
  assert f"unroll={unroll}" in jaxpr
  np.testing.assert_array_equal(np.asarray(unrolled), np.asarray(plain))
  parity.assert_outputs_match(keras_model, np.asarray(unrolled), ids)


def test_unroll_must_be_positive():
  with pytest.raises(ValueError, match="rnn_scan_unroll must be >= 1"):
    jaxnets.settings.Settings(rnn_scan_unroll=0)
