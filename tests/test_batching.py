"""Host-side batching (``jaxnets.batching``) and the speed settings (``jaxnets.settings``)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import jaxnets
from jaxnets import batching
from jaxnets import settings


def test_real_lengths_count_to_the_last_nonzero_token():
  tokens = np.array([[3, 0, 4, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(batching.real_lengths(tokens), [3, 0, 5])


@pytest.mark.parametrize(
  "longest,max_length,expected",
  [(0, 40, 8), (1, 40, 8), (8, 40, 8), (9, 40, 16), (37, 40, 40), (5, 6, 6)],
)
def test_bucketed_length(longest, max_length, expected):
  assert batching.bucketed_length(longest, max_length) == expected


@pytest.mark.parametrize(
  "rows,batch_size,devices,shrink,expected",
  [
    (16, 16, 1, True, 16),
    (5, 16, 1, True, 8),
    (1, 16, 1, True, 1),
    (9, 12, 1, True, 12),
    (5, 16, 1, False, 16),
    (1, 16, 4, True, 4),
    (6, 6, 4, True, 8),
    (3, 6, 4, True, 4),
  ],
)
def test_padded_rows(rows, batch_size, devices, shrink, expected):
  assert batching.padded_rows(rows, batch_size, devices, shrink) == expected


def test_batcher_sorts_cuts_pads_and_unsort_restores_order():
  rng = np.random.default_rng(0)
  x = rng.integers(1, 9, (11, 20)).astype(np.int32)
  lengths = rng.integers(0, 21, 11)
  x[np.arange(20)[None, :] >= lengths[:, None]] = 0
  labels = np.arange(11, dtype=np.int32)
  batcher = batching.Batcher(x, 4, per_row=(labels,), trim=True, shrink_partial=True)
  order = batcher.length_order()
  np.testing.assert_array_equal(lengths[order], np.sort(lengths))
  batches = list(batcher(order))
  assert len(batches) == len(batcher) == 3
  assert [b.rows for b in batches] == [4, 4, 3]
  seen = []
  for batch in batches:
    tokens, rows_labels = batch.arrays
    assert tokens.shape[0] == rows_labels.shape[0] == 4  # the 3-row batch padded to 4
    assert tokens.shape[1] % batching.LENGTH_BUCKET == 0 or tokens.shape[1] == 20
    assert not tokens[batch.rows :].any() and not rows_labels[batch.rows :].any()
    seen.append(rows_labels[: batch.rows])
    # Cutting drops only padding: each row is its input row, shortened.
    for tokens_row, label in zip(tokens[: batch.rows], rows_labels[: batch.rows]):
      np.testing.assert_array_equal(x[label, : tokens.shape[1]], tokens_row)
      assert not x[label, tokens.shape[1] :].any()
  np.testing.assert_array_equal(batching.unsort(np.concatenate(seen), order), labels)


def test_batcher_rejects_bad_arguments():
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    batching.Batcher(np.zeros((3, 2)), 0)
  with pytest.raises(ValueError, match="per-row"):
    batching.Batcher(np.zeros((3, 2)), 2, per_row=(np.zeros(2),))


def test_settings_override_configure_and_environment():
  default = settings.current()
  with settings.override(rnn_row_block_floats=16) as inside:
    assert settings.current() is inside and inside.rnn_row_block_floats == 16
  assert settings.current() == default
  try:
    assert settings.configure(conv_pad_odd_channels_below=0).conv_pad_odd_channels_below == 0
  finally:
    # reset, not configure(old value): that would leave the setting explicit for
    # every platform in this worker (a CUDA lowering would keep the CPU's choice).
    settings.reset()
  assert settings.current() == default
  with pytest.raises(TypeError):
    settings.configure(no_such_setting=1)
  env = {"JAXNETS_RNN_ROW_BLOCK_FLOATS": "32768", "JAXNETS_RNN_SKIP_PADDED_STEPS": "false"}
  assert settings.from_environment(env) == settings.Settings(
    rnn_row_block_floats=32768, rnn_skip_padded_steps=False
  )
  with pytest.raises(ValueError, match="JAXNETS_RNN_SKIP_PADDED_STEPS"):
    settings.from_environment({"JAXNETS_RNN_SKIP_PADDED_STEPS": "maybe"})


def test_unknown_activation_is_a_value_error_naming_it():
  with pytest.raises(ValueError, match=r"unknown activation 'nope'; known: .*relu"):
    jaxnets.activations.get("nope")


def test_input_error_lives_in_a_leaf_module():
  assert jaxnets.InputError is jaxnets.errors.InputError is jaxnets.model.InputError


def test_one_batch_fast_path_matches_the_general_path():
  """``predict`` of rows that fit one batch skips sorting; same numbers as batches."""
  import port  # pylint: disable=import-outside-toplevel

  keras = pytest.importorskip("keras")
  model = keras.Sequential(
    [
      keras.Input((9,), dtype="int32"),
      keras.layers.Embedding(20, 4, mask_zero=True),
      keras.layers.LSTM(3),
      keras.layers.Dense(2, activation="softmax"),
    ]
  )
  ported = port.load(model)
  ids = np.random.default_rng(0).integers(1, 20, (5, 9)).astype(np.int32)
  for row, length in enumerate([9, 2, 0, 5, 1]):
    ids[row, length:] = 0
  one_batch = ported.predict(ids, batch_size=8)
  several = ported.predict(ids, batch_size=2)
  np.testing.assert_allclose(one_batch, several, atol=1e-6)
  np.testing.assert_allclose(one_batch, model(ids, training=False), atol=1e-5)


def test_compilation_cache_is_opt_in_by_environment(tmp_path):
  code = "import jax, jaxnets; print(jax.config.jax_compilation_cache_dir)"
  env = dict(os.environ, JAXNETS_COMPILATION_CACHE=str(tmp_path / "xla"))
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
  ).stdout
  assert out.strip() == str(tmp_path / "xla")
  env.pop("JAXNETS_COMPILATION_CACHE")
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
  ).stdout
  assert out.strip() in ("None", "")
