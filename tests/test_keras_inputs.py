"""train.keras_inputs: Keras's batches, without TensorFlow's E0000 log line.

The pipeline must cut and order batches exactly as Keras's own array adapter
does (so a study's data order is Keras's), and a deterministic text ``fit``
through it must not print ``NodeDef mentions attribute use_unbounded_threadpool``
(a subprocess: op determinism is process-wide state).
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras.src.trainers.data_adapters import array_data_adapter

from train import keras_inputs

TEXTS = np.array([f"kalimata {i} {'bagus' if i % 3 else 'buruk'}" for i in range(203)], object)
LABELS = np.arange(203) % 3


def _epochs(dataset, count):
  return [np.concatenate([np.asarray(batch[1]) for batch in dataset]) for _ in range(count)]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [32, 203, 256])
def test_batches_match_keras_array_adapter(shuffle, batch_size):
  rows = np.arange(len(TEXTS))
  keras.utils.set_random_seed(7)
  theirs = array_data_adapter.ArrayDataAdapter(
    TEXTS, rows, batch_size=batch_size, shuffle=shuffle
  ).get_tf_dataset()
  expected = _epochs(theirs, 2)
  keras.utils.set_random_seed(7)
  ours = keras_inputs.array_dataset(TEXTS, rows, batch_size, shuffle=shuffle)
  got = _epochs(ours, 2)
  for want, have in zip(expected, got):
    np.testing.assert_array_equal(have, want)
  if shuffle:
    assert not np.array_equal(got[0], np.sort(got[0]))  # really shuffled
  sizes = [len(batch[1]) for batch in ours]
  assert sizes == [batch_size] * (203 // batch_size) + (
    [203 % batch_size] if 203 % batch_size else []
  )


def test_predict_batches_hold_inputs_only_in_order():
  batches = list(keras_inputs.array_dataset(TEXTS, None, 50, shuffle=False))
  assert [len(b) for b in batches] == [50, 50, 50, 50, 3]
  assert [s.decode() for s in np.concatenate([b.numpy() for b in batches])] == list(TEXTS)


def test_numbers_go_to_keras_unchanged():
  x = np.zeros((4, 3), np.float32)
  assert keras_inputs.predict_arguments(x, 2) == {"x": x, "batch_size": 2}
  assert keras_inputs.needs_own_pipeline(TEXTS)


def _deterministic_text_fit(fit_call: str, predict_call: str) -> str:
  """Runs a tiny deterministic text fit + predict in a fresh process; returns stderr."""
  script = (
    textwrap.dedent(
      """
    import numpy as np, tensorflow as tf, keras
    from train import keras_inputs
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    x = np.array([f"kata {i} {'bagus' if i % 3 else 'buruk'}" for i in range(90)], object)
    y = np.arange(90) % 3
    vec = keras.layers.TextVectorization(max_tokens=30, output_sequence_length=6)
    vec.adapt(x)
    model = keras.Sequential([
      keras.Input((1,), dtype="string"), vec, keras.layers.Embedding(30, 4, mask_zero=True),
      keras.layers.LSTM(4), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    FIT
    PREDICT
    print("done")
    """
    )
    .replace("FIT", fit_call)
    .replace("PREDICT", predict_call)
  )
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
  done = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert "done" in done.stdout
  return done.stderr


def test_deterministic_text_fit_logs_no_nodedef_error():
  stderr = _deterministic_text_fit(
    "model.fit(**keras_inputs.fit_arguments(x, y, x[:20], y[:20], 16), epochs=2, verbose=0)",
    "model.predict(**keras_inputs.predict_arguments(x, 32), verbose=0)",
  )
  assert "use_unbounded_threadpool" not in stderr


def test_keras_own_pipeline_still_shows_the_bug():
  """The control: if TensorFlow fixed its rewrite, train.keras_inputs can go."""
  stderr = _deterministic_text_fit(
    "model.fit(x, y, batch_size=16, validation_data=(x[:20], y[:20]), epochs=2, verbose=0)",
    "model.predict(x, batch_size=32, verbose=0)",
  )
  if "use_unbounded_threadpool" not in stderr:
    pytest.skip("this TensorFlow no longer logs the E0000 line; train.keras_inputs may be removed")
