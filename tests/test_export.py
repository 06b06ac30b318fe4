"""``Model.export`` / ``jaxnets.load_exported``: the jax.export artifact agrees
with the live model at batch sizes other than any traced (the batch dimension is
symbolic), for images, token ids and raw strings; a re-export replaces the folder.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import jaxnets  # noqa: E402
import port  # noqa: E402
from jaxnets import export as export_lib  # noqa: E402
from tests import parity  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

L = keras.layers
TEXTS = ["saya suka makanan ini", "tidak enak sekali", "biasa saja", "makanan ini enak sekali ya"]


def _cnn():
  return keras.Sequential(
    [
      keras.Input((10, 10, 3)),
      L.Conv2D(6, 3, activation="relu"),
      L.MaxPooling2D(),
      L.Conv2D(4, 3, padding="same"),
      L.Flatten(),
      L.Dense(5, activation="softmax"),
    ]
  )


def _token_gru():
  return keras.Sequential(
    [
      keras.Input((None,), dtype="int32"),
      L.Embedding(20, 6, mask_zero=True),
      L.GRU(5),
      L.Dense(3, activation="softmax"),
    ]
  )


def _text_bilstm(output_sequence_length):
  vectorizer = L.TextVectorization(output_sequence_length=output_sequence_length)
  vectorizer.adapt(TEXTS)
  return keras.Sequential(
    [
      keras.Input((), dtype="string"),
      vectorizer,
      L.Embedding(vectorizer.vocabulary_size(), 8, mask_zero=True),
      L.Bidirectional(L.LSTM(4)),
      L.Dense(3, activation="softmax"),
    ]
  )


def _inputs(kind: str, rows: int, rng):
  if kind == "cnn":
    return rng.random((rows, 10, 10, 3), dtype=np.float32)
  if kind == "tokens":
    ids = rng.integers(1, 20, size=(rows, 9)).astype(np.int32)
    ids[:, 6:][rng.random((rows, 3)) < 0.5] = 0  # some trailing padding
    return ids
  words = " ".join(TEXTS).split() + ["unknownword"]
  return [" ".join(rng.choice(words, size=int(rng.integers(1, 9)))) for _ in range(rows)]


@pytest.mark.parametrize(
  "kind,build",
  [
    ("cnn", _cnn),
    ("tokens", _token_gru),
    ("text", lambda: _text_bilstm(None)),
    ("text", lambda: _text_bilstm(6)),
  ],
  ids=["cnn", "token_ids_gru", "text_bilstm_free_length", "text_bilstm_fixed_length"],
)
def test_exported_model_matches_the_live_one_at_any_batch_size(kind, build, tmp_path):
  keras.utils.set_random_seed(3)
  keras_model = build()
  model = port.load(keras_model)
  folder = model.export(tmp_path / "exported")
  exported = jaxnets.load_exported(folder)
  assert (exported.input_shape, exported.input_dtype) == (model.input_shape, model.input_dtype)
  rng = np.random.default_rng(0)

  def keras_input(x):
    return np.asarray(x, dtype=object) if kind == "text" else x

  for rows in (1, 5, 37):  # no batch size is special: the batch dimension is symbolic
    x = _inputs(kind, rows, rng)
    parity.assert_outputs_match(keras_model, exported.predict(x), keras_input(x))
  x = _inputs(kind, 11, rng)
  parity.assert_outputs_match(keras_model, exported.predict(x, batch_size=4), keras_input(x))


def test_reexport_replaces_the_folder_and_foreign_folders_are_refused(tmp_path):
  keras.utils.set_random_seed(0)
  second_keras = _cnn()
  first, second = port.load(_cnn()), port.load(second_keras)
  folder = tmp_path / "exported"
  first.export(folder)
  second.export(folder)
  x = np.random.default_rng(1).random((3, 10, 10, 3), dtype=np.float32)
  parity.assert_outputs_match(second_keras, jaxnets.load_exported(folder).predict(x), x)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temp folders left
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="not an export folder"):
    first.export(tmp_path / "other")
  with pytest.raises(FileNotFoundError, match=export_lib.META_FILE):
    jaxnets.load_exported(tmp_path / "other")


def test_exported_model_names_a_wrong_input_shape(tmp_path):
  keras.utils.set_random_seed(0)
  exported = jaxnets.load_exported(port.load(_cnn()).export(tmp_path / "e"))
  with pytest.raises(jaxnets.InputError, match="axis 2 has size 9, expected 10"):
    exported.predict(np.zeros((2, 10, 9, 3), np.float32))


def test_exported_text_model_runs_without_layer_code_or_tensorflow(tmp_path):
  """In a fresh process where TF/Keras cannot be imported and every jaxnets
  layer's ``apply`` raises, the exported model still predicts."""
  keras.utils.set_random_seed(0)
  keras_model = _text_bilstm(None)
  folder = port.load(keras_model).export(tmp_path / "exported")
  script = textwrap.dedent(f"""
    import sys
    sys.modules["tensorflow"] = None  # any import of TF or Keras now fails
    sys.modules["keras"] = None
    import numpy as np
    import jaxnets
    from jaxnets.layers import base

    def refuse(*args, **kwargs):
      raise AssertionError("layer code ran")

    for cls in base.registered_classes():
      cls.apply = refuse
    got = jaxnets.load_exported({str(folder)!r}).predict({TEXTS!r})
    np.save({str(tmp_path / "got.npy")!r}, got)
  """)
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
  assert result.returncode == 0, result.stderr.decode()[-3000:]
  got = np.load(tmp_path / "got.npy")
  parity.assert_outputs_match(keras_model, got, np.asarray(TEXTS, dtype=object))
