"""End to end on real data: a Keras BiLSTM text classifier trained briefly on
NusaX-Senti Indonesian, ported, and compared with Keras on the 400 test texts
fed as raw strings -- then saved and reloaded with TensorFlow blocked.

Needs the real data (``JAXNETS_DATA_DIR``); skipped without it.
"""

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score

import jaxnets
import port
from tests import parity

L = keras.layers


@pytest.fixture(scope="module")
def nusax(real_data_dir):
  from train import data  # pylint: disable=import-outside-toplevel

  return data.load_nusax("indonesian", real_data_dir)


@pytest.fixture(scope="module")
def trained(nusax):
  """TextVectorization -> Embedding(mask_zero) -> BiLSTM -> Dropout -> Dense softmax."""
  keras.utils.set_random_seed(0)
  vectorizer = L.TextVectorization(max_tokens=5000, output_sequence_length=64)
  vectorizer.adapt(nusax.train_texts)
  model = keras.Sequential(
    [
      keras.Input((1,), dtype="string"),
      vectorizer,
      L.Embedding(vectorizer.vocabulary_size(), 32, mask_zero=True),
      L.Bidirectional(L.LSTM(32)),
      L.Dropout(0.5),
      L.Dense(3, activation="softmax"),
    ]
  )
  model.compile(
    optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy()
  )
  model.fit(
    np.asarray(nusax.train_texts, dtype=object),
    nusax.train_labels,
    epochs=3,
    batch_size=32,
    verbose=0,
    validation_data=(np.asarray(nusax.valid_texts, dtype=object), nusax.valid_labels),
  )
  return model


def test_port_agrees_with_keras_on_raw_test_texts(nusax, trained):
  texts = list(nusax.test_texts)
  assert len(texts) == 400
  expected = trained.predict(np.asarray(texts, dtype=object), batch_size=32, verbose=0)
  model = port.load(trained)
  assert model.preprocessor is not None and model.trims_padding
  for batch_size in (256, 1):
    got = model.predict(texts, batch_size=batch_size)
    comparison = parity.assert_outputs_match(
      trained, got, np.asarray(texts, dtype=object), keras_outputs=expected, label=str(batch_size)
    )
    # The spec's headline: within 1e-5 of Keras and the same class on every text.
    assert comparison.max_abs_diff <= port.comparison.HEADLINE_ATOL, comparison.verdict()
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    f1_port = f1_score(nusax.test_labels, got.argmax(-1), average="macro")
    f1_keras = f1_score(nusax.test_labels, expected.argmax(-1), average="macro")
    assert f1_port == f1_keras
  # Trained for real: better than always predicting one class.
  assert f1_keras > 0.4, f1_keras


def test_saved_port_runs_on_raw_strings_without_tensorflow(nusax, trained, tmp_path):
  texts = list(nusax.test_texts)
  expected = trained.predict(np.asarray(texts, dtype=object), batch_size=64, verbose=0)
  port.load(trained).save(tmp_path / "model")
  got = parity.predict_saved_without_tensorflow(tmp_path / "model", texts, tmp_path, batch_size=128)
  parity.assert_outputs_match(trained, got, np.asarray(texts, dtype=object), keras_outputs=expected)
  np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
  assert isinstance(jaxnets.load(tmp_path / "model").preprocessor, jaxnets.text.TextVectorizer)
